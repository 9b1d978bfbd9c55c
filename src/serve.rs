//! `iomodels serve MODEL`: start one model, print `listening ADDR`, stop on a signal (or stdin
//! EOF), print the stats as one JSON line.
//!
//! stdout carries exactly those two lines (the contract `run` and scripts parse); everything
//! else goes to stderr.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use clap::Args;
use servers::{AcceptMode, Config, Model, PinError, Server, StartError};

use crate::exit::{CliError, CliResult};
use crate::interrupt::Interrupt;
use crate::limits;
use crate::units::{CpuList, parse_bytes, parse_cpus};

#[derive(Args)]
pub struct ServeArgs {
    /// The I/O model (see `iomodels models`).
    model: String,
    /// Address to listen on; port 0 picks a free port (the real one is printed).
    #[arg(long, default_value = "127.0.0.1:7700")]
    listen: SocketAddr,
    /// Event loops (one per thread); for tokio-mt, runtime workers.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Per-connection buffer in bytes (suffixes k, KiB, m, MiB allowed): the same for every model.
    #[arg(long, default_value = "16KiB", value_parser = parse_bytes)]
    buffer: usize,
    /// Listen backlog.
    #[arg(long, default_value_t = servers_default_backlog())]
    backlog: i32,
    /// How loops share the port with --threads > 1 (default: reuse-port where the OS balances it).
    #[arg(long, value_parser = str::parse::<AcceptMode>)]
    accept: Option<AcceptMode>,
    /// Pin every thread the server makes to these CPUs, e.g. 0,2-3 (Linux, Windows; elsewhere a
    /// warning and the server runs unpinned).
    #[arg(long, value_name = "LIST", value_parser = parse_cpus)]
    cpus: Option<CpuList>,
    /// Also stop when stdin reaches end of file (the portable stop `run` uses).
    #[arg(long)]
    stop_on_stdin_eof: bool,
}

fn servers_default_backlog() -> i32 {
    Config::default().backlog
}

pub fn run(args: ServeArgs) -> CliResult {
    let model: Model = args
        .model
        .parse()
        .map_err(|e: String| CliError::usage(anyhow!(e)))?;
    let config = Config {
        threads: args.threads,
        buffer_size: args.buffer,
        backlog: args.backlog,
        accept: args.accept.unwrap_or_else(AcceptMode::platform_default),
    };
    // Before any thread exists (the server's, the signal handler's, the stdin watcher's): on
    // Linux threads inherit the affinity of the thread that creates them.
    if let Some(cpus) = &args.cpus {
        pin(cpus)?;
    }
    limits::raise_nofile();

    let server = Server::start(model, args.listen, &config).map_err(|e| match e {
        StartError::Io(_) => CliError::runtime(e),
        _ => CliError::usage(e),
    })?;
    let stop = server.stop_handle();
    let on_signal = stop.clone();
    Interrupt::install()
        .map_err(CliError::runtime)?
        .on_interrupt(move || on_signal.stop());
    if args.stop_on_stdin_eof {
        let on_eof = stop.clone();
        std::thread::spawn(move || {
            let mut sink = [0u8; 256];
            let mut stdin = std::io::stdin().lock();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            on_eof.stop();
        });
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening {}", server.local_addr());
    let _ = out.flush();
    drop(out);

    let stats = server
        .wait()
        .context("server failed")
        .map_err(CliError::runtime)?;
    let line = serde_json::to_string(&stats)
        .context("encoding stats")
        .map_err(CliError::runtime)?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    Ok(ExitCode::SUCCESS)
}

/// Pins the process, or says why not: a CPU this process cannot use is a usage error (exit 2)
/// before anything binds; a platform that cannot pin only warns, since the server still works.
fn pin(cpus: &CpuList) -> Result<(), CliError> {
    match servers::pin_process(&cpus.0) {
        Ok(()) => Ok(()),
        Err(e @ PinError::Unsupported(_)) => {
            eprintln!("iomodels: warning: {e}; --cpus ignored, the server runs unpinned");
            Ok(())
        }
        Err(e @ PinError::NoSuchCpu { .. }) => Err(CliError::usage(anyhow!(
            "--cpus: {e}; choose CPUs from that list"
        ))),
        Err(e @ PinError::Empty) => Err(CliError::usage(anyhow!(
            "--cpus: {e}; give a list like 0,2-3"
        ))),
        Err(e) => Err(CliError::runtime(anyhow!("--cpus: {e}"))),
    }
}
