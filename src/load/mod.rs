//! `iomodels load ADDR`: flags → validated `loadgen::Workload` → run → summary, JSON, `.hlog`.
//!
//! Everything specific to the `load` command lives under here, so `main.rs` only dispatches:
//! [`args`] (the flags and their validation), [`summary`] (the human summary), and this file,
//! the command itself (descriptor limit, Ctrl-C, progress line, outputs). It deliberately does
//! not measure anything itself: the numbers come from the `loadgen` report, computed once.

mod args;
mod summary;

pub use args::LoadArgs;

use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow};
use loadgen::LoadError;

use crate::exit::{self, CliError, CliResult};
use crate::interrupt::Interrupt;
use summary::print_summary;

fn resolve(addr: &str) -> anyhow::Result<SocketAddr> {
    addr.to_socket_addrs()
        .with_context(|| format!("cannot resolve {addr:?} (expected HOST:PORT)"))?
        .next()
        .ok_or_else(|| anyhow!("{addr:?} resolves to no address"))
}

/// Run the `load` command.
pub fn run(args: LoadArgs) -> CliResult {
    let json = args.json.clone();
    let hlog = args.hlog.clone();
    args.check().map_err(CliError::usage)?;
    let addr = resolve(&args.addr).map_err(CliError::usage)?;
    let workload = args.workload(addr).map_err(CliError::usage)?;
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
