//! The kernel's UDP counters (Linux `/proc/net/snmp` and `/proc/net/snmp6`): `InErrors`,
//! `RcvbufErrors`, `SndbufErrors`, IPv4 and IPv6 summed, sampled at the measured window's edges
//! so a UDP run reports their deltas.
//!
//! They are host-wide (every UDP socket of the machine counts), which the report says. Parsing
//! is pure and tested here on any OS; only reading the files is Linux's ([`udp_counters`]
//! returns `None` elsewhere). Deliberately not the per-socket `SO_RXQ_OVFL` count: that comes
//! with each datagram the UDP worker receives.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::udp_counters;

#[cfg(not(target_os = "linux"))]
mod none;
#[cfg(not(target_os = "linux"))]
pub(crate) use none::udp_counters;

/// The three counters, cumulative since boot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct UdpCounters {
    pub(crate) in_errors: u64,
    pub(crate) rcvbuf_errors: u64,
    pub(crate) sndbuf_errors: u64,
}

impl UdpCounters {
    /// What grew from `earlier` to `self` (a counter that went backwards counts 0).
    pub(crate) fn since(&self, earlier: &UdpCounters) -> UdpCounters {
        UdpCounters {
            in_errors: self.in_errors.saturating_sub(earlier.in_errors),
            rcvbuf_errors: self.rcvbuf_errors.saturating_sub(earlier.rcvbuf_errors),
            sndbuf_errors: self.sndbuf_errors.saturating_sub(earlier.sndbuf_errors),
        }
    }
}

/// `/proc/net/snmp`'s `Udp:` header and value lines, by name; `None` if there is no such pair.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_snmp(text: &str) -> Option<UdpCounters> {
    let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = lines.next()?.split_whitespace().skip(1).collect();
    let values: Vec<&str> = lines.next()?.split_whitespace().skip(1).collect();
    let get = |name: &str| -> Option<u64> {
        let i = names.iter().position(|n| *n == name)?;
        values.get(i)?.parse().ok()
    };
    Some(UdpCounters {
        in_errors: get("InErrors")?,
        rcvbuf_errors: get("RcvbufErrors")?,
        sndbuf_errors: get("SndbufErrors")?,
    })
}

/// `/proc/net/snmp6`'s `Udp6InErrors N` lines; counters it lacks count 0.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_snmp6(text: &str) -> UdpCounters {
    let mut c = UdpCounters::default();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(name), Some(v)) = (f.next(), f.next().and_then(|v| v.parse().ok())) else {
            continue;
        };
        match name {
            "Udp6InErrors" => c.in_errors = v,
            "Udp6RcvbufErrors" => c.rcvbuf_errors = v,
            "Udp6SndbufErrors" => c.sndbuf_errors = v,
            _ => {}
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_udp_lines_are_read_by_name() {
        let snmp = "Tcp: RtoAlgorithm InErrs\nTcp: 1 9\n\
            Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors\n\
            Udp: 100 2 37 90 35 4 0\n\
            UdpLite: InDatagrams InErrors\nUdpLite: 0 0\n";
        let c = parse_snmp(snmp).unwrap();
        assert_eq!(
            c,
            UdpCounters {
                in_errors: 37,
                rcvbuf_errors: 35,
                sndbuf_errors: 4
            }
        );
        assert_eq!(parse_snmp("Ip: 1\nIp: 2\n"), None);
        let six = parse_snmp6("Udp6InDatagrams 5\nUdp6InErrors 3\nUdp6RcvbufErrors 2\n");
        assert_eq!(
            (six.in_errors, six.rcvbuf_errors, six.sndbuf_errors),
            (3, 2, 0)
        );
        let d = c.since(&UdpCounters {
            in_errors: 30,
            rcvbuf_errors: 40,
            sndbuf_errors: 1,
        });
        assert_eq!((d.in_errors, d.rcvbuf_errors, d.sndbuf_errors), (7, 0, 3));
    }
}
