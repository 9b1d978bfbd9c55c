//! Unix process CPU times through `getrusage(RUSAGE_SELF)` (nix's safe wrapper).
//!
//! Not per-thread: RUSAGE_SELF sums all threads, which is what `client_cpu` reports.

use std::time::Duration;

use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::time::TimeVal;

use super::Times;

fn dur(t: TimeVal) -> Duration {
    Duration::from_secs(t.tv_sec().max(0) as u64) + Duration::from_micros(t.tv_usec().max(0) as u64)
}

pub(super) fn process_times() -> std::io::Result<Times> {
    let u = getrusage(UsageWho::RUSAGE_SELF).map_err(std::io::Error::from)?;
    Ok(Times {
        user: dur(u.user_time()),
        system: dur(u.system_time()),
    })
}
