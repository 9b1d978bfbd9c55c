//! `iomodels load ADDR`: flags → validated `loadgen::Workload` → run → summary, JSON, `.hlog`.
//!
//! Everything specific to the `load` command lives here (flags, their validation, Ctrl-C,
//! progress bar, the human summary), so `main.rs` only dispatches. It deliberately does not
//! measure anything itself: the numbers come from the `loadgen` report, computed once.

use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::{Args, ValueEnum};
use loadgen::{Arrival, LoadError, Options, Report, SizeRange, Workload};

use crate::exit::{self, CliError, CliResult};
use crate::interrupt::Interrupt;
use crate::units::{CpuList, parse_bytes, parse_cpus};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ArrivalArg {
    Uniform,
    Poisson,
}

/// Flags of `iomodels load`, raw; converted with `TryFrom` into a validated workload.
#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Echo server address, HOST:PORT.
    pub addr: String,
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
    /// Open-loop arrival process [default: uniform].
    #[arg(long, value_enum)]
    pub arrival: Option<ArrivalArg>,
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
}

/// Parses `10s`, `500ms`, `2m` (humantime).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 10s, 500ms, 2m)"))
}

fn parse_range(s: &str) -> Result<(usize, usize), String> {
    let (a, b) = s
        .split_once("..")
        .ok_or("expected MIN..MAX, e.g. 64..1024")?;
    Ok((parse_bytes(a)?, parse_bytes(b)?))
}

fn resolve(addr: &str) -> anyhow::Result<SocketAddr> {
    addr.to_socket_addrs()
        .with_context(|| format!("cannot resolve {addr:?} (expected HOST:PORT)"))?
        .next()
        .ok_or_else(|| anyhow!("{addr:?} resolves to no address"))
}

impl TryFrom<LoadArgs> for Workload {
    type Error = anyhow::Error;

    fn try_from(a: LoadArgs) -> anyhow::Result<Workload> {
        let mut o = Options::new(resolve(&a.addr)?);
        if a.size.is_some() && a.size_range.is_some() {
            return Err(anyhow!("--size and --size-range are exclusive: give one"));
        }
        if a.duration.is_some() && a.requests.is_some() {
            return Err(anyhow!("--duration and --requests are exclusive: give one"));
        }
        o.connections = a.connections;
        if let Some(s) = a.size {
            o.size = s;
        }
        o.size_range = a.size_range.map(|(min, max)| SizeRange { min, max });
        o.depth = a.depth;
        o.rate = a.rate;
        if let Some(arr) = a.arrival {
            o.arrival = match arr {
                ArrivalArg::Uniform => Arrival::Uniform,
                ArrivalArg::Poisson => Arrival::Poisson,
            };
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
        o.cpus = a.cpus.map(|c| c.0);
        if let Some(s) = a.seed {
            o.seed = s;
        }
        // The library says what is wrong with the value; the flag that set it is ours to name.
        o.validate()
            .map_err(|e| anyhow!("{e} (--{})", e.field().replace('_', "-")))
    }
}

/// Run the `load` command.
pub fn run(args: LoadArgs) -> CliResult {
    let json = args.json.clone();
    let hlog = args.hlog.clone();
    let workload = Workload::try_from(args).map_err(CliError::usage)?;
    let o = workload.options();

    // 10,000 connections need more descriptors than the usual soft limit of 1,024.
    let want = (o.connections + o.idle + 64) as u64;
    if let Ok(got) = rlimit::increase_nofile_limit(want.max(16_384))
        && got < want
    {
        return Err(CliError::usage(anyhow!(
            "{} connections need {want} file descriptors, but the limit is {got}",
            o.connections + o.idle
        )));
    }

    let interrupt = Interrupt::install().map_err(CliError::runtime)?;
    let stop = interrupt.stop();

    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.enable_steady_tick(Duration::from_millis(200));
        b.set_message(format!("connecting to {}", o.addr));
        b
    });
    let on_progress = |p: &loadgen::Progress| {
        if let Some(b) = &bar {
            b.set_message(format!(
                "{} {:>5.1}s  {:>10.0} req/s  p99 {:>9.1} µs  requests {}  errors {}",
                if p.measuring {
                    "measuring"
                } else {
                    "warm-up  "
                },
                p.elapsed.as_secs_f64(),
                p.interval_rps,
                p.interval_p99_us,
                p.requests,
                p.errors
            ));
        }
    };
    let result = loadgen::run(&workload, stop, Some(&on_progress));
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let report = match result {
        Ok(r) => r,
        Err(LoadError::Refused { addr }) => {
            return Err(CliError::runtime(anyhow!(
                "connection refused by {addr}: is a server listening? (start one with iomodels serve MODEL)"
            )));
        }
        Err(e) => return Err(CliError::runtime(e)),
    };

    let result = iomodels::record::PointResult::client_only(report);
    let report = &result.report;
    if let Some(p) = &json {
        result
            .write_json(p)
            .map_err(|e| CliError::runtime(anyhow!("cannot write {}: {e}", p.display())))?;
    }
    if let Some(p) = &hlog {
        report
            .write_hlog(p)
            .map_err(|e| CliError::runtime(anyhow!("cannot write {}: {e}", p.display())))?;
    }
    // A closed stdout (`| head`) is not an error: ignore write failures of the summary.
    let _ = print_summary(&mut std::io::stdout().lock(), report);

    if report.interrupted {
        return Ok(ExitCode::from(exit::INTERRUPTED));
    }
    if report.requests == 0 {
        return Err(CliError::runtime(anyhow!(
            "no request completed against {} ({} errors)",
            report.workload.addr,
            report.errors.total
        )));
    }
    Ok(ExitCode::SUCCESS)
}

