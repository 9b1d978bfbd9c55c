//! The typed record of one `iomodels fanout` run (`iomodels.fanout/1`): what one sender cost to
//! deliver the same messages to N receivers by N × TCP, N × UDP, multicast or broadcast, and
//! what each receiver got.
//!
//! Loss is computed here, once, from what each receiver saw ([`Span`]s of membership) and how
//! many messages the sender sent; exporters only format the record. The on-disk shape is a
//! contract described key by key in `results/README.md`. This module deliberately does no I/O
//! beyond reading and writing the document, and knows nothing about sockets.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{pretty_json, read_with_schema};

/// The schema of a fanout document; bump it (and `results/README.md`) when a key changes meaning.
pub const FANOUT_SCHEMA: &str = "iomodels.fanout/1";

/// Three latency figures in µs: sender timestamp (in the payload) to the receiver's read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FanoutLatency {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl FanoutLatency {
    /// From a histogram in nanoseconds; zeros for an empty one.
    pub fn from_ns(h: &hdrhistogram::Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Self {
            p50: us(h.value_at_quantile(0.5)),
            p99: us(h.value_at_quantile(0.99)),
            max: us(h.max()),
        }
    }
}

/// The sender's CPU over the sending window (OS accounting).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SenderCpu {
    pub user_s: f64,
    pub system_s: f64,
    /// (user + system) / messages sent, in µs: one message = one payload to every receiver.
    pub us_per_message: f64,
    /// (user + system) / messages delivered, summed over receivers, in µs.
    pub us_per_delivery: f64,
    /// The thread's CPU inside the send calls only (its CPU clock read around each message's
    /// sends), per message sent, in µs: the cost of fanning out without the pacing sleeps.
    /// Null where not measured (not Linux).
    #[serde(default)]
    pub in_send_us_per_message: Option<f64>,
}

/// One receiver's tally.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReceiverTally {
    /// Receiver number, from 0.
    pub index: usize,
    /// Messages it read (duplicates included).
    pub delivered: u64,
    /// Messages it should have read while it was a member and did not (see [`Span`]).
    pub lost: u64,
    /// `IP_ADD_MEMBERSHIP` calls that succeeded (multicast; 0 otherwise).
    pub joins: u64,
    /// `IP_DROP_MEMBERSHIP` calls that succeeded (multicast; 0 otherwise).
    pub leaves: u64,
    pub latency_us: FanoutLatency,
}

/// One stretch of membership as a receiver saw it: from joining (or the start) to leaving (or
/// the end). A message sent while a receiver was not a member is neither delivered nor lost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// The first sequence number the span is owed: 0 for a receiver ready before the first
    /// send; null for a rejoin, where the first message read starts the span (the sender's
    /// position at the join is not known to the receiver).
    pub from: Option<u64>,
    /// Lowest and highest sequence numbers read in the span (null when none was).
    pub min: Option<u64>,
    pub max: Option<u64>,
    /// Messages read in the span.
    pub count: u64,
    /// The span was still open when the sender finished (the receiver was a member at the end):
    /// it is owed every message up to the last one sent.
    pub open_at_end: bool,
}

impl Span {
    /// Messages this span was owed and did not get, given `sent` messages (numbered 0..sent).
    pub fn lost(&self, sent: u64) -> u64 {
        let start = match (self.from, self.min) {
            (Some(f), _) => f,
            (None, Some(m)) => m,
            (None, None) => return 0,
        };
        let end = if self.open_at_end {
            sent
        } else {
            match self.max {
                Some(m) => m + 1,
                None => return 0,
            }
        };
        end.saturating_sub(start).saturating_sub(self.count)
    }
}

/// Messages lost over `spans`, given `sent`.
pub fn lost(spans: &[Span], sent: u64) -> u64 {
    spans.iter().map(|s| s.lost(sent)).sum()
}

