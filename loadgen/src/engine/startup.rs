//! Start-up, both sides of it: a worker's up-front connects ([`connect_up_front`]), and the
//! coordinator's launch of the workers and its hand-shake with them ([`launch`]), ending with
//! the one timeline every worker follows ([`timeline`]).
//!
//! The rule this module keeps: everything a run needs is made before the timeline's start
//! (threads, pollers, connections, histograms, buffers, timers), and the start is fixed a moment
//! ahead of the moment every worker is told, so neither the work of starting nor a thread's
//! wake-up is inside the measured window or delays the first open-loop send. Deliberately not
//! here: the event loop ([`mod@super::worker`]) and what the run's figures become ([`super`]).

use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Poll, Token};

use super::Inject;
use super::conn::{Conn, State};
use super::errors::{Kind, kind_of};
use super::mode::{Carrier, Mode};
use super::msg::{Go, Msg, Outcome, PanicNotice, Plan, Tx};
use super::worker::{IDLE_BASE, worker};
use crate::workload::{Limit, Proto, Workload};
use crate::{LoadError, Stop};

/// How far ahead of telling the workers the timeline starts: long enough for a woken thread to
/// reach its event loop (tens of µs here, more on a loaded machine), short enough not to matter.
pub(super) const START_LEAD: Duration = Duration::from_millis(2);

pub(super) fn connect_blocking(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    s.set_nodelay(true)?;
    s.set_nonblocking(true)?;
    Ok(TcpStream::from_std(s))
}

/// What the up-front connects of one worker produced.
pub(super) struct Started {
    pub(super) conns: Vec<Conn>,
    pub(super) idle: Vec<Option<TcpStream>>,
    pub(super) connected: usize,
    pub(super) refused: usize,
    pub(super) first_error: Option<io::Error>,
}

/// `s` registered with `poll` under `Token(i)` for reading and writing: a worker's socket `i`
/// made before the run, a TCP connection or a UDP socket. Errors are the registration's.
pub(super) fn registered<S: mio::event::Source>(poll: &Poll, i: usize, mut s: S) -> io::Result<S> {
    poll.registry()
        .register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)?;
    Ok(s)
}

