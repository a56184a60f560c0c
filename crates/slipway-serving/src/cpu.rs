//! CPU time spent on the calling thread.
//!
//! Sessions run with one intra-op thread and sequential execution, so ONNX Runtime computes a
//! run on the thread that called it: the difference of this clock around a run is the CPU the
//! run cost, whatever else the machine was doing (wall time would charge a run for the time it
//! was descheduled).

use std::time::Duration;

/// The calling thread's CPU time so far.
pub fn thread_time() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

/// Runs `work` and returns what it gave and the CPU time it took on this thread.
pub fn measure<T>(work: impl FnOnce() -> T) -> (T, Duration) {
    let before = thread_time();
    let value = work();
    (value, thread_time().saturating_sub(before))
}

/// A share of `total` in proportion to `part` of `whole` (a request's rows in a merged run).
pub fn share(total: Duration, part: usize, whole: usize) -> Duration {
    if whole == 0 {
        return Duration::ZERO;
    }
    let nanos = total.as_nanos() * part as u128 / whole as u128;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_work_is_charged_and_sleeping_is_not() {
        let (_, busy) = measure(|| {
            std::hint::black_box((0..20_000_000u64).fold(0u64, |a, b| a ^ b.wrapping_mul(31)))
        });
        assert!(
            busy > Duration::from_millis(1),
            "busy loop charged {busy:?}"
        );
        let ((), asleep) = measure(|| std::thread::sleep(Duration::from_millis(50)));
        assert!(
            asleep < Duration::from_millis(10),
            "sleep charged {asleep:?}"
        );
    }

    #[test]
    fn a_request_is_charged_its_rows_share() {
        assert_eq!(
            share(Duration::from_millis(10), 1, 4),
            Duration::from_micros(2500)
        );
        assert_eq!(share(Duration::from_millis(10), 3, 0), Duration::ZERO);
    }
}