/// One fanout run (`iomodels.fanout/1`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FanoutRecord {
    /// `"iomodels.fanout/1"`.
    pub schema: String,
    pub tool_version: String,
    /// `tcp`, `udp`, `multicast` or `broadcast`.
    pub mode: String,
    /// Receivers started.
    pub receivers: usize,
    /// Receivers were child processes (`--processes`), not threads.
    pub processes: bool,
    /// The sender's interface (its counters are `wire_packets`).
    pub interface: String,
    /// Message size in bytes (header included).
    pub size: usize,
    /// Messages per second asked for, and achieved.
    pub rate: f64,
    pub achieved_rate: f64,
    /// The sending window in seconds.
    pub duration_s: f64,
    /// Messages sent (each to every receiver).
    pub sent: u64,
    /// Send calls that failed (each counted, none retried).
    pub send_errors: u64,
    /// Σ delivered / Σ (delivered + lost) over receivers; 1 when nothing was owed.
    pub delivered_ratio: f64,
    pub sender_cpu: SenderCpu,
    /// `thread` (RUSAGE_THREAD of the sending thread, Linux) or `process` (the whole sending
    /// process, other systems).
    pub sender_cpu_scope: String,
    /// Send system calls (write/sendto) the sender made, counted in code; pacing sleeps not
    /// included.
    pub sender_syscalls: u64,
    pub sender_syscalls_per_message: f64,
    pub sender_syscalls_per_s: f64,
    /// `tx_packets` delta of the sender's interface over the window; null where the OS has no
    /// such counter here. On `lo` it counts every sender on the host.
    pub wire_packets: Option<u64>,
    pub wire_packets_per_message: Option<f64>,
    /// All receivers' latencies merged.
    pub latency_us: FanoutLatency,
    pub per_receiver: Vec<ReceiverTally>,
    /// Σ joins and Σ leaves over receivers.
    pub joins: u64,
    pub leaves: u64,
    /// Multicast churn period in seconds (`--churn`), null when receivers stayed members.
    pub churn_s: Option<f64>,
    /// The CPU the sending thread was pinned to (`--sender-cpu`), null when unpinned.
    #[serde(default)]
    pub sender_cpu_pinned: Option<usize>,
    /// The CPUs receivers were pinned to, round robin (`--receiver-cpus`), null when unpinned.
    #[serde(default)]
    pub receiver_cpus_pinned: Option<Vec<usize>>,
    /// The run was stopped by Ctrl-C; the figures cover what ran.
    pub interrupted: bool,
    pub warnings: Vec<String>,
}

impl FanoutRecord {
    /// Read a fanout document.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        read_with_schema(path, "fanout record", &[FANOUT_SCHEMA], |r: &Self| {
            &r.schema
        })
    }

    /// The JSON document, pretty-printed, with a final newline.
    pub fn to_json(&self) -> String {
        pretty_json(self)
    }

    /// Write the JSON atomically.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        loadgen::write_atomically(path, self.to_json().as_bytes())
    }
}

/// One mode × N over the records given (rounds of one `netns.sh --compare`, say): the least
/// CPU (the run least disturbed by the machine), the median wire count, the worst delivery.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FanoutPoint {
    pub mode: String,
    pub receivers: usize,
    /// Records aggregated.
    pub rounds: usize,
    /// Least `sender_cpu.us_per_message` (pacing sleeps included).
    pub cpu_us_per_message: f64,
    /// Least `sender_cpu.in_send_us_per_message`; null when no record has it.
    pub in_send_us_per_message: Option<f64>,
    /// Median `sender_syscalls_per_message`.
    pub syscalls_per_message: f64,
    /// Median `wire_packets_per_message`; null when no record has it.
    pub wire_packets_per_message: Option<f64>,
    /// Least `delivered_ratio`.
    pub delivered_ratio: f64,
    /// The interfaces the records were measured on, comma-separated.
    pub interfaces: String,
}

