//! One worker thread: its connections and the `mio` event loop that drives them in the run's
//! [`Mode`] (closed or open loop; persistent connections or one per request), with request
//! timeouts and reconnects with backoff.
//!
//! A worker has three stages. [`Prepared::new`] does all the start-up work (pinning, the
//! poller, the up-front connects, every histogram and buffer, the open-loop timer) and reports
//! ready; [`Prepared::start`] fits it to the timeline the coordinator fixed, allocating nothing;
//! [`Worker::run`] is the event loop, one bounded turn at a time, until the deadline, the request
//! count, a give-up or a stop.
//!
//! Timestamp rules (the contract): in closed loop a request's latency starts immediately before
//! the `write` call that sends its first byte (payloads are generated before the timestamp; a
//! request queued behind a partial write is stamped by the later write that actually sends its
//! first byte); in open loop it starts at its intended send time, and the actual send stamp
//! feeds the uncorrected histogram and the send lag. It ends when the `read` that completes the
//! response returns. Waiting is by sleeping in `poll`, so figures include the OS wake-up cost of
//! a sleeping client (≈ 40 µs per round trip on the reference VM), not a spinning one's, unless
//! the workload busy-polls (`busy_poll`: every poll has a zero timeout, nothing sleeps). Open
//! loop wakes for each intended send with a precise timer ([`crate::timer`]); where there is
//! none it spins through the last millisecond, because the poll timeout has 1 ms granularity and
//! a late send would otherwise be counted as the server's latency.
//!
//! Owed open-loop requests (due, no free connection) are the schedule's cursor, not a queue
//! ([`Arrivals`]): a freed slot takes the oldest, and each turn sends at most
//! [`ARRIVAL_BATCH`] of them before it polls again, so no amount of owed work grows memory or
//! keeps the loop from its I/O and its deadline. A rate the generator cannot reach then runs at
//! the generator's own ceiling and the run says so.
//!
//! This module deliberately does not merge across threads or build the report (the coordinator
//! does), and keeps no request bytes of its own: they live in each connection's [`super::pipe::Pipe`].

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::Inject;
use super::arrivals::Arrivals;
use super::conn::{BACKOFF_MAX, BACKOFF_MIN, Conn, State};
use super::errors::{Kind, count, kind_of};
use super::intervals::Intervals;
use super::margin::{self, Margin};
use super::mode::{Carrier, Mode, Pacing};
use super::msg::{Go, Msg, Outcome, Plan, Tx};
use super::pipe::Req;
use super::record;
use super::schedule::Schedule;
use super::stall::Stall;
use super::startup::{Started, connect_blocking, connect_up_front};
use crate::Stop;
use crate::rng::Rng;
use crate::timer::{self, Timer};
use crate::workload::{Options, Workload};

/// Idle connections get tokens from here up, so one `usize` tells the two kinds apart.
pub(super) const IDLE_BASE: usize = 1 << 30;
/// The open-loop send timer's token, just below the idle range.
pub(super) const TIMER: Token = Token(IDLE_BASE - 1);
/// Busy-poll: a thread with at most this many connections reads them directly between polls
/// ([`Worker::read_awaited`]).
const DIRECT_READ_MAX: usize = 4;
/// Busy-poll: every this many turns poll anyway (closes, errors, writability).
const BUSY_POLL_EVERY: u32 = 64;
/// How often a worker scans its connections for timeouts and due reconnects.
pub(super) const TICK: Duration = Duration::from_millis(10);
/// The most owed open-loop requests one loop turn sends before it polls again: enough to
/// amortise a poll over many sends, few enough that a turn stays short (a few hundred µs).
pub(super) const ARRIVAL_BATCH: usize = 64;
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

