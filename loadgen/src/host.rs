//! What machine produced a result: OS, kernel, CPU model, cores.
//!
//! Best effort by design: Linux reads `/proc`; elsewhere unknown fields say `"unknown"` rather
//! than shelling out, because a library must not spawn processes to fill metadata.

use crate::report::Host;

pub(crate) fn host() -> Host {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    Host {
        os: std::env::consts::OS.to_owned(),
        kernel,
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}