/// Open a worker's connections (and idle connections) before the run, registered with `poll`.
/// `connect` is [`connect_blocking`]; a parameter so a test can choose what each connect does.
pub(super) fn connect_up_front(
    poll: &Poll,
    plan: &Plan,
    w: &Workload,
    stop: &Stop,
    warnings: &mut Vec<String>,
    mut connect: impl FnMut(SocketAddr, Duration) -> io::Result<TcpStream>,
) -> Started {
    // Connect up front with blocking connects: simple, and a refused first connect tells us at
    // once that nothing listens, so the rest are not even tried. Any other error (a timeout,
    // EMFILE, unreachable...) says nothing certain about the rest: they are still tried, within
    // what is left of the shared timeout.
    let (mut connected, mut refused, mut first_error) = (0, 0, None::<io::Error>);
    let mut first_refused = false;
    let note = |e: io::Error, refused: &mut usize, first_error: &mut Option<io::Error>| {
        if kind_of(&e) == Kind::Refused {
            *refused += 1;
        }
        first_error.get_or_insert(e);
    };
    let o = w.options();
    let mode = Mode::of(w);
    // Room for a connection's requests at full depth (up to 64 KiB; larger messages allocate
    // when they are sent), so the first sends after the timeline's start allocate nothing.
    let slots = mode.slots(o.depth);
    let bytes = (slots * o.size_range.map_or(o.size, |r| r.max)).min(64 * 1024);
    let mut conns = Vec::with_capacity(plan.conns);
    let now = Instant::now();
    // All blocking connects together get one `timeout`: a server that stopped accepting (full
    // backlog, SYNs dropped) must not hold the start for `timeout` per connection. Whatever is
    // not connected by then is left to the event loop's non-blocking reconnects.
    let budget_end = now + o.timeout;
    // Time left for the next connect, or why it is not tried (for the idle warning).
    let budget = |first_refused: bool| {
        let left = budget_end.saturating_duration_since(Instant::now());
        if first_refused {
            Err("the first connect was refused")
        } else if stop.is_stopped() {
            Err("the run was stopped")
        } else if left.is_zero() {
            Err("the start-up connects used up --timeout (they share one)")
        } else {
            Ok(left)
        }
    };
    for i in 0..plan.conns {
        let mut c = Conn::new(State::Down { retry_at: now }, bytes, slots);
        if mode.carrier == Carrier::PerRequest {
            c.state = State::Free;
        } else if let Ok(left) = budget(first_refused) {
            match connect(o.addr, left).and_then(|s| registered(poll, i, s)) {
                Ok(s) => {
                    c.stream = Some(s);
                    c.state = State::Open;
                    connected += 1;
                }
                Err(e) => {
                    first_refused = i == 0 && kind_of(&e) == Kind::Refused;
                    note(e, &mut refused, &mut first_error);
                }
            }
        }
        conns.push(c);
    }
    if mode.carrier == Carrier::PerRequest && plan.conns > 0 {
        // One probe so a dead target fails fast here too; closed again at once. Not after a
        // stop: the run is over before it began, and nothing needs probing.
        if let Ok(left) = budget(false) {
            match connect(o.addr, left) {
                Ok(_) => connected += 1,
                Err(e) => {
                    first_refused = kind_of(&e) == Kind::Refused;
                    note(e, &mut refused, &mut first_error);
                }
            }
        }
    }
    let idle = match budget(first_refused) {
        Ok(_) => open_idle(poll, o.addr, plan.idle, o.timeout, stop, warnings),
        Err(why) => {
            if plan.idle > 0 {
                warnings.push(format!(
                    "{} idle connections were not opened: {why}",
                    plan.idle
                ));
            }
            Vec::new()
        }
    };
    Started {
        conns,
        idle,
        connected,
        refused,
        first_error,
    }
}

/// Idle connects in flight at once: enough that a SYN the server's full accept queue dropped
/// (retransmitted after 1 s, then 3 s) costs its own wait, not every later connect's; far
/// below the descriptor limits a sweep raises.
const IDLE_IN_FLIGHT: usize = 512;

/// The idle connects' budget grows by this much per connection asked for (see [`open_idle`]).
const IDLE_CONNECT_EACH: Duration = Duration::from_millis(1);