fn latency_line(
    out: &mut impl Write,
    name: &str,
    l: &loadgen::LatencySummary,
) -> std::io::Result<()> {
    writeln!(
        out,
        "  {name:<12} p50 {:>9.1}  p90 {:>9.1}  p99 {:>9.1}  p99.9 {:>9.1}  p99.99 {:>9.1}  max {:>9.1} µs",
        l.p50, l.p90, l.p99, l.p99_9, l.p99_99, l.max
    )
}

/// The human summary, on stdout.
pub fn print_summary(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    let o = &r.workload;
    let mode = match (o.rate, o.connect_per_request) {
        (Some(rate), _) => format!("open loop {rate} req/s"),
        (None, true) => "closed loop, connect per request".to_owned(),
        (None, false) => "closed loop".to_owned(),
    };
    writeln!(
        out,
        "{}: {mode}, {} connections × depth {}, {} B, {:.2} s measured{}",
        o.addr,
        o.connections,
        o.depth,
        o.size_range
            .map_or(o.size.to_string(), |s| format!("{}..{}", s.min, s.max)),
        r.duration_s,
        if r.interrupted { " (interrupted)" } else { "" }
    )?;
    writeln!(
        out,
        "  requests     {}  throughput {:.0} req/s",
        r.requests, r.throughput_rps
    )?;
    let name = if o.rate.is_some() {
        "corrected"
    } else {
        "latency"
    };
    latency_line(out, name, &r.latency_us)?;
    if let Some(u) = &r.uncorrected_latency_us {
        latency_line(out, "uncorrected", u)?;
    }
    if let Some(l) = &r.send_lag_us {
        latency_line(out, "send lag", l)?;
    }
    if let Some(c) = &r.connect_us {
        latency_line(out, "connect", c)?;
    }
    let e = &r.errors;
    writeln!(
        out,
        "  errors       {} (refused {}, reset {}, timeout {}, mismatch {}, addr_unavailable {}, other {})",
        e.total, e.refused, e.reset, e.timeout, e.mismatch, e.addr_unavailable, e.other
    )?;
    writeln!(
        out,
        "  client CPU   user {:.2} s  system {:.2} s  {:.2} µs/request",
        r.client_cpu.user_s, r.client_cpu.system_s, r.client_cpu.us_per_request
    )?;
    if r.saturated {
        writeln!(
            out,
            "  SATURATED: the generator did not keep the schedule; see warnings"
        )?;
    }
    for w in &r.warnings {
        writeln!(out, "  warning: {w}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("64..1024").unwrap(), (64, 1024));
        assert!(parse_range("64").is_err());
    }
}
