//! `iomodels load ADDR`: flags → validated `loadgen::Workload` → run → summary, JSON, `.hlog`.
//!
//! Everything specific to the `load` command lives under here, so `main.rs` only dispatches:
//! [`args`] (the flags and their validation), [`outputs`] (`--json`/`--hlog`, checked before
//! the run), [`summary`] (the human summary), and this file, the command itself (address,
//! descriptor limit, Ctrl-C, progress line). It deliberately does
//! not measure anything itself: the numbers come from the `loadgen` report, computed once.

mod args;
pub mod outputs;
mod summary;

pub use args::LoadArgs;

use std::cell::RefCell;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;
use iomodels::explain::Session;
use loadgen::LoadError;

use crate::exit::{self, CliError, CliResult};
use crate::interrupt::Interrupt;
use crate::resolve;
use outputs::Outputs;
use summary::print_summary;

/// The address to load: the only one `spec` resolves to, or else the first that accepts a
/// connection within `timeout`, in the resolver's order (so `localhost` reaches a server on
/// 127.0.0.1 when the hosts file lists `::1` first). That probe is one extra connection the
/// server sees (accepted and closed at once); a single address is not probed, so a literal
/// `IP:PORT` (what `run` uses) costs nothing extra. The generator takes one address, so the
/// choice is made here, once.
fn choose(spec: &str, addrs: &[SocketAddr], timeout: Duration) -> Result<SocketAddr, CliError> {
    if let [one] = addrs {
        return Ok(*one);
    }
    resolve::first_accepting(addrs, timeout).map_err(|tried| {
        CliError::runtime(anyhow!(
            "no address of {spec} accepted a connection: {tried}; is a server listening? (start one with iomodels serve MODEL)"
        ))
    })
}

/// The UDP address to load: the only one, or else the first (in the resolver's order) that does
/// not refuse the generator's probe datagram (ICMP port unreachable), each tried for at most
/// `timeout` (1 s at most): `localhost` reaches a UDP server on 127.0.0.1 when `::1` comes
/// first. A silent address is taken (a UDP server need not answer a probe); if every address
/// refuses, the first is loaded and the run's own probe reports the refusal.
fn choose_udp(addrs: &[SocketAddr], timeout: Duration) -> SocketAddr {
    if let [one] = addrs {
        return *one;
    }
    let wait = timeout.min(Duration::from_secs(1));
    addrs
        .iter()
        .copied()
        .find(|a| loadgen::probe_udp(*a, wait).is_ok())
        .unwrap_or(addrs[0])
}

