//! The flags of `iomodels load`, raw (clap), and their conversion into a validated
//! `loadgen::Workload`.
//!
//! Parsing and validation only: nothing here resolves a host, opens a file or connects.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use loadgen::{Arrival, Options, Proto, SizeRange, UDP_HEADER, UDP_MAX_SIZE, Workload};

use crate::units::{CpuList, parse_bytes, parse_cpus, parse_duration};

/// Flags of `iomodels load`, raw; [`LoadArgs::check`] names a rejected flag, and
/// [`LoadArgs::workload`] builds the validated workload once the address is settled.
#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Echo server address, HOST:PORT. A host name with several addresses is tried in order
    /// with one probe connection each; the first that accepts is loaded (with --proto udp, one
    /// probe datagram each; the first not refused).
    pub addr: String,
    /// Transport: tcp, or udp (one connected UDP socket per connection, one datagram per
    /// request; lost, duplicated, reordered and late datagrams are counted) [default: tcp].
    #[arg(long, value_parser = str::parse::<Proto>)]
    pub proto: Option<Proto>,
    /// Connections kept open (closed and open loop) or connect slots (--connect-per-request).
    #[arg(short = 'c', long, default_value_t = 10)]
    pub connections: usize,
    /// Message size in bytes (suffixes k, KiB, m, MiB allowed) [default: 64].
    #[arg(short = 's', long, value_parser = parse_bytes)]
    pub size: Option<usize>,
    /// Message sizes drawn uniformly from MIN..MAX bytes (seeded).
    #[arg(long, value_name = "MIN..MAX", value_parser = parse_range)]
    pub size_range: Option<(usize, usize)>,
    /// Requests in flight per connection (pipelining).
    #[arg(long, default_value_t = 1)]
    pub depth: usize,
    /// Open loop: total requests per second; latency counts from each intended send time.
    #[arg(short = 'R', long)]
    pub rate: Option<f64>,
    /// Open-loop arrival process: uniform or poisson [default: uniform].
    #[arg(long, value_parser = str::parse::<Arrival>)]
    pub arrival: Option<Arrival>,
    /// Measured duration, after warm-up (10s, 500ms, 2m) [default: 10s].
    #[arg(short = 't', long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after this many measured requests instead of a duration.
    #[arg(short = 'n', long)]
    pub requests: Option<u64>,
    /// Warm-up before measuring, excluded from every figure.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub warmup: Duration,
    /// Per-request timeout: the connection is closed and reopened.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub timeout: Duration,
    /// Do not compare echoed bytes with what was sent.
    #[arg(long)]
    pub no_verify: bool,
    /// Connect, one request, one response, close (netperf TCP_CRR).
    #[arg(long)]
    pub connect_per_request: bool,
    /// Extra silent connections held open during the run.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub idle: usize,
    /// Event-loop threads [default: CPUs this process may run on].
    #[arg(long, value_name = "T")]
    pub threads: Option<usize>,
    /// Pin threads round-robin to these CPUs, e.g. 0,2-3.
    #[arg(long, value_name = "LIST", value_parser = parse_cpus)]
    pub cpus: Option<CpuList>,
    /// Write the result JSON here (atomically).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write an HdrHistogram interval log here (atomically).
    #[arg(long, value_name = "FILE")]
    pub hlog: Option<PathBuf>,
    /// Seed for payloads, sizes and Poisson arrivals.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Never sleep: poll with a zero timeout, so round trips exclude this client's wake-up
    /// (costs a whole CPU per thread; pin it with --cpus).
    #[arg(long)]
    pub busy_poll: bool,
    /// Count system calls, context switches and wake-ups per request from kernel tracepoints
    /// (Linux perf_event_open; needs root or CAP_PERFMON), for this generator and, with --pid,
    /// the server; written under `explain` in --json.
    #[arg(long)]
    pub explain: bool,
    /// The server process to count with --explain (all its threads).
    #[arg(long, value_name = "PID", requires = "explain")]
    pub pid: Option<u32>,
}

fn parse_range(s: &str) -> Result<(usize, usize), String> {
    let (a, b) = s
        .split_once("..")
        .ok_or("expected MIN..MAX, e.g. 64..1024")?;
    Ok((parse_bytes(a)?, parse_bytes(b)?))
}

/// The largest message `loadgen` accepts (its `workload::MAX_SIZE`, not exported); the test
/// `max_size_is_loadgens` fails if the two drift apart.
const MAX_SIZE: usize = 16 << 20;

