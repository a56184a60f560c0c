//! Linux /proc helpers: process trees, their memory and CPU time, machine CPU time.

use std::collections::{HashMap, HashSet};
use std::fs;

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// (pid, ppid, utime+stime seconds) for a /proc/<pid>/stat line.
fn parse_stat(pid: u32) -> Option<(u32, f64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parentheses: split after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] = state (field 3), ppid = field 4, utime = 14, stime = 15
    let ppid: u32 = f.get(1)?.parse().ok()?;
    let ut: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    Some((ppid, (ut + st) / clk_tck()))
}

/// `root` and all its descendants that are alive now.
pub fn tree(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
                if let Some((ppid, _)) = parse_stat(pid) {
                    children.entry(ppid).or_default().push(pid);
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        if !seen.insert(p) {
            continue;
        }
        if fs::metadata(format!("/proc/{p}")).is_err() {
            continue;
        }
        out.push(p);
        if let Some(c) = children.get(&p) {
            stack.extend(c.iter().copied());
        }
    }
    out
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn pss_kib(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    s.lines()
        .find(|l| l.starts_with("Pss:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn comm(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .map(|s| s.replace('\0', " ").trim().chars().take(120).collect())
        .unwrap_or_default()
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TreeMem {
    /// Sum of VmRSS over every process of the tree (what the issue asks for; counts shared pages once per process).
    pub rss_mib: f64,
    /// Sum of proportional set size (shared pages split between the processes sharing them).
    pub pss_mib: f64,
    pub processes: usize,
    pub per_process: Vec<(u32, f64, String)>,
}

pub fn tree_mem(root: u32) -> TreeMem {
    let pids = tree(root);
    let mut rss = 0u64;
    let mut pss = 0u64;
    let mut per = Vec::new();
    for &p in &pids {
        let r = status_kib(p, "VmRSS:").unwrap_or(0);
        rss += r;
        pss += pss_kib(p).unwrap_or(0);
        per.push((p, r as f64 / 1024.0, comm(p)));
    }
    TreeMem { rss_mib: rss as f64 / 1024.0, pss_mib: pss as f64 / 1024.0, processes: pids.len(), per_process: per }
}

/// Open sockets of a process (its connections, and its listeners): memory a server holds per
/// connection grows with their number, which is the client's doing, not a leak.
pub fn sockets(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:")))
                .count()
        })
        .unwrap_or(0)
}

/// CPU seconds (user+system) consumed so far by the live processes of the tree.
pub fn tree_cpu(root: u32) -> f64 {
    tree(root).iter().filter_map(|&p| parse_stat(p).map(|(_, c)| c)).sum()
}

/// CPU seconds consumed by this process (all threads).
pub fn self_cpu() -> f64 {
    // SAFETY: getrusage writes into the struct we pass.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    }
}

/// (busy, total, steal) jiffies of the whole machine from /proc/stat. Busy includes steal:
/// time the hypervisor gave this VM's CPUs to someone else, which no process here used.
pub fn machine_cpu() -> (f64, f64, f64) {
    let s = fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = s.lines().next().unwrap_or("");
    let v: Vec<f64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    if v.len() < 8 {
        return (0.0, 0.0, 0.0);
    }
    let total: f64 = v.iter().take(8).sum();
    let idle = v[3] + v[4];
    (total - idle, total, v[7])
}

/// CPUs of the machine (the `cpuN` lines of /proc/stat), not of this process: the bench
/// pins the load generator to some of them, and the machine's busy share is over all.
pub fn ncpu() -> usize {
    let s = fs::read_to_string("/proc/stat").unwrap_or_default();
    let n = s.lines().filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit)).count();
    if n > 0 { n } else { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) }
}

/// Snapshot of CPU counters, to attribute CPU time over a measurement window.
#[derive(Clone, Copy)]
pub struct CpuSnap {
    pub at: std::time::Instant,
    pub me: f64,
    pub server: f64,
    pub busy: f64,
    pub total: f64,
    pub steal: f64,
}

impl CpuSnap {
    pub fn take(server_pid: Option<u32>) -> Self {
        let (busy, total, steal) = machine_cpu();
        CpuSnap {
            at: std::time::Instant::now(),
            me: self_cpu(),
            server: server_pid.map(tree_cpu).unwrap_or(f64::NAN),
            busy,
            total,
            steal,
        }
    }
}
