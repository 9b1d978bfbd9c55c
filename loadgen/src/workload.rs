//! The workload: every option of a load run, with the contract's defaults, and its validation.
//!
//! [`Options`] is plain data (public fields, serialisable; its JSON keys are the CLI long flag
//! names in snake_case, durations in seconds). [`Options::validate`] turns it into a
//! [`Workload`], the only thing [`crate::run`] accepts, so the engine never sees a nonsensical
//! combination. This module deliberately knows nothing about flags or strings like `10s`:
//! parsing them belongs to the binary, and a [`WorkloadError`] names the value that is wrong
//! ([`WorkloadError::field`] is its `Options` field), never a flag. The one string it parses is
//! an [`Arrival`] name (`uniform`, `poisson`), the same word the report's JSON uses.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How open-loop arrivals are spaced. Parses from, and serialises to, `uniform` or `poisson`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arrival {
    /// Evenly spaced, `1/rate` apart.
    #[default]
    Uniform,
    /// Exponential gaps (a Poisson process) with mean `1/rate`, from the seeded RNG.
    Poisson,
}

/// The transport a run loads the server over. Parses from, and serialises to, `tcp` or `udp`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// A byte stream per connection; an echo completes when all its bytes came back.
    #[default]
    Tcp,
    /// One connected UDP socket per "connection"; every request is one datagram whose echo is
    /// matched by the header's connection id and sequence number (ARCHITECTURE.md, "UDP load").
    Udp,
}

/// A protocol name that is neither `tcp` nor `udp`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown protocol {0:?}: expected tcp or udp")]
pub struct UnknownProto(pub String);

impl std::str::FromStr for Proto {
    type Err = UnknownProto;

    /// `tcp` or `udp`, ASCII case ignored: the words the report's JSON uses.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            _ => Err(UnknownProto(s.to_owned())),
        }
    }
}

/// The largest UDP payload over IPv4: 65,535 − 8 (UDP header) − 20 (IPv4 header) bytes.
pub const UDP_MAX_SIZE: usize = 65_507;

/// Bytes of the header every UDP request datagram starts with: the connection id (`u32`,
/// little-endian) then the sequence number (`u64`, little-endian); the smallest UDP size.
pub const UDP_HEADER: usize = 12;

/// Message sizes drawn uniformly from `min..=max` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeRange {
    /// Smallest size, bytes.
    pub min: usize,
    /// Largest size, bytes.
    pub max: usize,
}

/// When a run ends (after warm-up).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// A measured duration after warm-up.
    Duration(Duration),
    /// A number of measured requests.
    Requests(u64),
}

/// Raw options with the contract defaults (`-c 10 -s 64 --depth 1 -t 10s --warmup 1s
/// --timeout 5s`). Field names are the CLI long flags in snake_case, because the report's
/// `workload` object is this struct.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Options {
    /// The echo server.
    pub addr: SocketAddr,
    /// Connections kept open (or connect slots with `connect_per_request`).
    pub connections: usize,
    /// Message size, bytes.
    pub size: usize,
    /// Overrides `size` when set.
    pub size_range: Option<SizeRange>,
    /// Requests in flight per connection (pipelining).
    pub depth: usize,
    /// Open loop when set: total requests per second over all connections.
    pub rate: Option<f64>,
    /// How open-loop arrivals are spaced.
    pub arrival: Arrival,
    /// Seconds; exactly one of `duration` and `requests` is set.
    #[serde(with = "opt_secs")]
    pub duration: Option<Duration>,
    /// Measured requests to complete instead of a duration.
    pub requests: Option<u64>,
    #[serde(with = "secs")]
    /// Warm-up before measuring, excluded from every figure.
    pub warmup: Duration,
    #[serde(with = "secs")]
    /// Per-request (and connect) timeout.
    pub timeout: Duration,
    /// Do not compare echoes with what was sent.
    pub no_verify: bool,
    /// Connect, one request, one answer, close.
    pub connect_per_request: bool,
    /// Extra silent connections held open during the run.
    pub idle: usize,
    /// Event-loop threads; never more than `connections` are used (see the report's warnings).
    pub threads: usize,
    /// CPUs to pin the threads to, round-robin.
    pub cpus: Option<Vec<usize>>,
    /// Seed for payloads, sizes and Poisson arrivals.
    pub seed: u64,
    /// Busy-poll: the threads never sleep, they poll their sockets with a zero timeout (and
    /// spin on the open-loop schedule), so a round trip excludes the client's own wake-up.
    /// Absent in results written before it existed (read as `false`, the sleeping generator).
    #[serde(default)]
    pub busy_poll: bool,
    /// The transport. Absent in results written before UDP existed (read as `tcp`).
    #[serde(default)]
    pub proto: Proto,
}