pub(super) fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The request-count budget of a worker: its share, and the measured requests handed out (and
/// not lost to a failed connection).
#[derive(Debug)]
struct Budget {
    share: Option<u64>,
    issued: u64,
}

impl Budget {
    fn allows(&self, measured: bool) -> bool {
        !measured || self.share.is_none_or(|s| self.issued < s)
    }

    fn take(&mut self, measured: bool) {
        self.issued += u64::from(measured);
    }

    fn give_back(&mut self, n: usize) {
        self.issued -= n as u64;
    }
}

/// The pacing of a worker with the state it needs.
enum Pace {
    Closed,
    /// Open loop: the owed arrivals, the precise timer for the next one (if the OS has one) and
    /// how long before a send that timer wakes the worker to spin the rest.
    Open {
        arrivals: Arrivals,
        timer: Option<Timer>,
        margin: Margin,
        /// This thread's mean gap between sends (1 / its rate).
        gap: Duration,
    },
}

/// A worker with everything made and its connections up, waiting for the timeline.
pub(super) struct Prepared<'a> {
    w: &'a Workload,
    plan: Plan,
    poll: Poll,
    events: Events,
    conns: Vec<Conn>,
    idle: Vec<Option<TcpStream>>,
    rbuf: Vec<u8>,
    free: VecDeque<(usize, u32)>,
    timer: Option<Timer>,
    margin: Margin,
    late_by: Duration,
    out: Outcome,
    intervals: Intervals,
    tx: Tx,
}

/// The worker thread: prepare, report ready, wait for the timeline, run, hand the outcome back.
pub(super) fn worker(
    w: &Workload,
    plan: Plan,
    stop: &Stop,
    tx: Tx,
    go: mpsc::Receiver<Go>,
    inject: Inject,
) -> Option<Outcome> {
    let prepared = Prepared::new(w, plan, stop, tx, inject)?;
    let go = go.recv().ok()?;
    let mut wk = prepared.start(go);
    wk.run(stop);
    Some(wk.finish())
}

/// The start of every worker thread, TCP or UDP: pin it (a warning if that fails), ask for
/// exact timer expiry (a warning if refused), make its poller. A poller that cannot be made is
/// reported as `SetupFailed` (the coordinator fails the run) and gives `None`.
pub(super) fn thread_setup(plan: &Plan, tx: &Tx, inject: Inject) -> Option<(Poll, Vec<String>)> {
    let mut warnings = Vec::new();
    if let Some(cpu) = plan.cpu
        && !core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
    {
        warnings.push(format!(
            "could not pin a load thread to CPU {cpu}; running unpinned"
        ));
    }
    if !timer::precise_wakeups() {
        warnings.push(
            "could not set a load thread's timer slack to 1 ns: its wake-ups may be up to \
             50 µs late"
                .to_owned(),
        );
    }
    match (inject.new_poll)(plan.id) {
        Ok(p) => Some((p, warnings)),
        Err(e) => {
            // Not a connect error (`Ready`): the coordinator fails the whole run on this.
            let e = io::Error::new(
                e.kind(),
                format!("load thread {}: cannot create its poller: {e}", plan.id),
            );
            let _ = tx.send((plan.id, Msg::SetupFailed(e)));
            None
        }
    }
}

impl<'a> Prepared<'a> {
    /// All the start-up work of one worker, then its `Ready` (or `SetupFailed`, then `None`).
    fn new(w: &'a Workload, plan: Plan, stop: &Stop, tx: Tx, inject: Inject) -> Option<Self> {
        Self::with_connect(w, plan, stop, tx, inject, connect_blocking)
    }

