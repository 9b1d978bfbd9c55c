//! One worker thread: its connections and the `mio` event loop that drives them (closed loop,
//! open loop, connect per request), with request timeouts and reconnects with backoff.
//!
//! Timestamp rules (the contract): in closed loop a request's latency starts immediately before
//! the `write` call that sends its first byte (payloads are generated before the timestamp; a
//! request queued behind a partial write is stamped by the later write that actually sends its
//! first byte); in open loop it starts at its intended send time, and the actual send stamp
//! feeds the uncorrected histogram and the send lag. It ends when the `read` that completes the
//! response returns. Waiting is by sleeping in `poll`, so figures include the OS wake-up cost of
//! a sleeping client (≈ 40 µs per round trip on the reference VM), not a spinning one's. Open
//! loop wakes for each intended send with a precise timer ([`crate::timer`]); where there is
//! none it spins through the last millisecond, because the poll timeout has 1 ms granularity and
//! a late send would otherwise be counted as the server's latency.
//!
//! This module deliberately does not merge across threads or build the report (the coordinator
//! does), and keeps no request bytes of its own: they live in each connection's [`Pipe`].

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::errors::{Kind, count, kind_of};
use super::intervals::Intervals;
use super::pipe::{Pipe, Req};
use super::record;
use super::schedule::Schedule;
use super::stall::Stall;
use super::{Go, Msg, NewPoll, Outcome, Plan, new_hist};
use crate::Stop;
use crate::report::Errors;
use crate::rng::Rng;
use crate::timer::Timer;
use crate::workload::{Options, Workload};

/// Idle connections get tokens from here up, so one `usize` tells the two kinds apart.
const IDLE_BASE: usize = 1 << 30;
/// The open-loop send timer's token, just below the idle range.
const TIMER: Token = Token(IDLE_BASE - 1);
/// How often a worker scans its connections for timeouts and due reconnects.
const TICK: Duration = Duration::from_millis(10);
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Whether the poller reports new data on a socket that was not read until `WouldBlock`. It
/// does with epoll (`EPOLLET` "can generate multiple events upon receipt of multiple chunks of
/// data", epoll(7)) and kqueue (`EV_CLEAR` fires again on new data); mio's Windows backend
/// re-arms a socket only after an operation returned `WouldBlock`, so there the engine always
/// reads until it would block. Where it holds, a connection whose every sent byte has come back
/// is not read again until its next event: no `read` → `EAGAIN` per request, a third of a closed
/// loop's system calls. Not when the event reports the peer's close: that close can sit behind
/// the last echo and raises no further event, so then the connection is read to its end.
const EVENT_ON_EVERY_ARRIVAL: bool = cfg!(any(
    target_os = "linux",
    target_os = "android",
    target_vendor = "apple",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
));

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Disconnected; reconnect (or, connect per request, become free) at `retry_at`.
    Down {
        retry_at: Instant,
    },
    Connecting {
        since: Instant,
    },
    Open,
    /// Connect per request only: no socket, ready for the next request.
    Free,
}

struct Conn {
    stream: Option<TcpStream>,
    state: State,
    /// Bumped on every failure so stale free-slot entries are recognised.
    epoch: u32,
    backoff: Duration,
    pipe: Pipe,
}

struct Pending {
    intended: Instant,
    measured: bool,
    queued: bool,
}

fn connect_blocking(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    s.set_nodelay(true)?;
    s.set_nonblocking(true)?;
    Ok(TcpStream::from_std(s))
}

/// What the up-front connects of one worker produced.
struct Started {
    conns: Vec<Conn>,
    idle: Vec<Option<TcpStream>>,
    connected: usize,
    refused: usize,
    first_error: Option<io::Error>,
}