/// Why a set of options is rejected. Each message is one line saying what is wrong with the
/// value, in the terms of the workload (not of any command line: the caller knows its own flag
/// names, and [`WorkloadError::field`] tells it which value the error is about).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkloadError {
    /// A count that must be positive is 0 (the [`Options`] field).
    #[error("{} must be at least 1", noun(.0))]
    Zero(&'static str),
    /// A span of time that must be positive is 0 (the [`Options`] field).
    #[error("{} must be longer than 0 s", noun(.0))]
    ZeroDuration(&'static str),
    /// Both a duration and a request count were given.
    #[error("a duration and a request count are exclusive: give one")]
    DurationAndRequests,
    /// Neither a duration nor a request count was given.
    #[error("give a duration or a request count")]
    NoLimit,
    /// A size range whose minimum is above its maximum.
    #[error("size range {min}..{max}: the minimum must not exceed the maximum")]
    RangeInverted {
        /// The range's lower end, in bytes.
        min: usize,
        /// The range's upper end, in bytes.
        max: usize,
    },
    /// A message (or the largest of a range) above [`MAX_SIZE`].
    #[error("message size {0} exceeds the 16 MiB limit")]
    TooLarge(usize),
    /// An open-loop rate that is 0, negative, infinite or NaN.
    #[error("the rate must be a positive finite number of requests per second")]
    BadRate,
    /// A non-default arrival process without a rate (closed loop has no arrivals).
    #[error("an arrival process applies only to open loop: set a rate")]
    ArrivalWithoutRate,
    /// Connect per request with a depth other than 1.
    #[error("connect per request sends one request per connection: the depth must be 1")]
    DepthWithConnectPerRequest,
    /// An empty CPU list.
    #[error("the CPU list must name at least one CPU")]
    EmptyCpus,
    /// A UDP datagram (or the largest of a range) above [`UDP_MAX_SIZE`].
    #[error("a UDP message of {0} bytes exceeds the 65,507-byte IPv4 datagram limit")]
    UdpTooLarge(usize),
    /// A UDP datagram (or the smallest of a range) below [`UDP_HEADER`].
    #[error("a UDP message of {0} bytes cannot hold the 12-byte header (connection id, sequence)")]
    UdpTooSmall(usize),
    /// UDP with connect per request: a datagram has no connection to open per request.
    #[error("UDP has no connection to open per request: connect per request is TCP only")]
    UdpConnectPerRequest,
    /// UDP with idle connections: a silent UDP socket costs the server nothing to hold.
    #[error("idle connections are TCP only: a silent UDP socket is no load on the server")]
    UdpIdle,
    /// UDP open loop with a depth above 1: datagrams go at their intended times, none waits for
    /// a slot, so a depth would mean nothing.
    #[error(
        "in UDP open loop every datagram goes at its intended time: the depth applies to closed loop only, leave it at 1"
    )]
    UdpOpenLoopDepth,
}

impl WorkloadError {
    /// The [`Options`] field the error is about (for [`WorkloadError::DurationAndRequests`] and
    /// [`WorkloadError::NoLimit`], `duration`): a caller maps it to its own name for the value,
    /// as the binary maps `size_range` to `--size-range`.
    pub fn field(&self) -> &'static str {
        use WorkloadError as E;
        match self {
            E::Zero(field) | E::ZeroDuration(field) => field,
            E::DurationAndRequests | E::NoLimit => "duration",
            E::RangeInverted { .. } => "size_range",
            E::TooLarge(_) => "size",
            E::BadRate => "rate",
            E::ArrivalWithoutRate => "arrival",
            E::DepthWithConnectPerRequest => "depth",
            E::EmptyCpus => "cpus",
            E::UdpTooLarge(_) | E::UdpTooSmall(_) => "size",
            E::UdpConnectPerRequest => "connect_per_request",
            E::UdpIdle => "idle",
            E::UdpOpenLoopDepth => "depth",
        }
    }
}

/// An [`Options`] field as a user says it.
fn noun(field: &str) -> &str {
    match field {
        "size" => "message size",
        "size_range" => "size range minimum",
        "requests" => "request count",
        other => other,
    }
}

