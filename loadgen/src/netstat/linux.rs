//! Linux: the counters from `/proc/net/snmp` (IPv4) plus `/proc/net/snmp6` (IPv6, if present).

use super::{UdpCounters, parse_snmp, parse_snmp6};

/// The host's UDP counters now, or `None` if `/proc/net/snmp` is unreadable.
pub(crate) fn udp_counters() -> Option<UdpCounters> {
    let v4 = parse_snmp(&std::fs::read_to_string("/proc/net/snmp").ok()?)?;
    let v6 = std::fs::read_to_string("/proc/net/snmp6")
        .map(|t| parse_snmp6(&t))
        .unwrap_or_default();
    Some(UdpCounters {
        in_errors: v4.in_errors + v6.in_errors,
        rcvbuf_errors: v4.rcvbuf_errors + v6.rcvbuf_errors,
        sndbuf_errors: v4.sndbuf_errors + v6.sndbuf_errors,
    })
}