/// Open a worker's connections (and idle connections) before the run, registered with `poll`.
/// `connect` is [`connect_blocking`]; a parameter so a test can choose what each connect does.
fn connect_up_front(
    poll: &Poll,
    plan: &Plan,
    o: &Options,
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
        let mut c = Conn {
            stream: None,
            state: State::Down { retry_at: now },
            epoch: 0,
            backoff: BACKOFF_MIN,
            pipe: Pipe::default(),
        };
        if o.connect_per_request {
            c.state = State::Free;
        } else if let Ok(left) = budget(first_refused) {
            match connect(o.addr, left).and_then(|mut s| {
                poll.registry().register(
                    &mut s,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                Ok(s)
            }) {
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
    if o.connect_per_request && plan.conns > 0 {
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
    let mut idle = Vec::with_capacity(plan.idle);
    for j in 0..plan.idle {
        let left = match budget(first_refused) {
            Ok(left) => left,
            Err(why) => {
                warnings.push(format!(
                    "{} idle connections were not opened: {why}",
                    plan.idle - j
                ));
                break;
            }
        };
        // Registered for READABLE only: an idle connection is never written, so the only
        // events it can produce are a close or an error from the server.
        match connect(o.addr, left).and_then(|mut s| {
            poll.registry()
                .register(&mut s, Token(IDLE_BASE + j), Interest::READABLE)?;
            Ok(s)
        }) {
            Ok(s) => idle.push(Some(s)),
            Err(e) => {
                warnings.push(format!("an idle connection failed to open: {e}"));
                idle.push(None);
            }
        }
    }
    Started {
        conns,
        idle,
        connected,
        refused,
        first_error,
    }
}

struct Worker<'a> {
    w: &'a Workload,
    addr: SocketAddr,
    depth: usize,
    timeout: Duration,
    open: bool,
    crr: bool,
    verify: bool,
    poll: Poll,
    conns: Vec<Conn>,
    idle: Vec<Option<TcpStream>>,
    rng: Rng,
    rbuf: Vec<u8>,
    free: VecDeque<(usize, u32)>,
    queue: VecDeque<Pending>,
    go: Go,
    share: Option<u64>,
    /// Measured requests handed out (and not lost to a failed connection): the `requests` budget.
    issued: u64,
    /// The clock of the request-count give-up rule.
    stall: Stall,
    out: Outcome,
    intervals: Intervals,
    tx: mpsc::Sender<(usize, Msg)>,
    id: usize,
}

pub(super) fn worker(
    w: &Workload,
    plan: Plan,
    stop: &Stop,
    tx: mpsc::Sender<(usize, Msg)>,
    go: mpsc::Receiver<Go>,
    new_poll: NewPoll,
) -> Option<Outcome> {
    let o = w.options();
    let mut warnings = Vec::new();
    if let Some(cpu) = plan.cpu
        && !core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
    {
        warnings.push(format!(
            "could not pin a load thread to CPU {cpu}; running unpinned"
        ));
    }
    let ready = |connected, refused, error| {
        let _ = tx.send((
            plan.id,
            Msg::Ready {
                connected,
                refused,
                error,
            },
        ));
    };
    let poll = match new_poll(plan.id) {
        Ok(p) => p,
        Err(e) => {
            // Not a connect error (`Ready`): the coordinator fails the whole run on this.
            let e = io::Error::new(
                e.kind(),
                format!("load thread {}: cannot create its poller: {e}", plan.id),
            );
            let _ = tx.send((plan.id, Msg::SetupFailed(e)));
            return None;
        }
    };

    let Started {
        conns,
        idle,
        connected,
        refused,
        first_error,
    } = connect_up_front(&poll, &plan, o, stop, &mut warnings, connect_blocking);
    ready(connected, refused, first_error);
    let go = go.recv().ok()?;

    let seed = o.seed ^ (plan.id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut schedule = plan
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Schedule::new(go.t0, r, plan.phase, o.arrival, seed ^ 0x5C4E_D01E));
    let mut timer = if schedule.is_some() {
        Timer::new(poll.registry(), TIMER)
    } else {
        None
    };
    let mut wk = Worker {
        w,
        addr: o.addr,
        depth: o.depth,
        timeout: o.timeout,
        open: w.is_open_loop(),
        crr: o.connect_per_request,
        verify: !o.no_verify,
        poll,
        conns,
        idle,
        rng: Rng::new(seed),
        rbuf: vec![0; 64 * 1024],
        free: VecDeque::new(),
        queue: VecDeque::new(),
        go,
        share: plan.share,
        issued: 0,
        stall: Stall::default(),
        out: Outcome {
            corrected: new_hist(),
            uncorrected: new_hist(),
            lag: new_hist(),
            gen_lag: new_hist(),
            connect: new_hist(),
            requests: 0,
            errors: Errors::default(),
            last_completion: None,
            stopped_at: go.t0,
            interrupted: false,
            arrivals: 0,
            queued: 0,
            warnings,
        },
        intervals: Intervals::new(go.warm_end, o.warmup, w.is_open_loop(), tx.clone(), plan.id),
        tx,
        id: plan.id,
    };

    let now = Instant::now();
    for i in 0..wk.conns.len() {
        if matches!(wk.conns[i].state, State::Open | State::Free) {
            wk.became_ready(i, now);
        }
    }

    let mut events = Events::with_capacity(1024);
    let mut next_tick = now;
    loop {
        let now = Instant::now();
        if stop.is_stopped() {
            wk.out.interrupted = true;
            break;
        }
        if go.end.is_some_and(|e| now >= e) || wk.share.is_some_and(|s| wk.out.requests >= s) {
            break;
        }
        // A request-count run has no deadline; it must still end if the server is gone for
        // good. Three timeouts of wanting an answer without a single completion is "gone", not
        // "slow"; idle time between open-loop sends is neither (see `stall`).
        if wk.share.is_some()
            && now >= go.warm_end
            && wk.stall.stalled_for(now, go.warm_end) > 3 * wk.timeout
        {
            wk.out.warnings.push(format!(
                "gave up: requests were outstanding or failing for {:?} (3 × --timeout) \
                 and none completed",
                3 * wk.timeout
            ));
            break;
        }
        wk.intervals.roll(now);
        if now >= next_tick {
            wk.maintain(now);
            next_tick = now + TICK;
        }
        if let Some(s) = schedule.as_mut() {
            while s.next_send() <= now {
                let t = s.next_send();
                s.advance();
                wk.arrival(t, now);
            }
        }
        let mut wake = next_tick.min(wk.intervals.next_boundary());
        if let Some(e) = go.end {
            wake = wake.min(e);
        }
        let mut timeout = wake.saturating_duration_since(now);
        let mut spinning = false;
        if let Some(s) = &schedule {
            let d = s.next_send().saturating_duration_since(now);
            if d < timeout && !timer.as_mut().is_some_and(|t| t.arm(s.next_send(), d)) {
                // No precise timer: sleep whole milliseconds only (poll rounds up), then spin.
                timeout = Duration::from_millis(d.as_millis() as u64);
                spinning = timeout.is_zero();
            }
        }
        if let Err(e) = wk.poll.poll(&mut events, Some(timeout)) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            wk.out
                .warnings
                .push(format!("poll failed, the run ended early: {e}"));
            break;
        }
        if spinning && events.is_empty() {
            // Spinning for an open-loop send: let a co-located server thread run meanwhile.
            std::thread::yield_now();
        }
        for ev in events.iter() {
            let t = ev.token().0;
            if ev.token() == TIMER {
                continue;
            }
            if t >= IDLE_BASE {
                wk.idle_event(t - IDLE_BASE);
                continue;
            }
            match wk.conns.get(t).map(|c| c.state) {
                Some(State::Connecting { .. }) => wk.check_connect(t),
                Some(State::Open) => {
                    let peer_closed = ev.is_read_closed() || ev.is_error();
                    if ev.is_readable() || peer_closed {
                        wk.read(t, peer_closed);
                    }
                    if ev.is_writable()
                        && wk.conns[t].state == State::Open
                        && wk.conns[t].pipe.unsent()
                    {
                        wk.flush(t);
                    }
                }
                _ => {}
            }
        }
    }
    let now = Instant::now();
    wk.out.stopped_at = now;
    let last = match go.end {
        Some(e) => now.min(e),
        None => now,
    };
    wk.intervals.finish(last);
    let _ = wk.tx.send((wk.id, Msg::Done));
    let Worker { out, .. } = wk;
    Some(out)
}

impl Worker<'_> {
    fn measured(&self, t: Instant) -> bool {
        t >= self.go.warm_end
    }

    fn budget_ok(&self, measured: bool) -> bool {
        !measured || self.share.is_none_or(|s| self.issued < s)
    }

    fn fail(&mut self, i: usize, kind: Kind, now: Instant) {
        let c = &mut self.conns[i];
        if let Some(mut s) = c.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        self.issued -= c.pipe.measured() as u64;
        // Anything but an open connection failing is a connect that failed.
        let connecting = c.state != State::Open;
        self.stall.failed(now, c.pipe.requests(), connecting);
        c.pipe.clear();
        c.epoch = c.epoch.wrapping_add(1);
        c.state = State::Down {
            retry_at: now + c.backoff,
        };
        c.backoff = (c.backoff * 2).min(BACKOFF_MAX);
        self.count_error(kind, now);
    }

    /// An error at `now`: in the totals and the live interval, if the window is open.
    fn count_error(&mut self, kind: Kind, now: Instant) {
        if self.measured(now) {
            count(&mut self.out.errors, kind);
            self.intervals.error(now);
        }
    }

    /// A connection can take requests (just connected, or free for connect per request).
    fn became_ready(&mut self, i: usize, now: Instant) {
        if self.open {
            let slots = if self.crr { 1 } else { self.depth };
            for _ in 0..slots {
                self.slot_free(i, now);
            }
        } else {
            self.fill(i, now);
        }
    }

    /// Closed loop: top the connection up to `depth` requests in flight, then send.
    fn fill(&mut self, i: usize, now: Instant) {
        let measured = self.measured(now);
        let mut added = false;
        while self.conns[i].pipe.requests() < self.depth && self.budget_ok(measured) {
            if measured {
                self.issued += 1;
            }
            self.stall.issued(now);
            self.enqueue(i, None, measured, false, now);
            added = true;
        }
        if added {
            self.start_send(i);
        }
    }

    /// Open loop: one slot on connection `i` is free; give it the oldest waiting request.
    fn slot_free(&mut self, i: usize, now: Instant) {
        if let Some(p) = self.queue.pop_front() {
            self.enqueue(i, Some(p.intended), p.measured, p.queued, now);
            self.start_send(i);
        } else {
            self.free.push_back((i, self.conns[i].epoch));
        }
    }

    /// Open loop: a request's intended time has come.
    fn arrival(&mut self, intended: Instant, now: Instant) {
        let measured = self.measured(intended);
        if !self.budget_ok(measured) {
            return;
        }
        if measured {
            self.issued += 1;
            self.out.arrivals += 1;
        }
        self.stall.issued(now);
        while let Some((i, epoch)) = self.free.pop_front() {
            let c = &self.conns[i];
            let usable = c.epoch == epoch
                && if self.crr {
                    c.state == State::Free
                } else {
                    c.state == State::Open && c.pipe.requests() < self.depth
                };
            if usable {
                self.enqueue(i, Some(intended), measured, false, now);
                self.start_send(i);
                return;
            }
        }
        if measured {
            self.out.queued += 1;
        }
        self.queue.push_back(Pending {
            intended,
            measured,
            queued: true,
        });
    }

    /// Generate one request's payload into the connection's FIFO (before any timestamp).
    fn enqueue(
        &mut self,
        i: usize,
        intended: Option<Instant>,
        measured: bool,
        queued: bool,
        now: Instant,
    ) {
        let o = self.w.options();
        let len = match o.size_range {
            Some(r) => self.rng.range(r.min, r.max),
            None => o.size,
        };
        let payload = self.conns[i]
            .pipe
            .push(len, intended, now, measured, queued);
        self.rng.fill(payload);
    }

    fn start_send(&mut self, i: usize) {
        if self.crr {
            self.connect_for_request(i)
        } else {
            self.flush(i)
        }
    }

    /// Write what is queued; stop at `WouldBlock` and continue on the next WRITABLE event.
    fn flush(&mut self, i: usize) {
        loop {
            let c = &mut self.conns[i];
            let Some(s) = c.stream.as_mut() else { return };
            let p = &mut c.pipe;
            if !p.unsent() {
                return;
            }
            let buf = p.unsent_bytes();
            // The contract: timestamp immediately before the write, nothing in between.
            let t = Instant::now();
            match s.write(buf) {
                Ok(0) => return self.fail(i, Kind::Other, t),
                Ok(n) => p.wrote(n, t),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(i, kind_of(&e), t),
            }
        }
    }

    /// Connect per request: the latency starts right before `connect`.
    fn connect_for_request(&mut self, i: usize) {
        let t = Instant::now();
        if self.start_connect(i, t) {
            self.conns[i].pipe.stamp_all(t);
        }
    }

    /// Starts a nonblocking connect for connection `i` and registers it; a failure is counted
    /// against `i` at `t`. Returns whether the connect is under way.
    fn start_connect(&mut self, i: usize, t: Instant) -> bool {
        let result = TcpStream::connect(self.addr).and_then(|mut s| {
            let interest = Interest::READABLE | Interest::WRITABLE;
            self.poll.registry().register(&mut s, Token(i), interest)?;
            Ok(s)
        });
        match result {
            Ok(s) => {
                let c = &mut self.conns[i];
                c.stream = Some(s);
                c.state = State::Connecting { since: t };
                true
            }
            Err(e) => {
                self.fail(i, kind_of(&e), t);
                false
            }
        }
    }

    /// A WRITABLE (or error) event on a connecting socket: find out how the connect went.
    fn check_connect(&mut self, i: usize) {
        let now = Instant::now();
        let State::Connecting { since } = self.conns[i].state else {
            return;
        };
        let Some(s) = self.conns[i].stream.as_ref() else {
            return;
        };
        match s.take_error() {
            Ok(Some(e)) | Err(e) => return self.fail(i, kind_of(&e), now),
            Ok(None) => {}
        }
        match s.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
            Err(e) => return self.fail(i, kind_of(&e), now),
        }
        let _ = s.set_nodelay(true);
        self.conns[i].state = State::Open;
        if self.crr {
            if self.conns[i].pipe.oldest().is_some_and(|r| r.measured) {
                self.out.connect.saturating_record(ns(now - since));
            }
            self.flush(i);
        } else {
            self.became_ready(i, now);
        }
    }

    /// Read what arrived on connection `i`. `peer_closed`: the readiness event reported the
    /// peer's close or an error. Then the last echo and the close may have come together, so the
    /// connection is read to its end (no caught-up shortcut), and no new request is handed to it
    /// before that: none could be answered on it, and sending one would lose it to the close
    /// instead of reconnecting first.
    fn read(&mut self, i: usize, peer_closed: bool) {
        // Completions held back while a reported close is still unread, and when the last was.
        let (mut held, mut held_at) = (0, None);
        loop {
            let Some(s) = self.conns[i].stream.as_mut() else {
                return;
            };
            let r = s.read(&mut self.rbuf);
            // The contract: the response ends when the read that completes it returns.
            let t_end = Instant::now();
            let n = match r {
                Ok(0) => return self.fail(i, Kind::Other, t_end),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.fail(i, kind_of(&e), t_end),
            };
            if !self.conns[i].pipe.take_echo(&self.rbuf[..n], self.verify) {
                return self.fail(i, Kind::Mismatch, t_end);
            }
            // Nothing in flight any more and no close reported: no byte can arrive before the
            // next send, whose echo brings its own event (see EVENT_ON_EVERY_ARRIVAL).
            let caught_up =
                EVENT_ON_EVERY_ARRIVAL && !peer_closed && self.conns[i].pipe.caught_up();
            let mut done = 0;
            while let Some(req) = self.conns[i].pipe.pop_completed() {
                self.stall.completed(t_end);
                self.record(&req, t_end);
                done += 1;
            }
            if done > 0 {
                self.conns[i].backoff = BACKOFF_MIN;
                if self.crr {
                    // The connection's one request is answered: it closes anyway.
                    self.close_clean(i);
                    return self.hand_out(i, done, t_end);
                }
                if peer_closed {
                    held += done;
                    held_at = Some(t_end);
                } else {
                    self.hand_out(i, done, t_end);
                    if self.conns[i].state != State::Open {
                        return;
                    }
                }
            }
            if caught_up {
                return;
            }
        }
        // Read to `WouldBlock` without meeting the reported close: the connection is alive after
        // all, and what was held back must go out or it would sit idle.
        if let Some(t) = held_at {
            self.hand_out(i, held, t);
        }
    }

    /// `done` requests on connection `i` completed at `t`: give it the next ones.
    fn hand_out(&mut self, i: usize, done: usize, t: Instant) {
        if self.open {
            for _ in 0..done {
                self.slot_free(i, t);
            }
        } else {
            self.fill(i, t);
        }
    }

    /// Connect per request: the response is in, close normally (no SO_LINGER games: the
    /// TIME_WAIT this leaves is part of what connect-per-request measures).
    fn close_clean(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if let Some(mut s) = c.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        c.pipe.clear();
        c.state = State::Free;
    }

    fn record(&mut self, req: &Req, t_end: Instant) {
        let sent = req.sent.unwrap_or(t_end);
        let start = req.intended.unwrap_or(sent);
        let latency = ns(t_end.saturating_duration_since(start));
        if !req.measured {
            // Warm-up completions show in progress only, and only before the window opens.
            if t_end < self.go.warm_end {
                self.intervals.record(t_end, latency, None);
            }
            return;
        }
        let mut uncorrected = None;
        if let Some(intended) = req.intended {
            let u = ns(t_end.saturating_duration_since(sent));
            let lag = ns(sent.saturating_duration_since(intended));
            self.out.uncorrected.saturating_record(u);
            self.out.lag.saturating_record(lag);
            if !req.queued {
                self.out.gen_lag.saturating_record(lag);
            }
            uncorrected = Some(u);
        }
        record::completion(
            &mut self.out.corrected,
            &mut self.intervals,
            t_end,
            latency,
            uncorrected,
        );
        self.out.requests += 1;
        self.out.last_completion = Some(t_end);
    }

    /// Timeouts, connect timeouts and due reconnects; every `TICK`.
    fn maintain(&mut self, now: Instant) {
        for i in 0..self.conns.len() {
            let c = &self.conns[i];
            match c.state {
                State::Down { retry_at } if retry_at <= now => self.reconnect(i, now),
                State::Connecting { since }
                    if now.saturating_duration_since(since) > self.timeout =>
                {
                    self.fail(i, Kind::Timeout, now)
                }
                State::Open
                    if c.pipe.oldest().is_some_and(|r| {
                        now.saturating_duration_since(r.dispatched) > self.timeout
                    }) =>
                {
                    self.fail(i, Kind::Timeout, now)
                }
                _ => {}
            }
        }
    }

    fn reconnect(&mut self, i: usize, now: Instant) {
        if self.crr {
            self.conns[i].state = State::Free;
            return self.became_ready(i, now);
        }
        self.start_connect(i, now);
    }

    fn idle_event(&mut self, j: usize) {
        let Some(Some(s)) = self.idle.get_mut(j) else {
            return;
        };
        let kind = loop {
            match s.read(&mut self.rbuf) {
                Ok(0) => break Kind::Other,
                // The server spoke on a silent connection: ignore it, nothing was asked.
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break kind_of(&e),
            }
        };
        if let Some(mut s) = self.idle[j].take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        self.count_error(kind, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let poll = Poll::new().unwrap();
        let mut warnings = Vec::new();
        let mut calls = 0;
        let started = connect_up_front(
            &poll,
            &plan(3, 2),
            &o,
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
        let o = Options::new(listener.local_addr().unwrap());
        let (poll, stop) = (Poll::new().unwrap(), Stop::new());
        stop.stop();
        let mut warnings = Vec::new();
        let s = connect_up_front(&poll, &plan(2, 1), &o, &stop, &mut warnings, |_, _| {
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
        assert_eq!(calls, 5, "3 connections and 2 idle ones");
        assert_eq!((s.connected, s.refused), (2, 0));
        assert_eq!(s.idle.iter().filter(|c| c.is_some()).count(), 2);
        assert!(s.first_error.is_some());
        assert!(
            !warnings.iter().any(|w| w.contains("not opened")),
            "{warnings:?}"
        );
    }
}