/// An arrival process name that is neither `uniform` nor `poisson`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown arrival process {0:?}: expected uniform or poisson")]
pub struct UnknownArrival(pub String);

impl std::str::FromStr for Arrival {
    type Err = UnknownArrival;

    /// `uniform` or `poisson`, ASCII case ignored: the words the report's JSON uses.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "uniform" => Ok(Arrival::Uniform),
            "poisson" => Ok(Arrival::Poisson),
            _ => Err(UnknownArrival(s.to_owned())),
        }
    }
}

/// The largest message: beyond this the per-connection FIFO of unechoed bytes is no longer a
/// small thing, and nobody benchmarks an echo server with it.
pub const MAX_SIZE: usize = 16 << 20;

impl Options {
    /// The contract defaults against `addr`; `threads` is the number of CPUs this process may
    /// run on.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            connections: 10,
            size: 64,
            size_range: None,
            depth: 1,
            rate: None,
            arrival: Arrival::Uniform,
            duration: Some(Duration::from_secs(10)),
            requests: None,
            warmup: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            no_verify: false,
            connect_per_request: false,
            idle: 0,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpus: None,
            // A fixed default keeps runs reproducible; the seed is in the report either way.
            seed: 1,
            busy_poll: false,
            proto: Proto::Tcp,
        }
    }

    /// Check every combination once, so the engine can trust its input.
    pub fn validate(self) -> Result<Workload, WorkloadError> {
        use WorkloadError as E;
        for (name, v) in [
            ("connections", self.connections),
            ("size", self.size),
            ("depth", self.depth),
            ("threads", self.threads),
        ] {
            if v == 0 {
                return Err(E::Zero(name));
            }
        }
        if let Some(r) = self.size_range {
            if r.min == 0 {
                return Err(E::Zero("size_range"));
            }
            if r.min > r.max {
                return Err(E::RangeInverted {
                    min: r.min,
                    max: r.max,
                });
            }
        }
        let largest = self.size_range.map_or(self.size, |r| r.max);
        if largest > MAX_SIZE {
            return Err(E::TooLarge(largest));
        }
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(E::BadRate);
        }
        if self.rate.is_none() && self.arrival != Arrival::Uniform {
            return Err(E::ArrivalWithoutRate);
        }
        match (self.duration, self.requests) {
            (Some(_), Some(_)) => return Err(E::DurationAndRequests),
            (None, None) => return Err(E::NoLimit),
            (Some(d), None) if d.is_zero() => return Err(E::ZeroDuration("duration")),
            (None, Some(0)) => return Err(E::Zero("requests")),
            _ => {}
        }
        if self.timeout.is_zero() {
            return Err(E::ZeroDuration("timeout"));
        }
        if self.connect_per_request && self.depth != 1 {
            return Err(E::DepthWithConnectPerRequest);
        }
        if self.cpus.as_ref().is_some_and(|c| c.is_empty()) {
            return Err(E::EmptyCpus);
        }
        if self.proto == Proto::Udp {
            let smallest = self.size_range.map_or(self.size, |r| r.min);
            if largest > UDP_MAX_SIZE {
                return Err(E::UdpTooLarge(largest));
            }
            if smallest < UDP_HEADER {
                return Err(E::UdpTooSmall(smallest));
            }
            if self.connect_per_request {
                return Err(E::UdpConnectPerRequest);
            }
            if self.idle > 0 {
                return Err(E::UdpIdle);
            }
            if self.rate.is_some() && self.depth != 1 {
                return Err(E::UdpOpenLoopDepth);
            }
        }
        Ok(Workload(self))
    }
}

/// Validated options; build one with [`Options::validate`].
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Workload(Options);

impl Workload {
    /// The validated options.
    pub fn options(&self) -> &Options {
        &self.0
    }

    /// When the run ends.
    pub fn limit(&self) -> Limit {
        match (self.0.duration, self.0.requests) {
            (_, Some(n)) => Limit::Requests(n),
            (Some(d), None) => Limit::Duration(d),
            // validate() guarantees one of them.
            (None, None) => Limit::Requests(1),
        }
    }

