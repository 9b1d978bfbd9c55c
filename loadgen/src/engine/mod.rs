//! The engine: a coordinator on the caller's thread and one `mio` event loop per worker thread.
//!
//! Each worker owns its share of the connections, its histograms and its RNG; nothing on the hot
//! path is shared or locked. Workers talk to the coordinator over one `mpsc` channel, and only
//! at three moments: "my connections are up" (readiness, so a dead target fails fast), "here is
//! the interval that just ended" (once a second: the interval histograms are *moved* into the
//! channel and replaced, which is how the `.hlog` gets 1 s intervals without a lock), and "done"
//! (the totals come back through `join`).
//!
//! This file is the coordinator ([`run`]) and what the threads exchange: the messages, the shared
//! timeline, each worker's plan and outcome, and the one histogram shape every thread records
//! into, so that merging is exact. The event loop and its timestamp contract are in
//! [`mod@worker`], the per-connection byte FIFO in [`pipe`], open-loop arrival times and the
//! interval grid in [`schedule`], a worker's live 1 s intervals in [`intervals`], what one
//! measured completion records in [`record`], the give-up clock of a request-count run in
//! [`stall`], and the classification of failures in [`errors`].
//!
//! This module deliberately does not format, print or write files; it returns a [`Report`].

mod errors;
mod intervals;
mod pipe;
mod record;
mod schedule;
mod stall;
mod worker;

use std::collections::BTreeMap;
use std::io;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;
use mio::Poll;

use crate::report::{self, Cpu, Errors, Interval, LatencySummary, Report, SCHEMA};
use crate::workload::{Limit, Workload};
use crate::{Hooks, LoadError, Progress, Stop, Window, cpu, host};
use errors::{Kind, kind_of};
use schedule::{SECOND, grid};
use worker::worker;

pub use record::Recorder;
pub use schedule::Schedule;

/// Highest trackable latency: one hour in ns. `saturating_record` clamps anything above.
const HIGHEST_NS: u64 = 3_600_000_000_000;

/// A latency histogram: nanoseconds, 3 significant digits.
fn new_hist() -> Histogram<u64> {
    // Constant, valid bounds: this cannot fail.
    Histogram::new_with_bounds(1, HIGHEST_NS, 3).expect("constant histogram bounds are valid")
}

/// Merge per-thread histograms. Every histogram here comes from [`new_hist`], so their bounds
/// match and `add` cannot fail.
fn merge(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    into.add(from).expect("histograms share bounds");
}

/// What a worker tells the coordinator. Before the run each worker sends exactly one of
/// `Ready` or `SetupFailed`, so the coordinator can account for every thread.
enum Msg {
    Ready {
        connected: usize,
        refused: usize,
        error: Option<io::Error>,
    },
    Interval {
        index: i64,
        corrected: Histogram<u64>,
        uncorrected: Option<Histogram<u64>>,
        errors: u64,
    },
    Done,
    /// The worker could not set itself up (its poller) and will not run.
    SetupFailed(io::Error),
    /// The worker panicked; it sends nothing more (see [`PanicNotice`]).
    Panicked,
}

/// Tells the coordinator when a worker panics, so it neither waits for that worker's `Ready`
/// nor for its `Done`; the panic itself is reported when the thread is joined.
struct PanicNotice {
    id: usize,
    tx: mpsc::Sender<(usize, Msg)>,
}

impl Drop for PanicNotice {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.tx.send((self.id, Msg::Panicked));
        }
    }
}

/// The shared timeline, fixed by the coordinator once every worker is connected.
#[derive(Clone, Copy)]
struct Go {
    t0: Instant,
    warm_end: Instant,
    end: Option<Instant>,
}

/// Interval histograms merged across threads: corrected, uncorrected, which threads sent it.
type Merged = (Histogram<u64>, Option<Histogram<u64>>, Vec<bool>);

/// What one worker is responsible for.
struct Plan {
    id: usize,
    conns: usize,
    idle: usize,
    share: Option<u64>,
    rate: Option<f64>,
    phase: Duration,
    cpu: Option<usize>,
}

fn split(total: u64, parts: usize, i: usize) -> u64 {
    let parts = parts as u64;
    total / parts + u64::from((i as u64) < total % parts)
}

