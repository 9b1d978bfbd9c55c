//! The result of a run as plain data, and its two file formats (JSON and `.hlog`).
//!
//! The numbers are computed once, here, from the merged histograms; the binary's exporters only
//! format them. The JSON shape is a contract (`schema: "iomodels.result/1.3"`, described key by key
//! in `results/README.md`). This module deliberately does not print or choose file names.

use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

use crate::atomic_file;
use crate::workload::Options;

/// The result schema; bump it (and `results/README.md`) when a key changes meaning.
///
/// 1.1: `saturated` also when the generator's own send lag is a noticeable part of the latency
/// (results/README.md, "Saturation rule"); every key is the same as in 1.
///
/// 1.2: adds `explain` (kernel counts per request, filled by the `iomodels` binary; null when
/// not measured); every 1.1 key is unchanged.
///
/// 1.3: adds `workload.proto` (`tcp` when absent) and, for UDP runs, the `udp` object (loss,
/// duplicates, reordering, late echoes, the kernel's drop counters); every 1.2 key is unchanged.
pub const SCHEMA: &str = "iomodels.result/1.3";

/// Every result schema a reader of [`SCHEMA`] documents can read: the same keys (1.2 adds one,
/// read as null when absent), so a file of an earlier minor version reads as it is (its
/// `saturated` was judged by that version's rule).
pub const SCHEMAS_READ: [&str; 4] = [
    "iomodels.result/1",
    "iomodels.result/1.1",
    "iomodels.result/1.2",
    SCHEMA,
];

/// The machine that produced the result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Host {
    /// Rust's `std::env::consts::OS`.
    pub os: String,
    /// Linux: `/proc/sys/kernel/osrelease`; elsewhere `"unknown"`.
    pub kernel: String,
    /// Linux: the first `model name` of `/proc/cpuinfo`; elsewhere `"unknown"`.
    pub cpu: String,
    /// The machine's CPUs (Linux), or the CPUs this process may run on.
    pub cores: usize,
}

/// Percentiles and moments of one histogram, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// 99.99th percentile.
    pub p99_99: f64,
    /// Largest value recorded.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Standard deviation.
    pub stdev: f64,
}

impl LatencySummary {
    /// From a histogram recorded in nanoseconds; all zeros when it is empty.
    pub fn from_ns(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let us = |ns: u64| ns as f64 / 1_000.0;
        Self {
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p99_9: us(h.value_at_quantile(0.999)),
            p99_99: us(h.value_at_quantile(0.9999)),
            max: us(h.max()),
            mean: h.mean() / 1_000.0,
            stdev: h.stdev() / 1_000.0,
        }
    }
}

/// Errors in the measured window, by kind. `total` is the sum of the others.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Errors {
    /// Sum of the other counts.
    pub total: u64,
    /// Connects refused.
    pub refused: u64,
    /// Connections reset (ECONNRESET, ECONNABORTED, EPIPE).
    pub reset: u64,
    /// Requests or connects older than `timeout`.
    pub timeout: u64,
    /// Echoes that differ from what was sent.
    pub mismatch: u64,
    /// EADDRNOTAVAIL on connect: ephemeral ports exhausted.
    pub addr_unavailable: u64,
    /// Anything else (the server closed the connection, ...).
    pub other: u64,
}

impl Errors {
    /// Add another set of counts to these.
    pub fn add(&mut self, o: &Errors) {
        self.total += o.total;
        self.refused += o.refused;
        self.reset += o.reset;
        self.timeout += o.timeout;
        self.mismatch += o.mismatch;
        self.addr_unavailable += o.addr_unavailable;
        self.other += o.other;
    }
}

/// What became of the measured UDP datagrams (a UDP run's `udp` object). Every datagram sent in
/// the measured window ends in exactly one of `received`, `lost` or `in_flight`:
/// `sent = received + lost + in_flight`. `duplicated` and `late` count extra echoes, not
/// datagrams; `reordered` is a subset of `received`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Udp {
    /// Datagrams sent in the measured window.
    pub sent: u64,
    /// Of those, the ones whose first echo came within `timeout` (an echo whose payload differed
    /// is counted here and in `errors.mismatch`, and not in `requests` or the latency).
    pub received: u64,
    /// Of those, the ones with no echo within `timeout`.
    pub lost: u64,
    /// Neither answered nor past their timeout when the run ended: 0 unless the run was
    /// stopped (a duration run stops sending at its deadline and drains for at most `timeout`
    /// until every datagram's fate is known). In neither `received` nor `lost`.
    pub in_flight: u64,
    /// Further echoes of a datagram already answered (each extra copy counts once).
    pub duplicated: u64,
    /// Received datagrams whose echo arrived after the echo of a higher sequence number on the
    /// same socket.
    pub reordered: u64,
    /// Echoes of datagrams already counted lost (they came after their timeout).
    pub late: u64,
    /// `lost / (received + lost)`, 0 when both are 0.
    pub loss_ratio: f64,
    /// Linux: the kernel's UDP counters over the measured window (`/proc/net/snmp`); null
    /// elsewhere or when unreadable.
    pub kernel: Option<UdpKernel>,
}

