//! Elsewhere: no portable source of the kernel's UDP counters, so the report's `kernel` is null.

use super::UdpCounters;

/// Always `None` here.
pub(crate) fn udp_counters() -> Option<UdpCounters> {
    None
}