/// What a worker hands back through `join`.
struct Outcome {
    corrected: Histogram<u64>,
    uncorrected: Histogram<u64>,
    lag: Histogram<u64>,
    /// Send lag of requests that found a free connection: the generator's own lateness.
    gen_lag: Histogram<u64>,
    connect: Histogram<u64>,
    requests: u64,
    errors: Errors,
    last_completion: Option<Instant>,
    stopped_at: Instant,
    interrupted: bool,
    arrivals: u64,
    queued: u64,
    warnings: Vec<String>,
}

/// Run a workload to completion (deadline, request count or `stop`), calling `progress` about
/// once a second from this thread, and return its report.
///
/// Fails only if the run cannot start: every first connection refused ([`LoadError::Refused`],
/// within about one connect attempt), no connection possible at all, or a worker thread that
/// cannot start ([`LoadError::Io`]: a run missing its share would measure a different load). A
/// `stop` during start-up
/// is not a failure: the report covers what ran (possibly nothing) and is marked `interrupted`.
/// Failures during the run are counted in the report's `errors` and the run still ends at its
/// deadline.
pub fn run(
    w: &Workload,
    stop: &Stop,
    progress: Option<&dyn Fn(&Progress)>,
) -> Result<Report, LoadError> {
    let hooks = Hooks {
        progress,
        window: None,
    };
    run_with(w, stop, &hooks, |_| Poll::new())
}

/// [`run`] with every hook: progress, and the edges of the measured window.
///
/// `iomodels run` uses the window hook to sample the server process's CPU time over exactly the
/// window the generator's own `client_cpu` covers. Errors and guarantees are those of [`run`].
pub fn run_with_hooks(w: &Workload, stop: &Stop, hooks: &Hooks) -> Result<Report, LoadError> {
    run_with(w, stop, hooks, |_| Poll::new())
}

/// How a worker (by id) gets its poller. A parameter rather than a plain `Poll::new()` only so
/// that a test can make one thread's setup fail, which nothing else provokes reliably.
type NewPoll = fn(usize) -> io::Result<Poll>;