/// Deltas of the kernel's UDP counters over the measured window, from `/proc/net/snmp` (IPv4)
/// and `/proc/net/snmp6` (IPv6) summed. **Host-wide**: every UDP socket of the machine counts,
/// the server's (if local) included, so they tell that datagrams were dropped on this host, not
/// by whom; `own_rcvbuf_drops` tells the generator's share.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UdpKernel {
    /// `Udp: InErrors`: datagrams received but not delivered (buffer full, bad checksum, ...).
    pub in_errors: u64,
    /// `Udp: RcvbufErrors`: datagrams dropped because a socket's receive buffer was full.
    pub rcvbuf_errors: u64,
    /// `Udp: SndbufErrors`: sends that failed because a socket's send buffer was full.
    pub sndbuf_errors: u64,
    /// The generator's own sockets' receive-buffer drops over the window (Linux
    /// `SO_RXQ_OVFL`, exact per socket, not host-wide): echoes that reached this host and were
    /// dropped because the generator read too slowly. The kernel reports the count with the
    /// next datagram a socket receives, so drops after a socket's last echo are missed (a lower
    /// bound). Null where the option is unavailable. `rcvbuf_errors − own_rcvbuf_drops` is
    /// then the rest of the host's (the server's, on loopback).
    pub own_rcvbuf_drops: Option<u64>,
}

impl Udp {
    /// Add another worker's counts to these (`loss_ratio` and `kernel` are set once, after).
    pub fn add(&mut self, o: &Udp) {
        self.sent += o.sent;
        self.received += o.received;
        self.lost += o.lost;
        self.in_flight += o.in_flight;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
        self.late += o.late;
    }

    /// `lost / (received + lost)`, 0 when nothing was resolved.
    pub fn ratio(&self) -> f64 {
        let resolved = self.received + self.lost;
        if resolved == 0 {
            0.0
        } else {
            self.lost as f64 / resolved as f64
        }
    }
}

/// CPU time of a process over the measured window, from the OS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    /// User CPU seconds.
    pub user_s: f64,
    /// System CPU seconds.
    pub system_s: f64,
    /// (user + system) / requests, in microseconds; 0 when no request completed.
    pub us_per_request: f64,
}

impl Cpu {
    /// From user and system CPU time over a window in which `requests` completed.
    pub fn new(user: Duration, system: Duration, requests: u64) -> Self {
        let (u, s) = (user.as_secs_f64(), system.as_secs_f64());
        let per = if requests == 0 {
            0.0
        } else {
            (u + s) * 1e6 / requests as f64
        };
        Self {
            user_s: u,
            system_s: s,
            us_per_request: per,
        }
    }
}

/// One second (the last one may be shorter) of the measured window, for the `.hlog`.
#[derive(Clone, Debug)]
pub struct Interval {
    /// Offset from the start of the measured window.
    pub start: Duration,
    /// Its length (the last interval may be shorter than 1 s).
    pub length: Duration,
    /// Its latency histogram (corrected in open loop), in ns.
    pub corrected: Histogram<u64>,
    /// Open loop only.
    pub uncorrected: Option<Histogram<u64>>,
}