    /// [`Prepared::new`] with the up-front connect chosen by the caller (a test's).
    fn with_connect(
        w: &'a Workload,
        plan: Plan,
        stop: &Stop,
        tx: Tx,
        inject: Inject,
        connect: impl FnMut(std::net::SocketAddr, Duration) -> io::Result<TcpStream>,
    ) -> Option<Self> {
        let o = w.options();
        let (poll, mut warnings) = thread_setup(&plan, &tx, inject)?;
        let Started {
            conns,
            idle,
            connected,
            refused,
            first_error,
        } = connect_up_front(&poll, &plan, w, stop, &mut warnings, connect);
        let mode = Mode::of(w);
        let (timer, margin) = margin::send_timer(&poll, plan.rate, o.busy_poll);
        let slots = conns.len() * mode.slots(o.depth);
        let prepared = Self {
            w,
            poll,
            events: Events::with_capacity(1024),
            conns,
            idle,
            rbuf: vec![0; 64 * 1024],
            // Every slot fits without growing, and each failure's stale entries besides.
            free: VecDeque::with_capacity(2 * slots),
            timer,
            margin,
            late_by: inject.late_by,
            out: Outcome::new(warnings),
            intervals: Intervals::new(mode.pacing == Pacing::Open, tx.clone(), plan.id),
            plan,
            tx,
        };
        let _ = prepared.tx.send((
            prepared.plan.id,
            Msg::Ready {
                connected,
                refused,
                error: first_error,
            },
        ));
        Some(prepared)
    }

    /// Fit the prepared worker to the timeline. Allocates nothing, connects nothing: it runs after
    /// the timeline's start is fixed, possibly after the start itself.
    pub(super) fn start(self, go: Go) -> Worker<'a> {
        let o = self.w.options();
        let Prepared {
            w,
            plan,
            poll,
            events,
            conns,
            idle,
            rbuf,
            free,
            timer,
            margin,
            late_by,
            mut out,
            mut intervals,
            tx,
        } = self;
        let seed = o.seed ^ (plan.id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let pace = match plan.rate.filter(|r| *r > 0.0) {
            Some(rate) => Pace::Open {
                arrivals: Arrivals::new(
                    Schedule::new(go.t0, rate, plan.phase, o.arrival, seed ^ 0x5C4E_D01E),
                    rate,
                    o.arrival,
                ),
                timer,
                margin,
                gap: Duration::from_secs_f64(1.0 / rate),
            },
            None => Pace::Closed,
        };
        intervals.start(go.warm_end, o.warmup);
        out.stopped_at = go.t0;
        Worker {
            o,
            mode: Mode::of(w),
            poll,
            events,
            conns,
            idle,
            rng: Rng::new(seed),
            rbuf,
            free,
            pace,
            go,
            budget: Budget {
                share: plan.share,
                issued: 0,
            },
            stall: Stall::default(),
            out,
            intervals,
            tx,
            id: plan.id,
            started: false,
            late_by,
        }
    }
}

/// A running worker: its connections, its pacing and its totals.
pub(super) struct Worker<'a> {
    o: &'a Options,
    mode: Mode,
    poll: Poll,
    events: Events,
    conns: Vec<Conn>,
    idle: Vec<Option<TcpStream>>,
    rng: Rng,
    rbuf: Vec<u8>,
    /// Free request slots `(connection, its epoch)`; entries of a failed connection are stale.
    free: VecDeque<(usize, u32)>,
    pace: Pace,
    go: Go,
    budget: Budget,
    /// The clock of the request-count give-up rule.
    stall: Stall,
    out: Outcome,
    intervals: Intervals,
    tx: Tx,
    id: usize,
    /// The up-front connections have been handed their first requests (or slots).
    started: bool,
    /// A test's injected lateness before every open-loop send ([`Inject`]); zero otherwise.
    late_by: Duration,
}