fn run_with(
    w: &Workload,
    stop: &Stop,
    hooks: &Hooks,
    new_poll: NewPoll,
) -> Result<Report, LoadError> {
    let progress = hooks.progress;
    let window = |edge| {
        if let Some(f) = hooks.window {
            f(edge)
        }
    };
    let o = w.options();
    let threads = w.effective_threads();
    let (tx, rx) = mpsc::channel::<(usize, Msg)>();
    std::thread::scope(|s| {
        let mut gos = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        for id in 0..threads {
            let conns = split(o.connections as u64, threads, id) as usize;
            let plan = Plan {
                id,
                conns,
                idle: split(o.idle as u64, threads, id) as usize,
                share: o.requests.map(|n| split(n, threads, id)),
                rate: o.rate.map(|r| r * conns as f64 / o.connections as f64),
                // Stagger uniform schedules so the aggregate stays evenly spaced.
                phase: o
                    .rate
                    .map_or(Duration::ZERO, |r| Duration::from_secs_f64(id as f64 / r)),
                cpu: o.cpus.as_ref().map(|c| c[id % c.len()]),
            };
            let (gtx, grx) = mpsc::channel::<Go>();
            let tx = tx.clone();
            let notice = PanicNotice { id, tx: tx.clone() };
            let spawned = std::thread::Builder::new()
                .name(format!("loadgen-{id}"))
                .spawn_scoped(s, move || {
                    let _notice = notice;
                    worker(w, plan, stop, tx, grx, new_poll)
                });
            match spawned {
                Ok(h) => {
                    gos.push(gtx);
                    handles.push(h);
                }
                // Dropping the Go senders makes the spawned workers give up.
                Err(e) => return Err(LoadError::Io(e)),
            }
        }
        drop(tx);

        let (mut connected, mut refused, mut first_error, mut ready) = (0, 0, None, 0);
        while ready < threads {
            match rx.recv() {
                Ok((
                    _,
                    Msg::Ready {
                        connected: c,
                        refused: r,
                        error,
                    },
                )) => {
                    ready += 1;
                    connected += c;
                    refused += r;
                    if first_error.is_none() {
                        first_error = error;
                    }
                }
                // A run without one thread's share of the connections would measure a different
                // load than asked, and, since every interval waits for every thread, progress would
                // never fire: fail the run. Dropping the Go senders makes the other workers give up.
                Ok((_, Msg::SetupFailed(e))) => {
                    drop(gos);
                    return Err(LoadError::Io(e));
                }
                Ok((_, Msg::Panicked)) => {
                    drop(gos);
                    // Join here: a scope re-raises the panic of any thread left unjoined.
                    for h in handles {
                        let _ = h.join();
                    }
                    return Err(LoadError::Io(io::Error::other(
                        "a load generator thread panicked during start-up",
                    )));
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        // Nothing connected because a stop came first (Ctrl-C during start-up, possibly before
        // a single connect was tried) is an interrupted run, not a dead target: go on, and the
        // workers see the stop on their first turn, so the report is empty and `interrupted`.
        if connected == 0 && !stop.is_stopped() {
            drop(gos);
            return Err(match first_error {
                Some(e) if refused == 0 || kind_of(&e) != Kind::Refused => LoadError::Connect {
                    addr: o.addr,
                    source: e,
                },
                _ => LoadError::Refused { addr: o.addr },
            });
        }

        let t0 = Instant::now();
        let wall_t0 = SystemTime::now();
        let warm_end = t0 + o.warmup;
        let end = match w.limit() {
            Limit::Duration(d) => Some(warm_end + d),
            Limit::Requests(_) => None,
        };
        let go = Go { t0, warm_end, end };
        for g in &gos {
            let _ = g.send(go);
        }

        let mut cpu_start = None;
        let mut warnings = Vec::new();
        let mut pending: BTreeMap<i64, Merged> = BTreeMap::new();
        let (mut live_requests, mut live_errors, mut done) = (0u64, 0u64, 0);
        let mut finished = vec![false; threads];
        let mut reported = i64::MIN;
        while done < threads {
            let now = Instant::now();
            if cpu_start.is_none() && now >= warm_end {
                window(Window::Opened);
                cpu_start = Some(cpu::process_times());
            }
            let wait = if cpu_start.is_none() {
                warm_end - now
            } else {
                Duration::from_millis(250)
            };
            match rx.recv_timeout(wait) {
                Ok((
                    from,
                    Msg::Interval {
                        index,
                        corrected,
                        uncorrected,
                        errors,
                    },
                )) => {
                    if index >= 0 {
                        live_requests += corrected.len();
                        live_errors += errors;
                    }
                    let slot = pending
                        .entry(index)
                        .or_insert_with(|| (new_hist(), None, vec![false; threads]));
                    merge(&mut slot.0, &corrected);
                    if let Some(u) = uncorrected {
                        merge(slot.1.get_or_insert_with(new_hist), &u);
                    }
                    slot.2[from] = true;
                }
                // A panicked worker is finished too; the join below reports the panic.
                Ok((from, Msg::Done | Msg::Panicked)) => {
                    done += 1;
                    finished[from] = true;
                }
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            // An interval is complete once every thread sent it or has finished (a finished
            // thread sends no later intervals: without this, progress would stop as soon as the
            // first thread of a request-count run finished its share).
            let Some(p) = progress else { continue };
            for (&index, slot) in pending.range(reported + 1..) {
                if !slot
                    .2
                    .iter()
                    .zip(&finished)
                    .all(|(&sent, &gone)| sent || gone)
                {
                    break;
                }
                reported = index;
                p(&Progress {
                    elapsed: grid(warm_end, index + 1).saturating_duration_since(t0),
                    measuring: index >= 0,
                    requests: live_requests,
                    errors: live_errors,
                    interval_rps: slot.0.len() as f64,
                    interval_p99_us: slot.0.value_at_quantile(0.99) as f64 / 1e3,
                });
            }
        }
        if cpu_start.is_none() {
            // The run ended before its warm-up did (a stop, or a request count reached early):
            // the window is empty but its edges are still reported, in order.
            window(Window::Opened);
            cpu_start = Some(cpu::process_times());
        }
        let cpu_end = cpu::process_times();
        window(Window::Closed);

        let mut outcomes = Vec::with_capacity(threads);
        for h in handles {
            match h.join() {
                Ok(Some(oc)) => outcomes.push(oc),
                Ok(None) => {}
                Err(_) => {
                    return Err(LoadError::Io(io::Error::other(
                        "a load generator thread panicked",
                    )));
                }
            }
        }

        // Merge: exact, since every histogram shares bounds and `add` sums counts.
        let open = w.is_open_loop();
        let (mut corrected, mut uncorrected, mut lag, mut gen_lag, mut connect) =
            (new_hist(), new_hist(), new_hist(), new_hist(), new_hist());
        let mut errors = Errors::default();
        let (mut requests, mut arrivals, mut queued) = (0u64, 0u64, 0u64);
        let mut interrupted = false;
        let mut last_completion: Option<Instant> = None;
        let mut stopped_at = t0;
        for oc in &outcomes {
            merge(&mut corrected, &oc.corrected);
            merge(&mut uncorrected, &oc.uncorrected);
            merge(&mut lag, &oc.lag);
            merge(&mut gen_lag, &oc.gen_lag);
            merge(&mut connect, &oc.connect);
            errors.add(&oc.errors);
            requests += oc.requests;
            arrivals += oc.arrivals;
            queued += oc.queued;
            interrupted |= oc.interrupted;
            last_completion = last_completion.max(oc.last_completion);
            stopped_at = stopped_at.max(oc.stopped_at);
            for wmsg in &oc.warnings {
                if !warnings.contains(wmsg) {
                    warnings.push(wmsg.clone());
                }
            }
        }

        let measured_end = match (end, interrupted) {
            (Some(e), false) => e,
            (Some(e), true) => stopped_at.min(e),
            (None, false) => last_completion.unwrap_or(warm_end),
            (None, true) => stopped_at,
        }
        .max(warm_end);
        let duration = measured_end - warm_end;
        let duration_s = duration.as_secs_f64();
        let throughput_rps = if duration_s > 0.0 {
            requests as f64 / duration_s
        } else {
            0.0
        };

        let client_cpu = match (cpu_start.unwrap_or_else(cpu::process_times), cpu_end) {
            (Ok(a), Ok(b)) => Cpu::new(
                b.user.saturating_sub(a.user),
                b.system.saturating_sub(a.system),
                requests,
            ),
            (Err(e), _) | (_, Err(e)) => {
                warnings.push(format!("client CPU time unavailable: {e}"));
                Cpu::default()
            }
        };

        let intervals = pending
            .into_iter()
            .filter(|(i, _)| *i >= 0)
            .filter_map(|(i, (c, u, _))| {
                let start = Duration::from_secs(i as u64);
                if c.is_empty() && start >= duration {
                    return None;
                }
                let length = duration.saturating_sub(start).min(SECOND);
                Some(Interval {
                    start,
                    length,
                    corrected: c,
                    uncorrected: u,
                })
            })
            .collect();

        if o.threads > threads {
            warnings.push(format!(
                "threads reduced from {} to {threads}: a thread needs at least one connection",
                o.threads
            ));
        }
        if errors.addr_unavailable > 0 {
            warnings.push(format!(
                "{} connects failed with EADDRNOTAVAIL: the client ran out of ephemeral ports \
                 (connections in TIME_WAIT); lower the connect rate, widen \
                 net.ipv4.ip_local_port_range or enable net.ipv4.tcp_tw_reuse",
                errors.addr_unavailable
            ));
        }
        if requests == 0 {
            warnings.push("no request completed in the measured window".to_owned());
        }

        let mut saturated = false;
        let (mut target_rps, mut achieved_rps) = (None, None);
        if let Some(rate) = o.rate {
            target_rps = Some(rate);
            achieved_rps = Some(throughput_rps);
            // The rule (documented in results/README.md): saturated when requests were not sent
            // on time: the achieved rate is below 95% of the target; or the generator itself sent
            // late (p99 send lag of requests that found a free connection above max(1 ms, 10% of
            // the mean inter-arrival gap): 1 ms is the poll timer's granularity, below it
            // lateness is noise); or over 1% of requests waited for a free connection.
            if !interrupted && throughput_rps < 0.95 * rate {
                saturated = true;
                warnings.push(format!(
                    "saturated: achieved {throughput_rps:.0} req/s, below 95% of the target {rate:.0} req/s"
                ));
            }
            let limit_ns = (1e6f64).max(0.1e9 / rate);
            let p99 = gen_lag.value_at_quantile(0.99) as f64;
            if !gen_lag.is_empty() && p99 > limit_ns {
                saturated = true;
                warnings.push(format!(
                    "saturated: p99 send lag of the generator is {:.0} µs (limit {:.0} µs): it could not keep the schedule",
                    p99 / 1e3,
                    limit_ns / 1e3
                ));
            }
            if arrivals > 0 && queued * 100 > arrivals {
                saturated = true;
                warnings.push(format!(
                    "saturated: {queued} of {arrivals} requests ({:.1}%) waited for a free connection (all {} × depth {} busy; \
                     raise -c or --depth); the wait is in the corrected latency and send_lag_us",
                    queued as f64 * 100.0 / arrivals as f64,
                    o.connections,
                    o.depth
                ));
            }
        }

        Ok(Report {
            schema: SCHEMA.to_owned(),
            tool_version: env!("CARGO_PKG_VERSION").to_owned(),
            host: host::host(),
            pinning: o.cpus.clone(),
            workload: o.clone(),
            requests,
            duration_s,
            throughput_rps,
            latency_us: LatencySummary::from_ns(&corrected),
            uncorrected_latency_us: open.then(|| LatencySummary::from_ns(&uncorrected)),
            send_lag_us: open.then(|| LatencySummary::from_ns(&lag)),
            target_rps,
            achieved_rps,
            connect_us: o
                .connect_per_request
                .then(|| LatencySummary::from_ns(&connect)),
            errors,
            client_cpu,
            saturated,
            interrupted,
            warnings,
            histogram: report::encode_histogram(&corrected),
            uncorrected_histogram: open.then(|| report::encode_histogram(&uncorrected)),
            intervals,
            measured_start: Some(wall_t0 + o.warmup),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn merge_is_exact() {
        let mut parts = Vec::new();
        let mut rng = Rng::new(3);
        for t in 0..4u64 {
            let mut h = new_hist();
            for _ in 0..(1000 + t * 17) {
                h.saturating_record(1 + rng.next_u64() % 10_000_000);
            }
            parts.push(h);
        }
        let mut all = new_hist();
        for h in &parts {
            merge(&mut all, h);
        }
        assert_eq!(all.len(), parts.iter().map(|h| h.len()).sum::<u64>());
        for v in [1u64, 1000, 123_456, 9_999_999] {
            let expect: u64 = parts.iter().map(|h| h.count_at(v)).sum();
            assert_eq!(all.count_at(v), expect);
        }
        assert_eq!(all.max(), parts.iter().map(|h| h.max()).max().unwrap());
    }

    /// Thread 1 cannot create its poller; the others can.
    /// A short two-thread run whose pollers come from `new_poll`, against a listener that never
    /// accepts (the kernel completes connects into the backlog: enough to start).
    fn run_two_threads(new_poll: NewPoll) -> Result<Report, LoadError> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut o = crate::Options::new(listener.local_addr().unwrap());
        o.threads = 2;
        o.connections = 2;
        o.duration = Some(Duration::from_millis(300));
        o.warmup = Duration::from_millis(100);
        run_with(
            &o.validate().unwrap(),
            &Stop::new(),
            &Hooks::default(),
            new_poll,
        )
    }

    fn thread_1_has_no_poller(id: usize) -> io::Result<Poll> {
        if id == 1 {
            Err(io::Error::other("injected poller failure"))
        } else {
            Poll::new()
        }
    }

    #[test]
    fn a_thread_that_cannot_start_fails_the_run() {
        let t = Instant::now();
        match run_two_threads(thread_1_has_no_poller) {
            Err(LoadError::Io(e)) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("load thread 1") && msg.contains("injected poller failure"),
                    "{msg}"
                );
            }
            Err(e) => panic!("wrong error: {e}"),
            Ok(r) => panic!(
                "a run missing a thread's share must fail, got a report of {} requests",
                r.requests
            ),
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    }

    fn thread_1_panics(id: usize) -> io::Result<Poll> {
        assert_ne!(id, 1, "injected panic in load thread 1");
        Poll::new()
    }

    #[test]
    fn a_thread_that_panics_fails_the_run_instead_of_hanging_it() {
        let t = Instant::now();
        match run_two_threads(thread_1_panics) {
            Err(LoadError::Io(e)) => assert!(e.to_string().contains("panicked"), "{e}"),
            Err(e) => panic!("wrong error: {e}"),
            Ok(r) => panic!(
                "a run with a panicked thread must fail, got {} requests",
                r.requests
            ),
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    }

    #[test]
    fn split_covers_total() {
        assert_eq!(
            (0..3).map(|i| split(10, 3, i)).collect::<Vec<_>>(),
            vec![4, 3, 3]
        );
    }
}