impl LoadArgs {
    /// Checks every flag on its own and in combination, before anything resolves, opens or
    /// connects. Each error is one line that starts with the flag (short and long form, as the
    /// user may have typed either) and ends with what to give instead. `loadgen` validates the
    /// same things again, but its messages speak of the workload, not of flags.
    pub fn check(&self) -> anyhow::Result<()> {
        let at_least_1 = |flag: &str, v: Option<usize>| match v {
            Some(0) => Err(anyhow!("{flag}: must be at least 1")),
            _ => Ok(()),
        };
        at_least_1("-c/--connections", Some(self.connections))?;
        at_least_1("--depth", Some(self.depth))?;
        at_least_1("--threads", self.threads)?;
        if self.size.is_some() && self.size_range.is_some() {
            return Err(anyhow!(
                "-s/--size and --size-range are exclusive: give one"
            ));
        }
        if let Some(s) = self.size {
            if s == 0 {
                return Err(anyhow!("-s/--size: must be at least 1 byte (e.g. 64)"));
            }
            if s > MAX_SIZE {
                return Err(anyhow!(
                    "-s/--size: {s} bytes exceeds the 16 MiB limit; give at most 16MiB"
                ));
            }
        }
        if let Some((min, max)) = self.size_range {
            if min == 0 {
                return Err(anyhow!(
                    "--size-range: MIN must be at least 1 byte (e.g. 64..1024)"
                ));
            }
            if min > max {
                return Err(anyhow!(
                    "--size-range {min}..{max}: MIN exceeds MAX; give MIN..MAX, e.g. {max}..{min}"
                ));
            }
            if max > MAX_SIZE {
                return Err(anyhow!(
                    "--size-range: MAX {max} bytes exceeds the 16 MiB limit; give at most 16MiB"
                ));
            }
        }
        if let Some(r) = self.rate
            && !(r.is_finite() && r > 0.0)
        {
            return Err(anyhow!(
                "-R/--rate: must be a positive number of requests per second (e.g. 20000)"
            ));
        }
        if self.arrival.is_some() && self.rate.is_none() {
            return Err(anyhow!(
                "--arrival applies only to open loop: add -R/--rate"
            ));
        }
        if self.duration.is_some() && self.requests.is_some() {
            return Err(anyhow!(
                "-t/--duration and -n/--requests are exclusive: give one"
            ));
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            return Err(anyhow!("-t/--duration: must be longer than 0 s (e.g. 10s)"));
        }
        if self.requests == Some(0) {
            return Err(anyhow!("-n/--requests: must be at least 1"));
        }
        // A zero timeout would make every connect fail (std refuses a 0 s connect timeout).
        if self.timeout.is_zero() {
            return Err(anyhow!("--timeout: must be longer than 0 s (e.g. 5s)"));
        }
        if self.connect_per_request && self.depth != 1 {
            return Err(anyhow!(
                "--connect-per-request sends one request per connection: leave --depth at 1"
            ));
        }
        if self.proto == Some(Proto::Udp) {
            self.check_udp()?;
        }
        Ok(())
    }

    /// The rules `--proto udp` adds: datagram sizes, and the TCP-only flags.
    fn check_udp(&self) -> anyhow::Result<()> {
        let (flag, min, max) = match (self.size, self.size_range) {
            (_, Some((min, max))) => ("--size-range", min, max),
            (Some(s), None) => ("-s/--size", s, s),
            (None, None) => ("-s/--size", 64, 64),
        };
        if max > UDP_MAX_SIZE {
            return Err(anyhow!(
                "{flag}: {max} bytes exceeds the {UDP_MAX_SIZE}-byte UDP datagram limit (IPv4); give at most {UDP_MAX_SIZE} with --proto udp"
            ));
        }
        if min < UDP_HEADER {
            return Err(anyhow!(
                "{flag}: {min} bytes cannot hold the {UDP_HEADER}-byte UDP request header (connection id, sequence); give at least {UDP_HEADER} with --proto udp"
            ));
        }
        if self.connect_per_request {
            return Err(anyhow!(
                "--connect-per-request is TCP only: UDP has no connection to open per request; drop it or use --proto tcp"
            ));
        }
        if self.idle > 0 {
            return Err(anyhow!(
                "--idle is TCP only: a silent UDP socket is no load on a server; drop it or use --proto tcp"
            ));
        }
        if self.rate.is_some() && self.depth != 1 {
            return Err(anyhow!(
                "--depth applies to closed loop only with --proto udp: with -R/--rate every datagram goes at its intended time; leave --depth at 1"
            ));
        }
        Ok(())
    }