impl Worker<'_> {
    /// The event loop: one bounded turn at a time until the run ends.
    fn run(&mut self, stop: &Stop) {
        let mut next_tick = Instant::now();
        let mut turn: u32 = 0;
        loop {
            let now = Instant::now();
            if self.ends(now, stop) {
                break;
            }
            self.begin(now);
            self.intervals.roll(now);
            if now >= next_tick {
                self.maintain(now);
                next_tick = now + TICK;
            }
            self.send_due(now);
            turn = turn.wrapping_add(1);
            if self.o.busy_poll && turn % BUSY_POLL_EVERY != 0 && self.read_awaited() {
                continue;
            }
            let (timeout, yield_if_idle) = self.sleep(now, next_tick);
            if let Err(e) = self.poll.poll(&mut self.events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                self.out
                    .warnings
                    .push(format!("poll failed, the run ended early: {e}"));
                break;
            }
            self.timer_woke();
            if yield_if_idle && self.events.is_empty() {
                // Spinning a millisecond without a timer: let a co-located server thread run.
                std::thread::yield_now();
            }
            self.handle_events();
        }
    }

    /// Busy-poll with few connections: read each connection that awaits an echo directly, the
    /// way a spinning client calls `recv(MSG_DONTWAIT)`, instead of asking the poller first
    /// (one system call per check instead of two: `epoll_wait` then `read`). Measured against a
    /// busy-polling server, where the round trip is ≈ 6 µs, asking first added ≈ 0.5 µs (9 %).
    /// Returns false, so the turn polls as usual, when anything needs the poller: more than
    /// [`DIRECT_READ_MAX`] connections (a read each per turn would cost more than one poll),
    /// connect per request, a connection not open (connecting, down) or with unsent bytes
    /// (waiting to be writable). Every [`BUSY_POLL_EVERY`]th turn polls anyway, for closes and
    /// errors; an edge a direct read already consumed then costs one `read` that would block.
    fn read_awaited(&mut self) -> bool {
        if self.conns.len() > DIRECT_READ_MAX || self.mode.carrier != Carrier::Persistent {
            return false;
        }
        if self
            .conns
            .iter()
            .any(|c| c.state != State::Open || c.pipe.unsent())
        {
            return false;
        }
        for i in 0..self.conns.len() {
            if self.conns[i].state == State::Open && !self.conns[i].pipe.caught_up() {
                self.read(i, false);
            }
        }
        true
    }

    /// On the first turn: the connections opened up front get their first requests (or slots).
    fn begin(&mut self, now: Instant) {
        if self.started {
            return;
        }
        self.started = true;
        for i in 0..self.conns.len() {
            if matches!(self.conns[i].state, State::Open | State::Free) {
                self.offer(i, now);
            }
        }
    }

    /// Whether the run is over at `now`: stopped, past the deadline, the share done, or (a
    /// request-count run, which has no deadline) the server gone for good.
    fn ends(&mut self, now: Instant, stop: &Stop) -> bool {
        if stop.is_stopped() {
            self.out.interrupted = true;
            return true;
        }
        if self.go.end.is_some_and(|e| now >= e)
            || self.budget.share.is_some_and(|s| self.out.requests >= s)
        {
            return true;
        }
        // Three timeouts of wanting an answer without a single completion is "gone", not
        // "slow"; idle time between open-loop sends is neither (see `stall`).
        let timeout = self.o.timeout;
        if self.budget.share.is_some()
            && now >= self.go.warm_end
            && self.stall.stalled_for(now, self.go.warm_end) > 3 * timeout
        {
            self.out.warnings.push(format!(
                "gave up: requests were outstanding or failing for {:?} (3 × --timeout) \
                 and none completed",
                3 * timeout
            ));
            return true;
        }
        false
    }

    /// How long the next poll may sleep, and whether to yield the CPU if it returns nothing
    /// (spinning through the last millisecond where there is no precise timer). The margin spin
    /// before a timed send does not yield: handing the core to another thread there is exactly
    /// how a send comes out a scheduler slice late.
    fn sleep(&mut self, now: Instant, next_tick: Instant) -> (Duration, bool) {
        if self.o.busy_poll {
            // Never sleep, never yield: the round trip then excludes this thread's wake-up
            // (`--busy-poll`), at the price of a whole CPU per thread.
            return (Duration::ZERO, false);
        }
        let mut wake = next_tick.min(self.intervals.next_boundary());
        if let Some(e) = self.go.end {
            wake = wake.min(e);
        }
        let timeout = wake.saturating_duration_since(now);
        let next = match &self.pace {
            Pace::Closed => return (timeout, false),
            Pace::Open { arrivals, .. } => arrivals.next(),
        };
        if next <= now {
            // Owed requests. If one could go now, the turn's batch ran out: poll without
            // sleeping. Otherwise a connection must free first, and that comes as an event.
            let ready = self.budget.allows(self.measured(next)) && self.has_free_slot();
            return (if ready { Duration::ZERO } else { timeout }, false);
        }
        let Pace::Open {
            timer, margin, gap, ..
        } = &mut self.pace
        else {
            return (timeout, false);
        };
        margin::sleep_before_send(next - now, now, timeout, timer.as_mut(), margin, *gap)
    }

    /// If the poll just returned because the send timer fired, teach the margin how late that
    /// wake-up was.
    fn timer_woke(&mut self) {
        if let Pace::Open { timer, margin, .. } = &mut self.pace {
            margin::after_poll(timer.as_ref(), margin, &self.events);
        }
    }

    fn handle_events(&mut self) {
        // Taken out for the walk (no allocation: an empty `Events` holds nothing), put back after.
        let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        for ev in events.iter() {
            let token = ev.token();
            let (readable, writable) = (ev.is_readable(), ev.is_writable());
            let peer_closed = ev.is_read_closed() || ev.is_error();
            let t = token.0;
            if token == TIMER {
                continue;
            }
            if t >= IDLE_BASE {
                self.idle_event(t - IDLE_BASE);
                continue;
            }
            match self.conns.get(t).map(|c| c.state) {
                Some(State::Connecting { .. }) => self.check_connect(t),
                Some(State::Open) => {
                    if readable || peer_closed {
                        self.read(t, peer_closed);
                    }
                    if writable && self.conns[t].state == State::Open && self.conns[t].pipe.unsent()
                    {
                        self.flush(t);
                    }
                }
                _ => {}
            }
        }
        self.events = events;
    }

    /// The run is over: close the last interval, tell the coordinator, hand the totals back.
    fn finish(mut self) -> Outcome {
        let now = Instant::now();
        self.out.stopped_at = now;
        let last = match self.go.end {
            Some(e) => now.min(e),
            None => now,
        };
        if let (Some(end), Pace::Open { arrivals, .. }) = (self.go.end, &self.pace)
            && !self.out.interrupted
        {
            self.out.unsent = arrivals.between(self.go.warm_end, end);
        }
        self.intervals.finish(last);
        let _ = self.tx.send((self.id, Msg::Done));
        self.out
    }

    fn measured(&self, t: Instant) -> bool {
        t >= self.go.warm_end
    }

    /// Open loop: send owed requests on free slots, at most [`ARRIVAL_BATCH`] this turn. Those
    /// that fell due while the turn was sending go in the same batch, not a poll later.
    fn send_due(&mut self, mut now: Instant) {
        for _ in 0..ARRIVAL_BATCH {
            let Pace::Open { arrivals, .. } = &self.pace else {
                return;
            };
            let intended = match arrivals.due(now) {
                Some(t) => t,
                None => {
                    let later = Instant::now();
                    match arrivals.due(later) {
                        Some(t) => {
                            now = later;
                            t
                        }
                        None => return,
                    }
                }
            };
            if !self.budget.allows(self.measured(intended)) {
                return;
            }
            let Some(i) = self.take_free_slot() else {
                return;
            };
            self.dispatch(i, false, now);
        }
    }

    /// Whether slot `(i, epoch)` can take a request now.
    fn usable(&self, i: usize, epoch: u32) -> bool {
        let c = &self.conns[i];
        c.epoch == epoch
            && match self.mode.carrier {
                Carrier::PerRequest => c.state == State::Free,
                Carrier::Persistent => c.state == State::Open && c.pipe.requests() < self.o.depth,
            }
    }

    /// Whether a free slot is waiting (dropping stale entries in front of it).
    fn has_free_slot(&mut self) -> bool {
        while let Some(&(i, epoch)) = self.free.front() {
            if self.usable(i, epoch) {
                return true;
            }
            self.free.pop_front();
        }
        false
    }

    fn take_free_slot(&mut self) -> Option<usize> {
        self.has_free_slot()
            .then(|| self.free.pop_front().map(|(i, _)| i))
            .flatten()
    }

    /// Open loop: connection `i` takes the oldest owed request (due: the caller checked).
    /// `queued`: it had found every connection busy and waited for this one.
    fn dispatch(&mut self, i: usize, queued: bool, now: Instant) {
        let Pace::Open { arrivals, .. } = &mut self.pace else {
            return;
        };
        let intended = arrivals.take();
        if !self.late_by.is_zero() {
            let until = Instant::now() + self.late_by;
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
        let measured = self.measured(intended);
        self.budget.take(measured);
        if measured {
            self.out.sent += 1;
            self.out.queued += u64::from(queued);
        }
        self.stall.issued(now);
        self.enqueue(i, Some(intended), measured, queued, now);
        self.start_send(i);
    }

    /// Connection `i` can take requests (reconnected, or free again for connect per request).
    fn became_ready(&mut self, i: usize, now: Instant) {
        match self.mode.pacing {
            Pacing::Closed => self.fill(i, now),
            Pacing::Open => {
                for _ in 0..self.mode.slots(self.o.depth) {
                    self.slot_free(i, now);
                }
            }
        }
    }

    /// At the start: connection `i` offers its slots. In open loop they go to the free list (a
    /// request sent from there did not wait for a connection), in closed loop they fill.
    fn offer(&mut self, i: usize, now: Instant) {
        match self.mode.pacing {
            Pacing::Closed => self.fill(i, now),
            Pacing::Open => {
                for _ in 0..self.mode.slots(self.o.depth) {
                    self.free.push_back((i, self.conns[i].epoch));
                }
            }
        }
    }

    /// Closed loop: top the connection up to `depth` requests in flight, then send.
    fn fill(&mut self, i: usize, now: Instant) {
        let measured = self.measured(now);
        let mut added = false;
        while self.conns[i].pipe.requests() < self.o.depth && self.budget.allows(measured) {
            self.budget.take(measured);
            self.stall.issued(now);
            self.enqueue(i, None, measured, false, now);
            added = true;
        }
        if added {
            self.start_send(i);
        }
    }

    /// Open loop: one slot on connection `i` is free. If requests are owed and no other slot
    /// is waiting, they found every connection busy: the oldest goes here, as `queued`.
    /// Otherwise the slot waits in the free list for the next due request.
    fn slot_free(&mut self, i: usize, now: Instant) {
        let due = match &self.pace {
            Pace::Open { arrivals, .. } => arrivals.due(now),
            Pace::Closed => None,
        };
        if let Some(intended) = due
            && self.budget.allows(self.measured(intended))
            && !self.has_free_slot()
        {
            self.dispatch(i, true, now);
        } else {
            self.free.push_back((i, self.conns[i].epoch));
        }
    }

    fn fail(&mut self, i: usize, kind: Kind, now: Instant) {
        let c = &mut self.conns[i];
        if let Some(mut s) = c.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        self.budget.give_back(c.pipe.measured());
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

    /// Generate one request's payload into the connection's FIFO (before any timestamp).
    fn enqueue(
        &mut self,
        i: usize,
        intended: Option<Instant>,
        measured: bool,
        queued: bool,
        now: Instant,
    ) {
        let o = self.o;
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
        match self.mode.carrier {
            Carrier::PerRequest => self.connect_for_request(i),
            Carrier::Persistent => self.flush(i),
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
        let result = TcpStream::connect(self.o.addr).and_then(|mut s| {
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
        match self.mode.carrier {
            Carrier::PerRequest => {
                if self.conns[i].pipe.oldest().is_some_and(|r| r.measured) {
                    self.out.connect.saturating_record(ns(now - since));
                }
                self.flush(i);
            }
            Carrier::Persistent => self.became_ready(i, now),
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
            if !self.conns[i]
                .pipe
                .take_echo(&self.rbuf[..n], !self.o.no_verify)
            {
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
                if self.mode.carrier == Carrier::PerRequest {
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
        match self.mode.pacing {
            Pacing::Open => {
                for _ in 0..done {
                    self.slot_free(i, t);
                }
            }
            Pacing::Closed => self.fill(i, t),
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
        // A request belongs to the window it completes in. One sent (or due) in the warm-up
        // that completes inside the window is counted, with its whole latency: under overload
        // the owed requests are served oldest first, so counting by intended time left a window
        // of nothing but warm-up requests with no completion at all (an open loop at 2× the
        // server's rate reported 0 req/s) and hid exactly the requests that waited longest.
        // A `--requests N` run counts exactly the N it issued after the warm-up instead.
        if !req.measured && (t_end < self.go.warm_end || self.budget.share.is_some()) {
            // Warm-up completions show in progress only.
            self.intervals.record(t_end, latency, None);
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
                    if now.saturating_duration_since(since) > self.o.timeout =>
                {
                    self.fail(i, Kind::Timeout, now)
                }
                State::Open
                    if c.pipe.oldest().is_some_and(|r| {
                        now.saturating_duration_since(r.dispatched) > self.o.timeout
                    }) =>
                {
                    self.fail(i, Kind::Timeout, now)
                }
                _ => {}
            }
        }
    }

    fn reconnect(&mut self, i: usize, now: Instant) {
        if self.mode.carrier == Carrier::PerRequest {
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
    use crate::Options;

    /// The workload and plan of a single-thread worker against a listener that never accepts (the kernel
    /// completes the connects into its backlog), set up by `tune`.
    fn prepared(
        listener: &std::net::TcpListener,
        tune: impl FnOnce(&mut Options),
    ) -> (Workload, Plan) {
        let mut o = Options::new(listener.local_addr().unwrap());
        o.connections = 1;
        o.threads = 1;
        o.warmup = Duration::ZERO;
        tune(&mut o);
        let w = o.validate().unwrap();
        let plan = Plan {
            id: 0,
            conns: 1,
            idle: 0,
            share: None,
            rate: w.options().rate,
            phase: Duration::ZERO,
            cpu: None,
        };
        (w, plan)
    }

    fn go_at(t0: Instant) -> Go {
        Go {
            t0,
            warm_end: t0,
            end: Some(t0 + Duration::from_secs(3600)),
        }
    }

    #[test]
    fn nothing_is_allocated_from_the_timeline_to_the_first_open_loop_send() {
        // With --warmup 0s the first request's send lag used to include start-up work done after
        // the timeline's start (histograms, buffers, the timer): about 2 ms. All of that now
        // happens in `Prepared::new`; fitting the worker to the timeline and sending the first
        // request allocate nothing.
        let counted = allocation_counter::measure(|| drop(std::hint::black_box(vec![1u8])));
        assert_eq!(
            counted.count_total, 1,
            "the counting allocator is not active"
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (tx, _rx) = mpsc::channel();
        let (w, plan) = prepared(&listener, |o| o.rate = Some(1000.0));
        let p = Prepared::new(&w, plan, &Stop::new(), tx, Inject::REAL).unwrap();
        let t0 = Instant::now();
        let mut sent = None;
        let info = allocation_counter::measure(|| {
            let mut wk = p.start(go_at(t0));
            let now = Instant::now();
            wk.begin(now);
            wk.send_due(now);
            sent = Some(wk.out.sent);
            std::mem::forget(wk); // its drop is not the question
        });
        assert_eq!(sent, Some(1), "the first request went out");
        assert_eq!(info.count_total, 0, "allocated after t0: {info:?}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_worker_thread_asks_for_exact_timer_expiry() {
        // Before: every load thread kept Linux's default 50 µs timer slack, so each timed
        // wake-up (the send timer, the poll timeout) could fire up to 50 µs after its deadline.
        std::thread::spawn(|| {
            assert_ne!(
                nix::sys::prctl::get_timerslack().unwrap(),
                1,
                "already exact"
            );
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let (tx, _rx) = mpsc::channel();
            let (w, plan) = prepared(&listener, |o| o.rate = Some(1000.0));
            let p = Prepared::new(&w, plan, &Stop::new(), tx, Inject::REAL).unwrap();
            assert!(p.out.warnings.is_empty(), "{:?}", p.out.warnings);
            assert_eq!(nix::sys::prctl::get_timerslack().unwrap(), 1);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_turn_sends_a_bounded_batch_however_much_is_owed() {
        // Ten seconds behind at 10^8 requests per second: 10^9 requests owed, 1,000 free slots.
        // One turn sends ARRIVAL_BATCH of them, in well under a second, and owing them takes
        // no memory (the old engine pushed one queue entry per arrival, and spent the turn).
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (tx, _rx) = mpsc::channel();
        let (w, plan) = prepared(&listener, |o| {
            o.rate = Some(1e8);
            o.depth = 1000;
        });
        let p = Prepared::new(&w, plan, &Stop::new(), tx, Inject::REAL).unwrap();
        let now = Instant::now();
        let mut wk = p.start(go_at(now - Duration::from_secs(10)));
        let t = Instant::now();
        let info = allocation_counter::measure(|| {
            wk.begin(now);
            wk.send_due(now);
        });
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        assert_eq!(wk.out.sent, ARRIVAL_BATCH as u64);
        assert_eq!(wk.free.len(), 1000 - ARRIVAL_BATCH);
        let Pace::Open { arrivals, .. } = &wk.pace else {
            panic!("open loop")
        };
        let owed = arrivals.before(now);
        assert!((999_000_000..=1_000_000_000).contains(&owed), "{owed}");
        assert_eq!(info.count_total, 0, "owing work allocated: {info:?}");
        // Free slots and owed work: the next poll must not sleep.
        assert_eq!(wk.sleep(now, now + TICK).0, Duration::ZERO);
    }

    #[test]
    fn a_busy_polling_worker_never_sleeps_and_arms_no_timer() {
        // Without --busy-poll a closed-loop worker sleeps until its tick and an open-loop one
        // until the margin before its next send; with it, every poll has a zero timeout and
        // never yields, in both modes, and no send timer is made.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        for rate in [None, Some(10.0)] {
            for busy in [false, true] {
                let (tx, _rx) = mpsc::channel();
                let (w, plan) = prepared(&listener, |o| {
                    o.rate = rate;
                    o.busy_poll = busy;
                });
                let p = Prepared::new(&w, plan, &Stop::new(), tx, Inject::REAL).unwrap();
                assert!(
                    !busy || p.timer.is_none(),
                    "rate {rate:?}: a busy poller made a timer"
                );
                let now = Instant::now();
                // The first open-loop send is 100 ms away at 10 req/s.
                let mut wk = p.start(go_at(now + Duration::from_millis(100)));
                let (timeout, yields) = wk.sleep(now, now + TICK);
                assert!(!yields, "rate {rate:?} busy {busy}: yields");
                assert_eq!(
                    timeout.is_zero(),
                    busy,
                    "rate {rate:?} busy {busy}: timeout {timeout:?}"
                );
            }
        }
    }
}