/// Run the `load` command.
pub fn run(args: LoadArgs) -> CliResult {
    args.check().map_err(CliError::usage)?;
    // Before anything connects: a path that cannot be written must not cost a measurement.
    let outputs = Outputs::check(args.json.clone(), args.hlog.clone()).map_err(CliError::usage)?;
    let addrs = resolve::resolve("ADDR", &args.addr).map_err(CliError::usage)?;

    // 10,000 connections need more descriptors than the usual soft limit of 1,024.
    let sockets = args.connections + args.idle;
    let want = (sockets + 64) as u64;
    if let Ok(got) = rlimit::increase_nofile_limit(want.max(16_384))
        && got < want
    {
        return Err(CliError::usage(anyhow!(
            "{sockets} connections need {want} file descriptors, but the limit is {got}: raise it (ulimit -n {want}) or ask for fewer"
        )));
    }

    if let Some(pid) = args.pid {
        iomodels::explain::check_pid(pid)
            .map_err(|e| CliError::usage(anyhow!("--pid {pid}: {e}")))?;
    }
    let udp = args.proto == Some(loadgen::Proto::Udp);
    let addr = if udp {
        choose_udp(&addrs, args.timeout)
    } else {
        choose(&args.addr, &addrs, args.timeout)?
    };
    let workload = args.workload(addr).map_err(CliError::usage)?;
    let o = workload.options();

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
    // Attached before the generator starts, so its workers inherit the counters.
    let explain = args
        .explain
        .then(|| RefCell::new(Session::attach(args.pid)));
    let window = |edge: loadgen::Window| {
        if let Some(s) = &explain {
            match edge {
                loadgen::Window::Opened => s.borrow_mut().start(),
                loadgen::Window::Closed => s.borrow_mut().stop(),
            }
        }
    };
    let hooks = loadgen::Hooks {
        progress: Some(&on_progress),
        window: Some(&window),
    };
    let result = loadgen::run_with_hooks(&workload, stop, &hooks);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let report = match result {
        Ok(r) => r,
        Err(LoadError::Refused { addr }) if udp => {
            return Err(CliError::runtime(anyhow!(
                "{addr} refused the UDP probe (ICMP port unreachable): is a UDP server listening? (start one with iomodels serve MODEL --proto udp)"
            )));
        }
        Err(LoadError::Refused { addr }) => {
            return Err(CliError::runtime(anyhow!(
                "connection refused by {addr}: is a server listening? (start one with iomodels serve MODEL)"
            )));
        }
        Err(e) => return Err(CliError::runtime(e)),
    };

    let mut result = iomodels::record::PointResult::client_only(report);
    if let Some(s) = explain {
        match s.into_inner().finish(result.report.requests) {
            Ok(e) => result.explain = Some(e),
            Err(why) => result
                .report
                .warnings
                .push(format!("kernel counts (explain) unavailable: {why}")),
        }
    }
    let report = &result.report;
    let written = outputs.write(&result);
    // The summary always, whatever happened to the files. A closed stdout (`| head`) is not an
    // error: ignore write failures of the summary.
    let _ = print_summary(&mut std::io::stdout().lock(), report);
    if let Some(e) = &result.explain {
        let _ = iomodels::export::explain::write_text(&mut std::io::stdout().lock(), e);
    }
    // A file not written is a failure even after Ctrl-C: 130 promises the files are there.
    written.map_err(CliError::runtime)?;

    if report.interrupted {
        return Ok(ExitCode::from(exit::INTERRUPTED));
    }
    if let (0, Some(u)) = (report.requests, &report.udp) {
        return Err(CliError::runtime(anyhow!(
            "no datagram answered by {} ({} sent, {} lost, {} errors)",
            report.workload.addr,
            u.sent,
            u.lost,
            report.errors.total
        )));
    }
    if report.requests == 0 {
        return Err(CliError::runtime(anyhow!(
            "no request completed against {} ({} errors)",
            report.workload.addr,
            report.errors.total
        )));
    }
    if let Some(silent) = stopped_answering(report) {
        return Err(CliError::runtime(anyhow!(
            "{} stopped answering {:.1} s into the measured window: nothing completed in its last \
             {:.1} s, and it refused or reset {} times (the figures above, and any --json, cover \
             what it answered)",
            report.workload.addr,
            report.duration_s - silent.as_secs_f64(),
            silent.as_secs_f64(),
            report.errors.refused + report.errors.reset
        )));
    }
    Ok(ExitCode::SUCCESS)
}

/// How long the end of the measured window went without a completion, if the server stopped
/// answering: at least [`SILENT_END`] with nothing completed, and refusals or resets counted (a
/// server that died; a slow one still completes, and a silent one is `requests == 0` above).
/// Per the exit-code contract that is a failure at run time (exit 1), with the figures kept.
fn stopped_answering(report: &loadgen::Report) -> Option<Duration> {
    const SILENT_END: Duration = Duration::from_secs(1);
    if report.errors.refused + report.errors.reset == 0 {
        return None;
    }
    let silent: Duration = report
        .intervals
        .iter()
        .rev()
        .take_while(|i| i.corrected.is_empty())
        .map(|i| i.length)
        .sum();
    (silent >= SILENT_END).then_some(silent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_takes_the_first_address_that_does_not_refuse() {
        // A port with nothing bound (ICMP port unreachable), then a live echo socket: the
        // second is chosen, as `localhost` must reach 127.0.0.1 when `::1` refuses.
        let dead = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let live = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let live_addr = live.local_addr().unwrap();
        let echo = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            let (n, from) = live.recv_from(&mut buf).unwrap();
            live.send_to(&buf[..n], from).unwrap();
        });
        let t = Duration::from_secs(2);
        assert_eq!(choose_udp(&[dead, live_addr], t), live_addr);
        echo.join().unwrap();
        // Every address refuses: the first, whose refusal the run then reports.
        assert_eq!(choose_udp(&[dead, dead], t), dead);
        assert_eq!(
            choose_udp(&[live_addr], t),
            live_addr,
            "one address: no probe"
        );
    }
}