/// The modes in the order fanout documents them; others sort after.
const MODE_ORDER: [&str; 4] = ["tcp", "udp", "multicast", "broadcast"];

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Group `records` by (mode, receivers), in mode order then N.
pub fn points(records: &[FanoutRecord]) -> Vec<FanoutPoint> {
    let mut keys: Vec<(usize, String, usize)> = records
        .iter()
        .map(|r| {
            let rank = MODE_ORDER
                .iter()
                .position(|m| *m == r.mode)
                .unwrap_or(MODE_ORDER.len());
            (rank, r.mode.clone(), r.receivers)
        })
        .collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|(_, mode, n)| {
            let rs: Vec<&FanoutRecord> = records
                .iter()
                .filter(|r| r.mode == mode && r.receivers == n)
                .collect();
            let least = |v: Vec<f64>| v.into_iter().reduce(f64::min);
            let mut interfaces: Vec<&str> = rs.iter().map(|r| r.interface.as_str()).collect();
            interfaces.sort_unstable();
            interfaces.dedup();
            FanoutPoint {
                rounds: rs.len(),
                cpu_us_per_message: least(rs.iter().map(|r| r.sender_cpu.us_per_message).collect())
                    .unwrap_or(0.0),
                in_send_us_per_message: least(
                    rs.iter()
                        .filter_map(|r| r.sender_cpu.in_send_us_per_message)
                        .collect(),
                ),
                syscalls_per_message: median(
                    rs.iter().map(|r| r.sender_syscalls_per_message).collect(),
                )
                .unwrap_or(0.0),
                wire_packets_per_message: median(
                    rs.iter()
                        .filter_map(|r| r.wire_packets_per_message)
                        .collect(),
                ),
                delivered_ratio: least(rs.iter().map(|r| r.delivered_ratio).collect())
                    .unwrap_or(0.0),
                interfaces: interfaces.join(","),
                mode,
                receivers: n,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(from: Option<u64>, min: u64, max: u64, count: u64, open: bool) -> Span {
        Span {
            from,
            min: Some(min),
            max: Some(max),
            count,
            open_at_end: open,
        }
    }

    #[test]
    fn a_member_throughout_is_owed_every_message() {
        assert_eq!(span(Some(0), 0, 99, 100, true).lost(100), 0);
        // Missed 3 in the middle and the last 2.
        assert_eq!(span(Some(0), 0, 97, 95, true).lost(100), 5);
        // Missed the first 4.
        assert_eq!(span(Some(0), 4, 99, 96, true).lost(100), 4);
        let nothing = Span {
            from: Some(0),
            open_at_end: true,
            ..Span::default()
        };
        assert_eq!(nothing.lost(100), 100);
    }

    #[test]
    fn messages_sent_while_out_of_the_group_are_not_lost() {
        // Member for 0..=29 (missed 10), left, rejoined and read 60..=99 (missed 2).
        let spans = [
            span(Some(0), 0, 29, 20, false),
            span(None, 60, 99, 38, true),
        ];
        assert_eq!(lost(&spans, 100), 12);
        // A rejoin that read nothing, then left: owed nothing it can tell.
        let empty = Span::default();
        assert_eq!(empty.lost(100), 0);
    }

    #[test]
    fn duplicates_never_make_loss_negative() {
        assert_eq!(span(Some(0), 0, 9, 15, true).lost(10), 0);
    }

    fn rec(mode: &str, n: usize, cpu: f64, wire: f64) -> FanoutRecord {
        FanoutRecord {
            schema: FANOUT_SCHEMA.into(),
            mode: mode.into(),
            receivers: n,
            interface: "veth".into(),
            sender_cpu: SenderCpu {
                us_per_message: cpu + 20.0,
                in_send_us_per_message: Some(cpu),
                ..SenderCpu::default()
            },
            sender_syscalls_per_message: if mode == "udp" { n as f64 } else { 1.0 },
            wire_packets_per_message: Some(wire),
            delivered_ratio: 1.0,
            ..FanoutRecord::default()
        }
    }

    #[test]
    fn points_take_the_least_cpu_and_the_median_wire_in_mode_order() {
        let rs = [
            rec("multicast", 10, 30.0, 1.0),
            rec("udp", 10, 80.0, 10.0),
            rec("udp", 10, 70.0, 12.0),
            rec("udp", 10, 90.0, 10.0),
            rec("udp", 1, 25.0, 1.0),
        ];
        let p = points(&rs);
        let keys: Vec<(&str, usize)> = p.iter().map(|p| (p.mode.as_str(), p.receivers)).collect();
        assert_eq!(keys, [("udp", 1), ("udp", 10), ("multicast", 10)]);
        assert_eq!(p[1].rounds, 3);
        assert_eq!(p[1].in_send_us_per_message, Some(70.0));
        assert_eq!(p[1].cpu_us_per_message, 90.0);
        assert_eq!(p[1].wire_packets_per_message, Some(10.0));
        assert_eq!(p[1].syscalls_per_message, 10.0);
    }

    #[test]
    fn the_document_round_trips_with_its_schema() {
        let r = FanoutRecord {
            schema: FANOUT_SCHEMA.into(),
            mode: "multicast".into(),
            receivers: 3,
            wire_packets: Some(42),
            ..FanoutRecord::default()
        };
        let back: FanoutRecord = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(back, r);
    }
}