    /// The validated workload against `addr` (the address `load` settled on), after
    /// [`LoadArgs::check`].
    pub fn workload(&self, addr: SocketAddr) -> anyhow::Result<Workload> {
        self.check()?;
        let a = self;
        let mut o = Options::new(addr);
        o.connections = a.connections;
        if let Some(s) = a.size {
            o.size = s;
        }
        o.size_range = a.size_range.map(|(min, max)| SizeRange { min, max });
        o.depth = a.depth;
        o.rate = a.rate;
        if let Some(arr) = a.arrival {
            o.arrival = arr;
        }
        if a.requests.is_some() {
            o.duration = None;
            o.requests = a.requests;
        } else if let Some(d) = a.duration {
            o.duration = Some(d);
        }
        o.warmup = a.warmup;
        o.timeout = a.timeout;
        o.no_verify = a.no_verify;
        o.connect_per_request = a.connect_per_request;
        o.idle = a.idle;
        // The default is one thread per CPU, but never more threads than connections; an
        // explicit --threads above that is kept and reported as reduced by the run.
        o.threads = a.threads.unwrap_or(o.threads.min(o.connections.max(1)));
        o.cpus = a.cpus.as_ref().map(|c| c.0.clone());
        if let Some(s) = a.seed {
            o.seed = s;
        }
        o.busy_poll = a.busy_poll;
        o.proto = a.proto.unwrap_or_default();
        // `check` names the flag of every value it rejects; should the library still refuse
        // one, say which flag set it (the library knows only the field).
        o.validate()
            .map_err(|e| anyhow!("--{}: {e}", e.field().replace('_', "-")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        load: LoadArgs,
    }

    fn args(flags: &[&str]) -> LoadArgs {
        let argv = ["load", "127.0.0.1:1"].iter().chain(flags);
        Cli::try_parse_from(argv).expect("flags parse").load
    }

    fn error(flags: &[&str]) -> String {
        let addr = "127.0.0.1:1".parse().unwrap();
        format!("{:#}", args(flags).workload(addr).expect_err("rejected"))
    }

    #[test]
    fn every_rejected_flag_is_named_in_its_one_line() {
        for (flags, named) in [
            (
                &["-t", "0"][..],
                "-t/--duration: must be longer than 0 s (e.g. 10s)",
            ),
            (&["-c", "0"], "-c/--connections"),
            (&["--depth", "0"], "--depth"),
            (&["--threads", "0"], "--threads"),
            (&["-s", "0"], "-s/--size"),
            (&["-s", "17MiB"], "-s/--size"),
            (&["--size-range", "0..9"], "--size-range"),
            (&["--size-range", "9..3"], "--size-range 9..3"),
            (&["--size-range", "1..17MiB"], "--size-range"),
            (
                &["-s", "1", "--size-range", "1..2"],
                "-s/--size and --size-range",
            ),
            (&["-R", "0"], "-R/--rate"),
            (&["-R", "inf"], "-R/--rate"),
            (&["--arrival", "poisson"], "--arrival"),
            (&["-t", "1s", "-n", "5"], "-t/--duration and -n/--requests"),
            (&["-n", "0"], "-n/--requests"),
            (&["--timeout", "0s"], "--timeout"),
            (
                &["--connect-per-request", "--depth", "2"],
                "--connect-per-request",
            ),
            (&["--proto", "udp", "-s", "65508"], "-s/--size: 65508 bytes"),
            (&["--proto", "udp", "-s", "11"], "-s/--size: 11 bytes"),
            (
                &["--proto", "udp", "--size-range", "8..100"],
                "--size-range: 8 bytes",
            ),
            (
                &["--proto", "udp", "--size-range", "12..70000"],
                "--size-range: 70000 bytes",
            ),
            (
                &["--proto", "udp", "--connect-per-request"],
                "--connect-per-request is TCP only",
            ),
            (&["--proto", "udp", "--idle", "3"], "--idle is TCP only"),
            (
                &["--proto", "udp", "-R", "100", "--depth", "2"],
                "--depth applies to closed loop only",
            ),
        ] {
            let e = error(flags);
            assert!(e.starts_with(named), "{flags:?}: {e}");
            assert!(!e.contains('\n'), "{flags:?}: one line: {e}");
        }
    }

    #[test]
    fn what_check_accepts_loadgen_accepts() {
        let addr = "127.0.0.1:1".parse().unwrap();
        for flags in [
            &[][..],
            &["-s", "16MiB"],
            &["--size-range", "1..16MiB"],
            &["-R", "0.5", "--arrival", "poisson", "-n", "1"],
            &["--connect-per-request", "--threads", "64"],
            &["--proto", "udp", "-s", "65507"],
            &["--proto", "udp", "-s", "12", "--depth", "8"],
            &["--proto", "tcp", "--idle", "2", "-s", "1"],
        ] {
            args(flags).workload(addr).expect("accepted");
        }
    }

    #[test]
    fn max_size_is_loadgens() {
        let addr = "127.0.0.1:1".parse().unwrap();
        let mut o = Options::new(addr);
        o.size = MAX_SIZE;
        assert!(o.clone().validate().is_ok());
        o.size = MAX_SIZE + 1;
        assert!(o.validate().is_err());
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("64..1024").unwrap(), (64, 1024));
        assert!(parse_range("64").is_err());
    }
}