/// Everything the generator measured: the result JSON contract minus its server half.
///
/// `server_cpu` and `server` are not here: the generator cannot know them. The binary's point
/// record wraps a `Report` (flattened) with those two keys, so the file on disk still has every
/// key of the contract.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// `iomodels.result/1.3` ([`SCHEMA`]).
    pub schema: String,
    /// Version of the `loadgen` crate that measured.
    pub tool_version: String,
    /// The machine that measured.
    pub host: Host,
    /// CPUs the generator threads were pinned to, if any.
    pub pinning: Option<Vec<usize>>,
    /// Every workload option.
    pub workload: Options,
    /// Requests completed in the measured window.
    pub requests: u64,
    /// Length of the measured window, seconds.
    pub duration_s: f64,
    /// `requests / duration_s`.
    pub throughput_rps: f64,
    /// Latency percentiles, µs (corrected in open loop).
    pub latency_us: LatencySummary,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Open loop: latency from the actual send, µs.
    pub uncorrected_latency_us: Option<LatencySummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Open loop: actual send − intended send, µs.
    pub send_lag_us: Option<LatencySummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Open loop: the target rate, requests per second.
    pub target_rps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Open loop: completed requests per second of the window.
    pub achieved_rps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Connect per request: time from `connect()` to a usable connection, µs.
    pub connect_us: Option<LatencySummary>,
    /// Errors in the measured window, by kind.
    pub errors: Errors,
    /// UDP runs only (`iomodels.result/1.3`): what became of the datagrams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<Udp>,
    /// The generator process's CPU over the measured window.
    pub client_cpu: Cpu,
    /// Open loop: requests were not sent at their intended time (results/README.md, "Saturation rule").
    pub saturated: bool,
    /// The run was stopped early; the figures cover the part that ran.
    pub interrupted: bool,
    /// Human-readable notes (saturation reasons, hints, reduced threads, ...).
    pub warnings: Vec<String>,
    /// Latency histogram (corrected in open loop), ns, HdrHistogram V2 + deflate, base64.
    pub histogram: String,
    /// Open loop only: latency from the actual send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncorrected_histogram: Option<String>,
    /// Per-second histograms for the `.hlog`; not part of the JSON (the `.hlog` is their file).
    #[serde(skip)]
    pub intervals: Vec<Interval>,
    /// Wall-clock start of the measured window, the `.hlog` StartTime/BaseTime.
    #[serde(skip)]
    pub measured_start: Option<SystemTime>,
}

/// Serialise a histogram the way the JSON carries it (V2 + deflate, base64); the inverse of
/// [`decode_histogram`].
pub fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    // Serialising to a Vec only fails for histograms too large for V2, which 3-digit ns
    // histograms bounded at one hour are not; an empty string would then flag it.
    if V2DeflateSerializer::new().serialize(h, &mut buf).is_err() {
        return String::new();
    }
    base64::engine::general_purpose::STANDARD.encode(buf)
}

/// Decode a histogram from the JSON form (base64 of V2 + deflate).
pub fn decode_histogram(s: &str) -> io::Result<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Deserializer::new()
        .deserialize(&mut io::Cursor::new(bytes))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{e:?}")))
}

impl Report {
    /// The merged latency histogram (corrected in open loop).
    pub fn latency_histogram(&self) -> io::Result<Histogram<u64>> {
        decode_histogram(&self.histogram)
    }

    /// This report as pretty-printed JSON (the `iomodels.result/1.3` document).
    pub fn to_json(&self) -> String {
        // Plain data with string keys: serialisation cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Write the result JSON atomically (temp file + rename).
    pub fn write_json(&self, path: &Path) -> io::Result<()> {
        let mut s = self.to_json();
        s.push('\n');
        atomic_file::write(path, s.as_bytes())
    }

    /// The `.hlog` text: HdrHistogram interval log, 1 s intervals, values in ns, tagged
    /// `corrected` (and `uncorrected` in open loop), StartTime and BaseTime at the start of the
    /// measured window, interval max shown in milliseconds.
    pub fn hlog(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut ser = V2DeflateSerializer::new();
        let base = self.measured_start.unwrap_or_else(SystemTime::now);
        let mut b = IntervalLogWriterBuilder::new();
        b.add_comment(&format!("iomodels load {} ({SCHEMA})", self.tool_version))
            .add_comment(&format!("target {}", self.workload.addr))
            .add_comment("values in nanoseconds; max column in milliseconds")
            .with_start_time(base)
            .with_base_time(base)
            .with_max_value_divisor(1e6);
        let mut w = b.begin_log_with(&mut out, &mut ser)?;
        let to_io = |e| io::Error::other(format!("{e:?}"));
        for iv in &self.intervals {
            w.write_histogram(&iv.corrected, iv.start, iv.length, Tag::new("corrected"))
                .map_err(to_io)?;
            if let Some(u) = &iv.uncorrected {
                w.write_histogram(u, iv.start, iv.length, Tag::new("uncorrected"))
                    .map_err(to_io)?;
            }
        }
        drop(w);
        Ok(out)
    }

    /// Write the `.hlog` atomically (temp file + rename).
    pub fn write_hlog(&self, path: &Path) -> io::Result<()> {
        atomic_file::write(path, &self.hlog()?)
    }
}