/// Open `n` idle connections to `addr` with non-blocking connects, up to [`IDLE_IN_FLIGHT`] at
/// once, within a budget of their own (after the active connections' shared one): `timeout`
/// plus [`IDLE_CONNECT_EACH`] per connection, so a slow accepter has time in proportion to what
/// is asked (10,000 idle connections: 5 s + 10 s with the default `--timeout`), and
/// register each with `poll` for READABLE under `IDLE_BASE + j`.
///
/// Why not one blocking connect after another: a server that accepts slowly (`poll` with
/// thousands of descriptors) lets its accept queue overflow, the kernel drops SYNs, and each
/// dropped SYN held the next connect for a second; 10,000 idle connections then did not fit
/// in 5 s (measured: `poll` held 9,209 of 10,050). In flight together, the retransmissions
/// overlap. Whatever is not connected when `timeout` runs out or the run stops is closed and
/// warned about; the result's `None` slots are the connections that failed.
fn open_idle(
    poll: &Poll,
    addr: SocketAddr,
    n: usize,
    timeout: Duration,
    stop: &Stop,
    warnings: &mut Vec<String>,
) -> Vec<Option<TcpStream>> {
    let mut idle: Vec<Option<TcpStream>> = Vec::with_capacity(n);
    // Whether slot j's connect is still in flight (registered with `pending_poll`).
    let mut pending: Vec<bool> = Vec::with_capacity(n);
    if n == 0 {
        return idle;
    }
    let mut pending_poll = match Poll::new() {
        Ok(p) => p,
        Err(e) => {
            warnings.push(format!("{n} idle connections were not opened: {e}"));
            return idle;
        }
    };
    let mut events = mio::Events::with_capacity(IDLE_IN_FLIGHT);
    let end = Instant::now() + timeout + IDLE_CONNECT_EACH * n as u32;
    let (mut in_flight, mut failed, mut first_failure) = (0usize, 0usize, None::<io::Error>);
    let mut fail = |e: io::Error, failed: &mut usize| {
        *failed += 1;
        first_failure.get_or_insert(e);
    };
    let mut why_short = None;
    while idle.len() < n || in_flight > 0 {
        // Start connects up to the window.
        while idle.len() < n && in_flight < IDLE_IN_FLIGHT && why_short.is_none() {
            let j = idle.len();
            match TcpStream::connect(addr).and_then(|mut s| {
                pending_poll
                    .registry()
                    .register(&mut s, Token(j), Interest::WRITABLE)?;
                Ok(s)
            }) {
                Ok(s) => {
                    idle.push(Some(s));
                    pending.push(true);
                    in_flight += 1;
                }
                Err(e) => {
                    // A connect that fails before it is even in flight (out of descriptors
                    // or local ports, nothing listens): the rest would fail the same way.
                    idle.push(None);
                    pending.push(false);
                    fail(e, &mut failed);
                    why_short = Some("a connect failed at once (see the failure below)");
                }
            }
        }
        if why_short.is_some() && in_flight == 0 {
            break;
        }
        let left = end.saturating_duration_since(Instant::now());
        if stop.is_stopped() || left.is_zero() {
            why_short.get_or_insert(if stop.is_stopped() {
                "the run was stopped"
            } else {
                "their connects used up their time (--timeout + 1 ms each)"
            });
            break;
        }
        if let Err(e) = pending_poll.poll(&mut events, Some(left.min(Duration::from_millis(100))))
            && e.kind() != io::ErrorKind::Interrupted
        {
            why_short.get_or_insert("waiting for their connects failed");
            fail(e, &mut failed);
            break;
        }
        for ev in events.iter() {
            let j = ev.token().0;
            if !pending[j] {
                continue;
            }
            let Some(s) = idle[j].as_mut() else { continue };
            // Writable: connected, or failed (the error is pending on the socket).
            let outcome = match s.take_error() {
                Ok(Some(e)) | Err(e) => Err(e),
                Ok(None) => match s.peer_addr() {
                    Ok(_) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => continue,
                    Err(e) => Err(e),
                },
            };
            in_flight -= 1;
            pending[j] = false;
            let mut s = idle[j].take().expect("checked above");
            let _ = pending_poll.registry().deregister(&mut s);
            match outcome.and_then(|()| {
                poll.registry()
                    .register(&mut s, Token(IDLE_BASE + j), Interest::READABLE)
            }) {
                Ok(()) => idle[j] = Some(s),
                Err(e) => fail(e, &mut failed),
            }
        }
    }
    // Connects still in flight at the end are given up.
    let mut given_up = 0;
    for (slot, _) in idle.iter_mut().zip(&pending).filter(|(_, p)| **p) {
        if let Some(mut s) = slot.take() {
            let _ = pending_poll.registry().deregister(&mut s);
            given_up += 1;
        }
    }
    let not_started = n - idle.len();
    idle.resize_with(n, || None);
    let short = given_up + not_started;
    if short > 0 {
        warnings.push(format!(
            "{short} idle connections were not opened: {}",
            why_short.unwrap_or("the run was stopped")
        ));
    }
    if failed > 0 {
        let e = first_failure.map_or_else(String::new, |e| format!(" (first: {e})"));
        warnings.push(format!("{failed} idle connections failed to open{e}"));
    }
    idle
}

/// Workers that reported ready, waiting for their timeline.
pub(super) struct Launched<'scope> {
    gos: Vec<mpsc::Sender<Go>>,
    pub(super) handles: Vec<ScopedJoinHandle<'scope, Option<Outcome>>>,
}

