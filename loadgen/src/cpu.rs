//! Process CPU time (user and system, all threads) from the OS: this process's, for
//! `client_cpu`, and a child's (the server `run` started), for `server_cpu`.
//!
//! Platform code lives in one submodule per OS; this file only picks them. It is deliberately
//! process-wide, not per thread: the figure users compare is what the whole generator, or the
//! whole server, cost. It does not compute rates or per-request figures.

use std::time::Duration;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as sys;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as sys;

// A child's times: /proc on Linux, libproc on macOS, the process handle on Windows.
#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as child;

#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
use macos as child;

#[cfg(all(unix, not(any(target_os = "linux", target_os = "macos"))))]
mod other;
#[cfg(all(unix, not(any(target_os = "linux", target_os = "macos"))))]
use other as child;

#[cfg(windows)]
use windows as child;

/// User and system CPU time consumed by this process so far.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Times {
    pub user: Duration,
    pub system: Duration,
}

pub(crate) fn process_times() -> std::io::Result<Times> {
    sys::process_times()
}

pub(crate) fn child_times(c: &std::process::Child) -> std::io::Result<Times> {
    child::child_times(c)
}

/// `n` clock ticks at `hz` per second (`/proc` ticks, Mach ticks), exact to the nanosecond.
#[cfg_attr(
    not(any(target_os = "linux", target_os = "macos")),
    allow(dead_code) // only /proc and libproc count in ticks
)]
fn ticks(n: u64, hz: u64) -> Duration {
    let ns = u128::from(n) * 1_000_000_000 / u128::from(hz.max(1));
    Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::ticks;
    use std::time::Duration;

    #[test]
    fn ticks_convert_exactly() {
        assert_eq!(ticks(150, 100), Duration::from_millis(1500));
        assert_eq!(ticks(1, 300), Duration::from_nanos(3_333_333));
        assert_eq!(ticks(125, 24_000_000), Duration::from_nanos(5_208));
        assert_eq!(ticks(7, 0), Duration::from_secs(7));
    }
}