    /// Threads actually used: one connection per thread at least, and in open loop or
    /// busy-polling with `cpus` at most one thread per CPU listed: an open-loop thread spins
    /// before each send (to send on time), a busy-polling one all the time, and two spinning on
    /// one CPU take turns, each making the other's sends and reads a scheduler slice late.
    pub fn effective_threads(&self) -> usize {
        let t = self.0.threads.min(self.0.connections).max(1);
        let spins = self.0.rate.is_some() || self.0.busy_poll;
        match &self.0.cpus {
            Some(cpus) if spins && !cpus.is_empty() => t.min(self.distinct_cpus()),
            _ => t,
        }
    }

    /// How many different CPUs `cpus` lists (0 without `cpus`).
    fn distinct_cpus(&self) -> usize {
        let mut c = self.0.cpus.clone().unwrap_or_default();
        c.sort_unstable();
        c.dedup();
        c.len()
    }

    /// Why [`Workload::effective_threads`] is below `threads`, if it is: the report's warning.
    pub fn threads_reduced_because(&self) -> Option<String> {
        let (asked, used) = (self.0.threads, self.effective_threads());
        if used >= asked {
            return None;
        }
        let why = if used < self.0.connections.min(asked) {
            let spinner = if self.0.busy_poll {
                "a busy-polling thread spins"
            } else {
                "an open-loop thread spins before each send"
            };
            format!("{spinner}, so it gets a CPU of its own (--cpus lists {used})")
        } else {
            "a thread needs at least one connection".to_owned()
        };
        Some(format!("threads reduced from {asked} to {used}: {why}"))
    }

    /// Whether requests follow a rate (open loop).
    pub fn is_open_loop(&self) -> bool {
        self.0.rate.is_some()
    }
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}

