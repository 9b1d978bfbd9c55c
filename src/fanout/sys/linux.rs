//! Linux: the sending thread's own CPU (`getrusage(RUSAGE_THREAD)`) and an interface's
//! transmitted packets (`/sys/class/net/IF/statistics/tx_packets`, the driver's own count).
//!
//! RUSAGE_THREAD isolates the sender from the receivers when they are threads of the same
//! process. Not a per-syscall count (that is explain's job).

use std::time::Duration;

use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::time::TimeVal;

/// What [`sender_cpu`] covers.
pub const CPU_SCOPE: &str = "thread";

fn dur(t: TimeVal) -> Duration {
    Duration::from_secs(t.tv_sec().max(0) as u64) + Duration::from_micros(t.tv_usec().max(0) as u64)
}

/// User and system CPU of the calling thread so far.
pub fn sender_cpu() -> std::io::Result<(Duration, Duration)> {
    let u = getrusage(UsageWho::RUSAGE_THREAD).map_err(std::io::Error::from)?;
    Ok((dur(u.user_time()), dur(u.system_time())))
}

/// Packets `iface` has transmitted since it came up; `None` if the counter cannot be read.
/// Reads this network namespace's view (`ip netns exec` mounts its own /sys).
pub fn tx_packets(iface: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/statistics/tx_packets"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Deliver to `s` only the groups it joined itself (`IP_MULTICAST_ALL` off). Linux's default
/// delivers to a wildcard-bound socket every group any socket on the host joined, so a receiver
/// that left would keep reading while another receiver stays a member.
pub fn own_groups_only(s: &socket2::Socket) -> std::io::Result<()> {
    s.set_multicast_all_v4(false)
}

/// The calling thread's CPU time in ns (`CLOCK_THREAD_CPUTIME_ID`: the scheduler's own
/// runtime, exact to the nanosecond, unlike rusage's tick-sampled split); `None` if unreadable.
pub fn thread_cpu_ns() -> Option<u64> {
    use nix::time::{ClockId, clock_gettime};
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).ok()?;
    Some((t.tv_sec() as u64).wrapping_mul(1_000_000_000) + t.tv_nsec() as u64)
}