/// Part `i` of `total` split over `parts` as evenly as possible (the first ones get the rest).
pub(super) fn split(total: u64, parts: usize, i: usize) -> u64 {
    let parts = parts as u64;
    total / parts + u64::from((i as u64) < total % parts)
}

/// Worker `id`'s share of the run, out of `threads`.
fn plan(w: &Workload, threads: usize, id: usize) -> Plan {
    let o = w.options();
    let conns = split(o.connections as u64, threads, id) as usize;
    Plan {
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
    }
}

/// Spawn one worker per thread and wait until each has reported ready. Fails if a thread cannot
/// be spawned, cannot set itself up or panics, or if nothing connected because nothing listens
/// (a stop during start-up is not a failure: the run goes on to an empty, interrupted report).
pub(super) fn launch<'scope, 'env>(
    s: &'scope Scope<'scope, 'env>,
    w: &'env Workload,
    stop: &'env Stop,
    tx: Tx,
    rx: &mpsc::Receiver<(usize, Msg)>,
    inject: Inject,
) -> Result<Launched<'scope>, LoadError> {
    let threads = w.effective_threads();
    let mut gos = Vec::with_capacity(threads);
    let mut handles = Vec::with_capacity(threads);
    for id in 0..threads {
        let plan = plan(w, threads, id);
        let (gtx, grx) = mpsc::channel::<Go>();
        let tx = tx.clone();
        let notice = PanicNotice { id, tx: tx.clone() };
        let spawned = std::thread::Builder::new()
            .name(format!("loadgen-{id}"))
            .spawn_scoped(s, move || {
                let _notice = notice;
                match w.options().proto {
                    Proto::Tcp => worker(w, plan, stop, tx, grx, inject),
                    Proto::Udp => super::udp::worker(w, plan, stop, tx, grx, inject),
                }
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
            Ok((_, Msg::SetupFailed(e))) => return Err(LoadError::Io(e)),
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
    let addr = w.options().addr;
    if connected == 0 && !stop.is_stopped() {
        return Err(match first_error {
            Some(e) if refused == 0 || kind_of(&e) != Kind::Refused => {
                LoadError::Connect { addr, source: e }
            }
            _ => LoadError::Refused { addr },
        });
    }
    Ok(Launched { gos, handles })
}

/// The timeline: load starts [`START_LEAD`] from now, warm-up after it, then the window.
pub(super) fn timeline(w: &Workload) -> Go {
    let o = w.options();
    let t0 = Instant::now() + START_LEAD;
    let warm_end = t0 + o.warmup;
    let end = match w.limit() {
        Limit::Duration(d) => Some(warm_end + d),
        Limit::Requests(_) => None,
    };
    Go { t0, warm_end, end }
}

impl Launched<'_> {
    /// Tell every worker the timeline.
    pub(super) fn go(&self, go: Go) {
        for g in &self.gos {
            let _ = g.send(go);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Options;

    #[test]
    fn split_covers_total() {
        assert_eq!(
            (0..3).map(|i| split(10, 3, i)).collect::<Vec<_>>(),
            vec![4, 3, 3]
        );
    }

    fn plan(conns: usize, idle: usize) -> Plan {
        Plan {
            id: 0,
            conns,
            idle,
            share: None,
            rate: None,
            phase: Duration::ZERO,
            cpu: None,
        }
    }

    /// Run the start-up connects with the first connect failing with `first`, the rest real
    /// connects to a listener; return what started, the warnings and how many connects ran.
    fn start_with_first_failing(first: io::ErrorKind) -> (Started, Vec<String>, usize) {
        // Never accepted: the kernel completes the connects into the backlog.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut o = Options::new(listener.local_addr().unwrap());
        o.connections = 3;
        o.idle = 2;
        let w = o.validate().unwrap();
        let poll = Poll::new().unwrap();
        let mut warnings = Vec::new();
        let mut calls = 0;
        let started = connect_up_front(
            &poll,
            &plan(3, 2),
            &w,
            &Stop::new(),
            &mut warnings,
            |addr, left| {
                calls += 1;
                if calls == 1 {
                    Err(first.into())
                } else {
                    connect_blocking(addr, left)
                }
            },
        );
        (started, warnings, calls)
    }

    #[test]
    fn a_refused_first_connect_skips_the_rest_and_the_warning_says_why() {
        let (s, warnings, calls) = start_with_first_failing(io::ErrorKind::ConnectionRefused);
        assert_eq!(calls, 1, "nothing listens: the rest are not tried");
        assert_eq!((s.connected, s.refused), (0, 1));
        assert!(
            warnings
                .iter()
                .any(|w| w == "2 idle connections were not opened: the first connect was refused"),
            "{warnings:?}"
        );
    }

    #[test]
    fn a_stop_skips_every_connect_and_the_warning_says_so() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let w = Options::new(listener.local_addr().unwrap())
            .validate()
            .unwrap();
        let (poll, stop) = (Poll::new().unwrap(), Stop::new());
        stop.stop();
        let mut warnings = Vec::new();
        let s = connect_up_front(&poll, &plan(2, 1), &w, &stop, &mut warnings, |_, _| {
            panic!("no connect after a stop")
        });
        assert_eq!((s.connected, s.refused), (0, 0));
        assert_eq!(
            warnings,
            ["1 idle connections were not opened: the run was stopped"]
        );
    }

    #[test]
    fn another_first_connect_error_does_not_skip_the_rest() {
        // Not "nothing listens": one connect failing for another reason says nothing about the
        // others, which still get what is left of the shared timeout.
        let (s, warnings, calls) = start_with_first_failing(io::ErrorKind::PermissionDenied);
        assert_eq!(
            calls, 3,
            "3 connections (the 2 idle ones connect in flight together)"
        );
        assert_eq!((s.connected, s.refused), (2, 0));
        assert_eq!(s.idle.iter().filter(|c| c.is_some()).count(), 2);
        assert!(s.first_error.is_some());
        assert!(
            !warnings.iter().any(|w| w.contains("not opened")),
            "{warnings:?}"
        );
    }

    #[test]
    fn idle_connections_open_in_flight_together_and_register_for_reading() {
        // Never accepted: the kernel completes the connects into the backlog (std's 128).
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let poll = Poll::new().unwrap();
        let mut warnings = Vec::new();
        let idle = open_idle(
            &poll,
            listener.local_addr().unwrap(),
            100,
            Duration::from_secs(5),
            &Stop::new(),
            &mut warnings,
        );
        assert_eq!(idle.len(), 100);
        assert!(idle.iter().all(|s| s.is_some()), "{warnings:?}");
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    /// A listener whose accept queue is full drops SYNs (Linux): the connects still in flight
    /// when the budget ends are given up and counted in one warning, and the call returns
    /// within its budget rather than a retransmission's.
    #[cfg(target_os = "linux")]
    #[test]
    fn idle_connects_past_their_budget_are_given_up_and_warned_about() {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        s.listen(1).unwrap();
        let addr = s.local_addr().unwrap().as_socket().unwrap();
        let poll = Poll::new().unwrap();
        let mut warnings = Vec::new();
        let t0 = Instant::now();
        let idle = open_idle(
            &poll,
            addr,
            20,
            Duration::from_millis(200),
            &Stop::new(),
            &mut warnings,
        );
        // Budget: 200 ms + 20 × 1 ms; 5× slack for a loaded machine.
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        let opened = idle.iter().filter(|s| s.is_some()).count();
        assert!(opened < 20, "a backlog of 1 cannot take 20");
        let short = format!(
            "{} idle connections were not opened: their connects used up their time (--timeout + 1 ms each)",
            20 - opened
        );
        assert!(warnings.contains(&short), "{warnings:?}");
    }
}