mod opt_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<f64>::deserialize(d)?
            .map(|v| Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Options {
        Options::new("127.0.0.1:1".parse().unwrap())
    }

    #[test]
    fn defaults_validate() {
        let w = opts().validate().unwrap();
        assert_eq!(w.limit(), Limit::Duration(Duration::from_secs(10)));
        assert!(!w.is_open_loop());
    }

    #[test]
    fn rejects_bad_combinations() {
        let mut o = opts();
        o.requests = Some(5);
        assert_eq!(o.validate(), Err(WorkloadError::DurationAndRequests));
        let mut o = opts();
        o.size_range = Some(SizeRange { min: 9, max: 3 });
        assert!(matches!(
            o.validate(),
            Err(WorkloadError::RangeInverted { .. })
        ));
        let mut o = opts();
        o.rate = Some(0.0);
        assert_eq!(o.validate(), Err(WorkloadError::BadRate));
        let mut o = opts();
        o.depth = 0;
        assert_eq!(o.validate(), Err(WorkloadError::Zero("depth")));
        let mut o = opts();
        o.connect_per_request = true;
        o.depth = 2;
        assert_eq!(o.validate(), Err(WorkloadError::DepthWithConnectPerRequest));
    }

    #[test]
    fn errors_name_values_with_units_never_flags() {
        let mut o = opts();
        o.duration = Some(Duration::ZERO);
        let e = o.validate().unwrap_err();
        assert_eq!(e.to_string(), "duration must be longer than 0 s");
        assert_eq!(e.field(), "duration");
        let mut o = opts();
        o.timeout = Duration::ZERO;
        assert_eq!(
            o.validate().unwrap_err().to_string(),
            "timeout must be longer than 0 s"
        );
        let mut o = opts();
        o.depth = 0;
        assert_eq!(
            o.validate().unwrap_err().to_string(),
            "depth must be at least 1"
        );
        // Every rejection: one line, no flag, and a field that exists in the JSON.
        let keys = serde_json::to_value(opts()).unwrap();
        let mut cases = Vec::new();
        for f in 0..17 {
            let mut o = opts();
            match f {
                0 => o.connections = 0,
                1 => o.size = 0,
                2 => o.threads = 0,
                3 => o.size_range = Some(SizeRange { min: 0, max: 3 }),
                4 => o.size_range = Some(SizeRange { min: 9, max: 3 }),
                5 => o.size = MAX_SIZE + 1,
                6 => o.rate = Some(f64::NAN),
                7 => o.arrival = Arrival::Poisson,
                8 => (o.duration, o.requests) = (None, Some(0)),
                9 => o.requests = Some(3),
                10 => o.cpus = Some(vec![]),
                11 => (o.proto, o.size) = (Proto::Udp, UDP_MAX_SIZE + 1),
                12 => (o.proto, o.size) = (Proto::Udp, UDP_HEADER - 1),
                13 => (o.proto, o.connect_per_request) = (Proto::Udp, true),
                14 => (o.proto, o.idle) = (Proto::Udp, 1),
                15 => (o.proto, o.rate, o.depth) = (Proto::Udp, Some(1.0), 2),
                _ => (o.connect_per_request, o.depth) = (true, 2),
            }
            cases.push(o.validate().unwrap_err());
        }
        for e in cases {
            let m = e.to_string();
            assert!(!m.contains("--") && !m.contains('\n'), "{m}");
            assert!(keys.get(e.field()).is_some(), "{e:?} → {}", e.field());
        }
    }

    #[test]
    fn udp_sizes_run_from_the_header_to_the_ipv4_datagram_limit() {
        let mut o = opts();
        o.proto = Proto::Udp;
        for ok in [UDP_HEADER, 64, UDP_MAX_SIZE] {
            o.size = ok;
            assert!(o.clone().validate().is_ok(), "{ok}");
        }
        o.size = UDP_MAX_SIZE + 1;
        assert_eq!(
            o.clone().validate(),
            Err(WorkloadError::UdpTooLarge(65_508))
        );
        o.size = 64;
        o.size_range = Some(SizeRange { min: 4, max: 100 });
        assert_eq!(o.clone().validate(), Err(WorkloadError::UdpTooSmall(4)));
        // Closed-loop depth is fine; TCP is unaffected by every UDP rule.
        o.size_range = None;
        o.depth = 8;
        assert!(o.clone().validate().is_ok());
        o.proto = Proto::Tcp;
        o.size = 4;
        o.idle = 3;
        assert!(o.validate().is_ok());
        assert_eq!("UDP".parse::<Proto>(), Ok(Proto::Udp));
        assert!("sctp".parse::<Proto>().is_err());
    }

    #[test]
    fn arrival_parses_from_its_json_word() {
        for a in [Arrival::Uniform, Arrival::Poisson] {
            let word = serde_json::to_value(a).unwrap();
            assert_eq!(word.as_str().unwrap().parse::<Arrival>(), Ok(a));
        }
        assert_eq!("Poisson".parse::<Arrival>(), Ok(Arrival::Poisson));
        let e = "gamma".parse::<Arrival>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown arrival process \"gamma\": expected uniform or poisson"
        );
    }

    #[test]
    fn json_keys_are_flag_names() {
        let v = serde_json::to_value(opts()).unwrap();
        for k in [
            "addr",
            "connections",
            "size",
            "size_range",
            "depth",
            "rate",
            "arrival",
            "duration",
            "requests",
            "warmup",
            "timeout",
            "no_verify",
            "connect_per_request",
            "idle",
            "threads",
            "cpus",
            "seed",
            "proto",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(v["duration"], 10.0);
        let back: Options = serde_json::from_value(v).unwrap();
        assert_eq!(back, opts());
    }

    #[test]
    fn open_loop_runs_one_thread_per_pinned_cpu() {
        // Before (issue 18): `load -R 6000 --cpus 1` ran its default two threads (one per CPU
        // of the machine) both on CPU 1; each one's spin before a send held the CPU the other
        // needed, and sends went out milliseconds late (p50 lag 1.5 ms).
        let mut o = opts();
        o.threads = 2;
        o.connections = 50;
        o.cpus = Some(vec![1]);
        o.rate = Some(6000.0);
        let w = o.clone().validate().unwrap();
        assert_eq!(w.effective_threads(), 1);
        let why = w.threads_reduced_because().unwrap();
        assert!(
            why.starts_with("threads reduced from 2 to 1: an open-loop thread spins"),
            "{why}"
        );
        // Two CPUs listed, one twice: still two CPUs.
        o.cpus = Some(vec![1, 0, 1]);
        assert_eq!(o.clone().validate().unwrap().effective_threads(), 2);
        // Closed loop, or not pinned: as before.
        o.cpus = Some(vec![1]);
        o.rate = None;
        assert_eq!(o.clone().validate().unwrap().effective_threads(), 2);
        o.rate = Some(6000.0);
        o.cpus = None;
        assert_eq!(o.clone().validate().unwrap().effective_threads(), 2);
        // Fewer connections than threads: the old reason.
        o.connections = 1;
        let why = o.validate().unwrap().threads_reduced_because().unwrap();
        assert!(
            why.ends_with("a thread needs at least one connection"),
            "{why}"
        );
    }
}
