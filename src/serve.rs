//! `iomodels serve MODEL`: start one model, print `listening ADDR`, stop on a signal (or stdin
//! EOF), print the stats as one JSON line.
//!
//! stdout carries exactly those two lines (the contract `run` and scripts parse); everything
//! else goes to stderr.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::Args;
use servers::{AcceptMode, Config, Model, PinError, Proto, Server, StartError, UringOptions};

use crate::exit::{CliError, CliResult};
use crate::interrupt::Interrupt;
use crate::limits;
use crate::resolve::{self, Tried};
use crate::units::{CpuList, parse_bytes, parse_cpus, parse_duration};

/// Flags of `iomodels serve`, raw; checked by `servers::Config::validate` when the server starts.
#[derive(Args)]
pub struct ServeArgs {
    /// The I/O model (see `iomodels models`).
    model: String,
    /// Address to listen on, HOST:PORT; port 0 picks a free port (the real one is printed). A
    /// host name binds the first of its addresses that can be bound here.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:7700")]
    listen: String,
    /// Event loops (one per thread); for tokio-mt, runtime workers.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Per-connection buffer in bytes (suffixes k, KiB, m, MiB allowed): the same for every model.
    /// TCP only: UDP receives every datagram into a 64 KiB buffer, so 65,507 B arrive whole.
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
    /// io_uring models: submission queue entries per ring (rounded up to a power of two; the
    /// completion queue gets twice as many). Recorded in the stats' settings.
    #[arg(long, value_name = "N", default_value_t = UringOptions::default().ring_entries)]
    ring_entries: u32,
    /// uring-multishot: buffers in each loop's provided-buffer ring (a power of two), each
    /// --buffer bytes, shared by the loop's connections. Recorded in the stats' settings.
    #[arg(long, value_name = "N", default_value_t = UringOptions::default().ring_buffers)]
    ring_buffers: u16,
    /// io_uring models: a kernel thread per ring polls the submission queue
    /// (IORING_SETUP_SQPOLL), sleeping after IDLE without work (default 1s; 1ms to 60s). Its
    /// CPU is the server process's. Excludes DEFER_TASKRUN. Recorded in the stats' settings.
    #[arg(long, value_name = "IDLE", num_args = 0..=1, require_equals = true,
          default_missing_value = "1s", value_parser = parse_duration)]
    sqpoll: Option<Duration>,
    /// uring-multishot: register accepted sockets in the ring's fixed-file table and name them
    /// by slot in every operation. Recorded in the stats' settings.
    #[arg(long)]
    fixed_files: bool,
    /// uring-multishot: set the ring up without SINGLE_ISSUER | DEFER_TASKRUN (the ablation).
    /// Recorded in the stats' settings.
    #[arg(long)]
    no_defer_taskrun: bool,
    /// The transport: tcp (byte-stream echo) or udp (every datagram sent back to its sender;
    /// `iomodels models` says which models serve it).
    #[arg(long, default_value = "tcp", value_parser = str::parse::<Proto>)]
    proto: Proto,
    /// UDP: SO_RCVBUF to ask for on the server's sockets (suffixes k, m); the stats' settings
    /// record what the kernel granted. Default: the system's.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    rcvbuf: Option<usize>,
    /// UDP: SO_SNDBUF to ask for, as --rcvbuf.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    sndbuf: Option<usize>,
    /// Also stop when stdin reaches end of file (the portable stop `run` uses).
    #[arg(long)]
    stop_on_stdin_eof: bool,
    /// Never sleep: every loop waits with a zero timeout, so a request skips the server's
    /// wake-up (a whole CPU per loop). Event-loop models only (`iomodels models` says which).
    #[arg(long)]
    busy_poll: bool,
}

fn servers_default_backlog() -> i32 {
    Config::default().backlog
}

