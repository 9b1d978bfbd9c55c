//! What machine produced a result: OS, kernel, CPU model, cores.
//!
//! Best effort by design: Linux reads `/proc`; elsewhere unknown fields say `"unknown"` rather
//! than shelling out, because a library must not spawn processes to fill metadata.

use crate::report::Host;

/// The machine this runs on; fields that cannot be read here are `"unknown"`.
pub fn host() -> Host {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or_else(|| "unknown".to_owned(), |(_, v)| v.trim().to_owned());
    // The machine's cores, not the ones this process may use: a pinned run (taskset) must
    // still say it ran on a 2-core host. Falls back to what the process may use elsewhere.
    let listed = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    Host {
        os: std::env::consts::OS.to_owned(),
        kernel,
        cpu,
        cores: if listed > 0 {
            listed
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        },
    }
}
