//! A circuit breaker per variant. After `failures` consecutive failures it opens: the data plane
//! sends the variant's traffic to stable for `cooldown_ms`; then one trial request goes through
//! (half-open) and its outcome closes or reopens the circuit. Time comes from the caller.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerConfig {
    pub failures: u32,
    pub cooldown_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            cooldown_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// As the `slipway_circuit_state` gauge reports it.
    pub fn gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    consecutive: u32,
    open_until_ms: Option<i64>,
    trial_in_flight: bool,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Breaker {
            config,
            consecutive: 0,
            open_until_ms: None,
            trial_in_flight: false,
        }
    }

    pub fn state(&self, now_ms: i64) -> BreakerState {
        match self.open_until_ms {
            None => BreakerState::Closed,
            Some(until) if now_ms < until => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// Whether a request may go to this variant now. In half-open, only one trial at a time.
    pub fn allow(&mut self, now_ms: i64) -> bool {
        match self.state(now_ms) {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen => {
                if self.trial_in_flight {
                    false
                } else {
                    self.trial_in_flight = true;
                    true
                }
            }
        }
    }

    /// Frees a half-open trial that ended without saying anything about the variant (the
    /// client's mistake, a timeout, a full queue), so the next request can be the trial.
    pub fn release(&mut self) {
        self.trial_in_flight = false;
    }

    pub fn record(&mut self, ok: bool, now_ms: i64) {
        let half_open = self.state(now_ms) == BreakerState::HalfOpen;
        self.trial_in_flight = false;
        if ok {
            self.consecutive = 0;
            if half_open {
                self.open_until_ms = None;
            }
            return;
        }
        self.consecutive = self.consecutive.saturating_add(1);
        if half_open || self.consecutive >= self.config.failures {
            self.open_until_ms = Some(now_ms + self.config.cooldown_ms as i64);
            self.consecutive = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_and_recovers_through_a_trial() {
        let mut breaker = Breaker::new(BreakerConfig {
            failures: 3,
            cooldown_ms: 100,
        });
        breaker.record(false, 0);
        breaker.record(false, 1);
        breaker.record(true, 2); // a success resets the count
        breaker.record(false, 3);
        breaker.record(false, 4);
        assert_eq!(breaker.state(4), BreakerState::Closed);
        breaker.record(false, 5);
        assert_eq!(breaker.state(5), BreakerState::Open);
        assert!(!breaker.allow(50));
        // Half-open: one trial at a time.
        assert!(breaker.allow(105));
        assert!(!breaker.allow(105));
        // A failed trial reopens for another cooldown.
        breaker.record(false, 106);
        assert_eq!(breaker.state(150), BreakerState::Open);
        assert!(breaker.allow(206));
        breaker.record(true, 207);
        assert_eq!(breaker.state(207), BreakerState::Closed);
        assert!(breaker.allow(208));
    }

    #[test]
    fn a_trial_that_says_nothing_frees_the_next_one() {
        let mut breaker = Breaker::new(BreakerConfig {
            failures: 1,
            cooldown_ms: 10,
        });
        breaker.record(false, 0);
        assert!(breaker.allow(10));
        assert!(!breaker.allow(10));
        breaker.release();
        assert!(breaker.allow(11));
        breaker.record(true, 12);
        assert_eq!(breaker.state(12), BreakerState::Closed);
    }
}
