//! The flags of `iomodels load`, raw (clap), and their conversion into a validated
//! `loadgen::Workload`.
//!
//! Parsing and validation only: nothing here resolves a host, opens a file or connects.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use clap::{Args, ValueEnum};
use loadgen::{Arrival, Options, SizeRange, Workload};

use crate::units::{CpuList, parse_bytes, parse_cpus, parse_duration};

/// `--arrival`: mirrors [`loadgen::Arrival`] until that type parses itself (`FromStr`).
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ArrivalArg {
    /// Evenly spaced sends.
    Uniform,
    /// Exponential gaps (a Poisson process).
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

fn parse_range(s: &str) -> Result<(usize, usize), String> {
    let (a, b) = s
        .split_once("..")
        .ok_or("expected MIN..MAX, e.g. 64..1024")?;
    Ok((parse_bytes(a)?, parse_bytes(b)?))
}

impl LoadArgs {
    /// The validated workload against `addr` (the address `load` settled on).
    pub fn workload(&self, addr: SocketAddr) -> anyhow::Result<Workload> {
        let a = self;
        let mut o = Options::new(addr);
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
        o.cpus = a.cpus.as_ref().map(|c| c.0.clone());
        if let Some(s) = a.seed {
            o.seed = s;
        }
        Ok(o.validate()?)
    }
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