/// Run the `serve` command: start, print `listening ADDR`, wait for a stop, print the stats.
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
        uring: UringOptions {
            ring_entries: args.ring_entries,
            ring_buffers: args.ring_buffers,
            // Rounded up, so 0.4 ms is 1 ms rather than 0; past u32 it fails validation.
            sqpoll_idle_ms: args
                .sqpoll
                .map(|d| u32::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u32::MAX)),
            fixed_files: args.fixed_files,
            defer_taskrun: !args.no_defer_taskrun,
        },
        busy_poll: args.busy_poll,
        proto: args.proto,
        rcvbuf: args.rcvbuf,
        sndbuf: args.sndbuf,
    };
    // Before any thread exists (the server's, the signal handler's, the stdin watcher's): on
    // Linux threads inherit the affinity of the thread that creates them.
    if let Some(cpus) = &args.cpus {
        pin(cpus)?;
    }
    limits::raise_nofile();

    let addrs = resolve::resolve("--listen", &args.listen).map_err(CliError::usage)?;
    let server = start(model, &args.listen, &addrs, &config, |m, a, c| {
        Server::start(m, a, c)
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

/// Starts the server on the first of `addrs` that can be bound here, as `TcpListener::bind`
/// does with a host name. Only "cannot bind this address here" moves on to the next address
/// (for example `::1` on a machine without IPv6); a port in use ends the search, so a second
/// `serve --listen localhost:7700` fails (exit 2) instead of taking the same port on the other
/// address family, where `load localhost:7700` would not find it. `start_one` is
/// [`Server::start`]; a parameter so a test can choose what each address does.
fn start<S>(
    model: Model,
    spec: &str,
    addrs: &[SocketAddr],
    config: &Config,
    start_one: impl Fn(Model, SocketAddr, &Config) -> Result<S, StartError>,
) -> Result<S, CliError> {
    let code = |e: StartError| match e {
        StartError::Io(_) => CliError::runtime(e),
        _ => CliError::usage(e),
    };
    let mut tried = match resolve::first_ok(
        addrs,
        |a| start_one(model, a, config),
        |e| matches!(e, StartError::Bind { .. }),
    ) {
        Ok(s) => return Ok(s),
        Err(tried) => tried.0,
    };
    let all_bind = tried
        .iter()
        .all(|(_, e)| matches!(e, StartError::Bind { .. }));
    if tried.len() == 1 || !all_bind {
        // One address, or a final error (port in use, model, config) that is the cause.
        let (_, last) = tried.pop().expect("at least one address");
        return Err(code(last));
    }
    Err(CliError::usage(anyhow!(
        "--listen {spec}: no address of it can be bound here: {}; give an address of this machine, e.g. 127.0.0.1:7700",
        Tried(
            tried
                .into_iter()
                .map(|(a, e)| (a, bind_reason(e)))
                .collect()
        )
    )))
}

/// What the OS said about one address, without repeating the address.
fn bind_reason(e: StartError) -> String {
    match e {
        StartError::Bind { source, .. } => source.to_string(),
        e => e.to_string(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn addrs() -> Vec<SocketAddr> {
        vec![
            "[::1]:7700".parse().unwrap(),
            "127.0.0.1:7700".parse().unwrap(),
        ]
    }

    fn not_here(addr: SocketAddr) -> StartError {
        StartError::Bind {
            addr,
            source: io::Error::from(io::ErrorKind::AddrNotAvailable),
        }
    }

    #[test]
    fn listen_binds_the_first_address_that_can_be_bound_here() {
        let got = start(
            Model::Epoll,
            "localhost:7700",
            &addrs(),
            &Config::default(),
            |_, a, _| {
                if a.is_ipv6() { Err(not_here(a)) } else { Ok(a) }
            },
        );
        assert_eq!(got.ok(), Some(addrs()[1]));
    }

    #[test]
    fn a_port_in_use_ends_the_search_with_exit_2() {
        let tried = std::cell::RefCell::new(Vec::new());
        let e = start(
            Model::Epoll,
            "localhost:7700",
            &addrs(),
            &Config::default(),
            |_, a, _| {
                tried.borrow_mut().push(a);
                Err::<(), _>(StartError::AddrInUse(a))
            },
        )
        .expect_err("in use");
        assert_eq!(e.code, crate::exit::USAGE);
        assert!(format!("{:#}", e.error).starts_with("[::1]:7700 is already in use"));
        assert_eq!(*tried.borrow(), addrs()[..1]);
    }

    #[test]
    fn when_no_address_binds_each_is_named() {
        let e = start(
            Model::Epoll,
            "localhost:7700",
            &addrs(),
            &Config::default(),
            |_, a, _| Err::<(), _>(not_here(a)),
        )
        .expect_err("none binds");
        assert_eq!(e.code, crate::exit::USAGE);
        let msg = format!("{:#}", e.error);
        assert!(
            msg.starts_with(
                "--listen localhost:7700: no address of it can be bound here: [::1]:7700 ("
            ) && msg.contains("), 127.0.0.1:7700 (")
                && msg.ends_with("give an address of this machine, e.g. 127.0.0.1:7700"),
            "{msg}"
        );
    }
}
