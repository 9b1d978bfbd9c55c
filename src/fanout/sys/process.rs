//! Systems other than Linux: no per-thread rusage and no sysfs, so the sender's CPU is the
//! whole process's (receivers in threads are included: use `--processes` there) and the wire
//! counter is unknown (reported as null, never guessed).

use std::time::Duration;

/// What [`sender_cpu`] covers.
pub const CPU_SCOPE: &str = "process";

/// User and system CPU of this whole process so far.
pub fn sender_cpu() -> std::io::Result<(Duration, Duration)> {
    loadgen::process_cpu_times()
}

/// Not available here.
pub fn tx_packets(_iface: &str) -> Option<u64> {
    None
}

/// No `IP_MULTICAST_ALL` here: membership is per socket already on the BSDs and Windows.
pub fn own_groups_only(_: &socket2::Socket) -> std::io::Result<()> {
    Ok(())
}

/// No per-thread CPU clock used here: the in-send CPU is not measured (null).
pub fn thread_cpu_ns() -> Option<u64> {
    None
}
