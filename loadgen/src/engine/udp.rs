//! One UDP worker thread: its connected UDP sockets and the `mio` event loop that sends request
//! datagrams (closed loop: up to `depth` in flight per socket; open loop: each at its intended
//! time on the next socket in turn) and classifies every echo through the socket's
//! [`Ledger`] (answered, lost, duplicated, reordered, late).
//!
//! It shares the TCP worker's machinery rather than copying it: the thread set-up
//! ([`super::worker::thread_setup`]), the timeline ([`Go`]), the open-loop schedule and owed
//! arrivals ([`Arrivals`]), the precise send timer and its learned margin
//! ([`margin::send_timer`], [`margin::sleep_before_send`], [`margin::after_poll`]), the
//! socket registration ([`registered`]), the live 1 s intervals and the one recording path
//! ([`record::completion`]), and the [`Outcome`] the coordinator merges. What differs is the
//! carrier: a datagram is not a byte stream, so there is no connection to fail, reconnect or
//! time out as a whole. A datagram with no echo within `timeout` is lost and frees its slot
//! (closed loop); the socket goes on.
//!
//! A duration run stops sending at its deadline and then drains: it keeps reading until every
//! datagram in flight is answered or past its timeout (at most `timeout` after its last send,
//! which can follow the deadline by a descheduled loop turn), so every measured datagram's
//! fate is known and loss in the last seconds is not hidden as "in flight".
//!
//! Timestamps follow the contract: closed loop, immediately before the `send` call; open loop,
//! the intended send time (the actual one feeds the uncorrected histogram and the send lag);
//! the end is when the `recv` that returned the echo returns. A send that would block (full
//! send buffer) is retried when the socket is writable, so its lateness shows as send lag; a
//! send that fails otherwise (`ECONNREFUSED` after an ICMP port unreachable) is counted in
//! `errors` and the socket rests with a doubling back-off.
//!
//! Deliberately not here: the wire format and the bookkeeping of fates ([`super::datagram`]),
//! merging across threads and the report ([`super::assemble`]).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Poll};
use socket2::{Domain, Protocol, Socket, Type};

use super::Inject;
use super::arrivals::Arrivals;
use super::conn::{BACKOFF_MAX, BACKOFF_MIN};
use super::datagram::{self, Echo, Ledger, PROBE_ID, Sent};
use super::errors::{Kind, count, kind_of};
use super::intervals::Intervals;
use super::margin::{self, Margin};
use super::msg::{Go, Msg, Outcome, Plan, Tx};
use super::record;
use super::rxq::Rx;
use super::schedule::Schedule;
use super::startup::{registered, split};
use super::worker::{ARRIVAL_BATCH, TICK, TIMER, ns, thread_setup};
use crate::Stop;
use crate::report::Udp;
use crate::timer::Timer;
use crate::workload::{Options, UDP_HEADER, UDP_MAX_SIZE, Workload};

/// The largest datagram a socket can receive, with room to spare so an over-long echo is seen
/// as over-long rather than silently truncated to the expected length.
const RECV_BUF: usize = UDP_MAX_SIZE + 64;
/// Window entries made before the run per socket, at most (more grow on demand). Without loss
/// the window holds only what is in flight for a round trip; a loss at its front makes it hold
/// a `timeout` of sends until that datagram expires, which grows it (amortised doubling) only
/// in runs that lose datagrams.
const WINDOW_PREALLOC: usize = 1 << 10;
/// History bytes made before the run per socket, at most (more grow on demand).
const HISTORY_PREALLOC: usize = 1 << 20;
/// Receive errors in a row after which a read gives up until the next event.
const ERRORS_IN_A_ROW: u32 = 64;
/// The longest the start-up probe waits for its echo (or a refusal) before the run starts.
const PROBE_WAIT: Duration = Duration::from_secs(1);

/// One connected UDP socket of the worker.
struct Sock {
    s: UdpSocket,
    /// The connection id in every datagram it sends (unique over the run).
    id: u32,
    ledger: Ledger,
    /// After a failed send: no sends before this.
    down_until: Option<Instant>,
    backoff: Duration,
    /// A send would have blocked: wait for WRITABLE.
    blocked: bool,
    /// The kernel's count of datagrams this socket's receive queue dropped (`SO_RXQ_OVFL`), as
    /// last reported, and as it was when the measured window opened.
    drops: u32,
    drops_at_open: u32,
}

impl Sock {
    fn can_send(&self) -> bool {
        !self.blocked && self.down_until.is_none()
    }
}

/// The open-loop state: owed arrivals, the precise timer, its margin, the mean gap.
struct Open {
    arrivals: Arrivals,
    timer: Option<Timer>,
    margin: Margin,
    gap: Duration,
    /// The socket the next datagram tries first (round robin).
    next_sock: usize,
}

/// A UDP worker: made by [`worker`], run until the deadline, the count or a stop.
struct UdpWorker<'a> {
    o: &'a Options,
    poll: Poll,
    events: Events,
    socks: Vec<Sock>,
    rx: Rx,
    /// Whether the kernel reports each socket's drops (`SO_RXQ_OVFL` accepted on all).
    drops_known: bool,
    sbuf: Vec<u8>,
    rbuf: Vec<u8>,
    open: Option<Open>,
    go: Go,
    /// Measured datagrams allowed (a request-count run's share) and sent.
    share: Option<u64>,
    issued: u64,
    window_open: bool,
    /// Past the deadline: nothing more is sent; echoes of what is in flight are still taken
    /// until each is answered or its timeout has passed.
    draining: bool,
    /// Closed loop: the sockets got their first datagrams.
    started: bool,
    tally: Udp,
    out: Outcome,
    intervals: Intervals,
    tx: Tx,
    id: usize,
    late_by: Duration,
}

/// The UDP worker thread: set up, probe, report ready, wait for the timeline, run, hand back.
pub(super) fn worker(
    w: &Workload,
    plan: Plan,
    stop: &Stop,
    tx: Tx,
    go: mpsc::Receiver<Go>,
    inject: Inject,
) -> Option<Outcome> {
    let o = w.options();
    let (poll, mut warnings) = thread_setup(&plan, &tx, inject)?;
    // This worker's sockets get connection ids after those of the threads before it.
    let threads = w.effective_threads();
    let first = (0..plan.id)
        .map(|j| split(o.connections as u64, threads, j))
        .sum::<u64>();
    let mut refused = 0;
    let mut first_error = None;
    if !stop.is_stopped() {
        match probe(o.addr, o.timeout.min(PROBE_WAIT)) {
            Ok(true) => {}
            Ok(false) => warnings.push(format!(
                "no echo to the start-up probe within {:?}: the server may be silent, and its \
                 datagrams will be counted lost",
                o.timeout.min(PROBE_WAIT)
            )),
            Err(e) => {
                refused += usize::from(kind_of(&e) == Kind::Refused);
                first_error = Some(e);
            }
        }
    }
    let rate = plan.rate.filter(|r| *r > 0.0);
    let per_sock = rate.map(|r| r / plan.conns.max(1) as f64);
    let (window, history) = match per_sock {
        Some(r) => {
            let run = o.warmup + o.duration.unwrap_or(Duration::from_secs(10));
            // A window for 10 ms of sends, a history for the whole run (each capped).
            (
                ((r * 0.01) as usize + 16).min(WINDOW_PREALLOC),
                ((r * run.as_secs_f64()) as usize + 16).min(HISTORY_PREALLOC),
            )
        }
        None => (o.depth, 4096),
    };
    let mut socks = Vec::with_capacity(plan.conns);
    let mut drops_known = true;
    if refused == 0 {
        for i in 0..plan.conns {
            match open_socket(o.addr).and_then(|s| registered(&poll, i, s)) {
                Ok(s) => {
                    drops_known &= Rx::enable(&s);
                    socks.push(Sock {
                        s,
                        id: (first + i as u64) as u32,
                        ledger: Ledger::with_capacity(window, history),
                        down_until: None,
                        backoff: BACKOFF_MIN,
                        blocked: false,
                        drops: 0,
                        drops_at_open: 0,
                    });
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if socks.len() < plan.conns {
            warnings.push(format!(
                "{} of {} UDP sockets could not be opened: {}",
                plan.conns - socks.len(),
                plan.conns,
                first_error
                    .as_ref()
                    .map_or(String::new(), ToString::to_string)
            ));
        }
    }
    let (timer, margin) = margin::send_timer(&poll, rate, o.busy_poll);
    // Everything the run needs is made before `Ready`, so nothing is allocated between the
    // timeline's start and the first send (the TCP worker's rule).
    let largest = o.size_range.map_or(o.size, |r| r.max);
    let intervals = Intervals::new(rate.is_some(), tx.clone(), plan.id);
    let out = Outcome::new(warnings);
    let (events, rx) = (Events::with_capacity(1024), Rx::new());
    let (sbuf, rbuf) = (vec![0; largest.max(UDP_HEADER)], vec![0; RECV_BUF]);
    let _ = tx.send((
        plan.id,
        Msg::Ready {
            connected: socks.len(),
            refused,
            error: first_error,
        },
    ));
    let go = go.recv().ok()?;
    let seed = o.seed ^ (plan.id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let open = rate.map(|r| Open {
        arrivals: Arrivals::new(
            Schedule::new(go.t0, r, plan.phase, o.arrival, seed ^ 0x5C4E_D01E),
            r,
            o.arrival,
        ),
        timer,
        margin,
        gap: Duration::from_secs_f64(1.0 / r),
        next_sock: 0,
    });
    let mut wk = UdpWorker {
        o,
        poll,
        events,
        socks,
        rx,
        drops_known,
        sbuf,
        rbuf,
        open,
        go,
        share: plan.share,
        issued: 0,
        window_open: false,
        draining: false,
        started: false,
        tally: Udp::default(),
        out,
        intervals,
        tx,
        id: plan.id,
        late_by: inject.late_by,
    };
    wk.out.stopped_at = go.t0;
    wk.intervals.start(go.warm_end, o.warmup);
    wk.run(stop);
    Some(wk.finish())
}

/// A nonblocking UDP socket on the wildcard address of `addr`'s family, connected to `addr` (so
/// it receives only from there, and an ICMP port unreachable comes back as `ECONNREFUSED`).
fn open_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.bind(&wildcard(addr).into())?;
    s.connect(&addr.into())?;
    s.set_nonblocking(true)?;
    Ok(UdpSocket::from_std(s.into()))
}

fn wildcard(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

/// Send one header-only datagram (connection id [`PROBE_ID`]) from a socket of its own and wait
/// up to `wait` for its echo: `Ok(true)` answered, `Ok(false)` silence, `Err` a refusal (ICMP
/// port unreachable: nothing listens; `ConnectionRefused` on every OS) or another error. So a
/// dead target fails before the run as with TCP, and a load socket's sequence never sees the
/// probe.
pub(crate) fn probe(addr: SocketAddr, wait: Duration) -> io::Result<bool> {
    let s = std::net::UdpSocket::bind(wildcard(addr))?;
    s.connect(addr)?;
    let mut d = [0u8; UDP_HEADER];
    d[..4].copy_from_slice(&PROBE_ID.to_le_bytes());
    s.send(&d)?;
    let end = Instant::now() + wait;
    let mut buf = [0u8; 64];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        s.set_read_timeout(Some(left))?;
        match s.recv(&mut buf) {
            Ok(_) => return Ok(true),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(false);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Windows reports a port unreachable on a UDP socket as WSAECONNRESET.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Err(io::ErrorKind::ConnectionRefused.into());
            }
            Err(e) => return Err(e),
        }
    }
}

/// When a duration run that ended at `end` has waited out every datagram's timeout: one
/// `timeout` after its last send, which can follow `end`: a loop turn that began before `end`
/// sends its batch of owed datagrams after it when the thread is descheduled mid-batch (seen:
/// 48 datagrams reported `in_flight` by a run that drained only until `end + timeout`).
fn drained_by(end: Instant, last_send: Option<Instant>, timeout: Duration) -> Instant {
    last_send.map_or(end, |t| t.max(end)) + timeout
}

impl UdpWorker<'_> {
    fn run(&mut self, stop: &Stop) {
        let mut next_tick = Instant::now();
        loop {
            let now = Instant::now();
            if self.ends(now, stop) {
                break;
            }
            if !self.window_open && now >= self.go.warm_end {
                self.window_open = true;
                for s in &mut self.socks {
                    s.drops_at_open = s.drops;
                }
            }
            self.intervals.roll(now);
            if now >= next_tick {
                self.maintain(now);
                next_tick = now + TICK;
            }
            // Closed loop starts at the timeline's start, not when this thread got the
            // timeline (up to START_LEAD earlier): with no warm-up, the first datagrams then
            // are in the window.
            if !self.started && now >= self.go.t0 {
                self.started = true;
                if self.open.is_none() {
                    for i in 0..self.socks.len() {
                        self.fill(i, now);
                    }
                }
            }
            self.send_due(now);
            let timeout = self.sleep(now, next_tick);
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
            self.handle_events();
        }
    }

    /// Stopped; or past the deadline (a duration run) and drained: every datagram sent answered
    /// or past its timeout; or (a request-count run) its share sent and every datagram settled.
    /// So the fate of every measured datagram is known when the run ends (`in_flight` is 0
    /// unless it was stopped), and a silent server ends the run one `timeout` after the last
    /// send, never later.
    fn ends(&mut self, now: Instant, stop: &Stop) -> bool {
        if stop.is_stopped() {
            self.out.interrupted = true;
            return true;
        }
        let settled = self.socks.iter().all(|k| k.ledger.outstanding() == 0);
        if let Some(end) = self.go.end
            && now >= end
        {
            self.draining = true;
            // Past every datagram's timeout, `finish` counts the rest lost.
            return settled || now > self.drained_by(end);
        }
        self.share.is_some_and(|s| self.issued >= s && settled) || self.socks.is_empty()
    }

    /// When a duration run that ended at `end` has waited out every datagram's timeout (see
    /// [`drained_by`]).
    fn drained_by(&self, end: Instant) -> Instant {
        let last = self.socks.iter().filter_map(|k| k.ledger.last_sent()).max();
        drained_by(end, last, self.o.timeout)
    }

    fn measured(&self, t: Instant) -> bool {
        t >= self.go.warm_end
    }

    fn allows(&self, measured: bool) -> bool {
        !measured || self.share.is_none_or(|s| self.issued < s)
    }

    /// Every `TICK`: datagrams past their timeout are lost (closed loop: their slots refill), and
    /// sockets whose back-off ended may send again.
    fn maintain(&mut self, now: Instant) {
        for i in 0..self.socks.len() {
            let (lost, measured) = self.socks[i].ledger.expire(now, self.o.timeout);
            self.tally.lost += measured;
            let s = &mut self.socks[i];
            let rested = s.down_until.is_some_and(|t| t <= now);
            if rested {
                s.down_until = None;
            }
            if (lost > 0 || rested) && self.open.is_none() {
                self.fill(i, now);
            }
        }
    }

    /// How long the next poll may sleep.
    fn sleep(&mut self, now: Instant, next_tick: Instant) -> Duration {
        if self.o.busy_poll {
            return Duration::ZERO;
        }
        let mut wake = next_tick.min(self.intervals.next_boundary());
        if !self.started {
            wake = wake.min(self.go.t0);
        }
        if let Some(e) = self.go.end {
            wake = wake.min(if self.draining { self.drained_by(e) } else { e });
        }
        let timeout = wake.saturating_duration_since(now);
        let Some(open) = self.open.as_ref().filter(|_| !self.draining) else {
            return timeout;
        };
        let next = open.arrivals.next();
        if next <= now {
            // Owed datagrams: go on at once if one can go, else wait for a socket's event.
            let ready = self.allows(self.measured(now)) && self.socks.iter().any(Sock::can_send);
            return if ready { Duration::ZERO } else { timeout };
        }
        let Some(open) = &mut self.open else {
            return timeout;
        };
        let (d, yields) = margin::sleep_before_send(
            next - now,
            now,
            timeout,
            open.timer.as_mut(),
            &open.margin,
            open.gap,
        );
        if yields {
            std::thread::yield_now();
        }
        d
    }

    fn timer_woke(&mut self) {
        if let Some(open) = &mut self.open {
            margin::after_poll(open.timer.as_ref(), &mut open.margin, &self.events);
        }
    }

    fn handle_events(&mut self) {
        let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        for ev in events.iter() {
            if ev.token() == TIMER {
                continue;
            }
            let i = ev.token().0;
            if i >= self.socks.len() {
                continue;
            }
            if ev.is_writable() && self.socks[i].blocked {
                self.socks[i].blocked = false;
                if self.open.is_none() {
                    self.fill(i, Instant::now());
                }
            }
            if ev.is_readable() || ev.is_error() {
                self.read(i);
            }
        }
        self.events = events;
    }

    /// Closed loop: top socket `i` up to `depth` datagrams in flight.
    fn fill(&mut self, i: usize, now: Instant) {
        let measured = self.measured(now);
        while !self.draining
            && self.socks[i].can_send()
            && self.socks[i].ledger.outstanding() < self.o.depth
            && self.allows(measured)
        {
            if !self.send(i, None, measured) {
                break;
            }
        }
    }

    /// Open loop: send owed datagrams, at most [`ARRIVAL_BATCH`] this turn, each on the next
    /// socket that can send.
    fn send_due(&mut self, mut now: Instant) {
        if self.draining {
            return;
        }
        for _ in 0..ARRIVAL_BATCH {
            let Some(open) = &self.open else { return };
            let intended = match open.arrivals.due(now) {
                Some(t) => t,
                None => {
                    let later = Instant::now();
                    match open.arrivals.due(later) {
                        Some(t) => {
                            now = later;
                            t
                        }
                        None => return,
                    }
                }
            };
            // A datagram belongs to the window it is sent in, whenever it was due: a generator
            // behind its schedule sends the warm-up's owed datagrams first, and counted by
            // intended time they made a window of nothing (an open loop above what the
            // generator can send reported 0 sent, 0 received). Its latency still counts from
            // its intended time, so the lateness is in it, and rule 1 of the verdict flags it.
            let measured = self.measured(now);
            if !self.allows(measured) {
                return;
            }
            let n = self.socks.len();
            let from = open.next_sock;
            let Some(i) = (0..n)
                .map(|k| (from + k) % n)
                .find(|&i| self.socks[i].can_send())
            else {
                return;
            };
            if let Some(open) = &mut self.open {
                open.next_sock = (i + 1) % n;
            }
            if !self.late_by.is_zero() {
                let until = Instant::now() + self.late_by;
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
            }
            if self.send(i, Some(intended), measured)
                && let Some(open) = &mut self.open
            {
                open.arrivals.take();
            }
        }
    }

    /// Send socket `i`'s next datagram; whether it went. Payload first, then the timestamp,
    /// then the `send` call, nothing in between.
    fn send(&mut self, i: usize, intended: Option<Instant>, measured: bool) -> bool {
        let o = self.o;
        let s = &mut self.socks[i];
        let len = datagram::encode(
            &mut self.sbuf,
            o.seed,
            s.id,
            s.ledger.next_seq(),
            o.size,
            o.size_range,
        );
        loop {
            let t = Instant::now();
            match s.s.send(&self.sbuf[..len]) {
                Ok(_) => {
                    s.ledger.sent(t, intended, measured);
                    s.backoff = BACKOFF_MIN;
                    self.issued += u64::from(measured);
                    if measured {
                        self.tally.sent += 1;
                        if let Some(intended) = intended {
                            let lag = ns(t.saturating_duration_since(intended));
                            self.out.lag.saturating_record(lag);
                            // Nothing waits for a slot in UDP open loop: all lag is the
                            // generator's own (or its host's full send buffer).
                            self.out.gen_lag.saturating_record(lag);
                        }
                    }
                    return true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    s.blocked = true;
                    return false;
                }
                Err(e) => {
                    s.down_until = Some(t + s.backoff);
                    s.backoff = (s.backoff * 2).min(BACKOFF_MAX);
                    self.count_error(kind_of(&e), t);
                    return false;
                }
            }
        }
    }

    /// Read socket `i` until it would block, classifying every echo.
    fn read(&mut self, i: usize) {
        let mut errors = 0;
        loop {
            let r = self.rx.recv(&self.socks[i].s, &mut self.rbuf);
            // The contract: the response ends when the call that returned it returns.
            let t_end = Instant::now();
            match r {
                Ok((n, drops)) => {
                    if let Some(d) = drops {
                        self.socks[i].drops = d;
                    }
                    self.echo(i, n, t_end);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // ECONNREFUSED: an ICMP port unreachable for an earlier datagram.
                    self.count_error(kind_of(&e), t_end);
                    errors += 1;
                    if errors >= ERRORS_IN_A_ROW {
                        break;
                    }
                }
            }
        }
        if self.open.is_none() {
            self.fill(i, Instant::now());
        }
    }

    /// One echo of `n` bytes (in `rbuf`) on socket `i`, received at `t_end`.
    fn echo(&mut self, i: usize, n: usize, t_end: Instant) {
        let o = self.o;
        let d = &self.rbuf[..n];
        let id = self.socks[i].id;
        let seq = match datagram::header(d) {
            Some((conn, seq)) if conn == id => seq,
            // Not a datagram this socket sent: too short, or another connection's id.
            _ => return self.count_error(Kind::Mismatch, t_end),
        };
        match self.socks[i].ledger.echo(seq, t_end, o.timeout) {
            Echo::Answered { sent, reordered } => {
                if sent.measured {
                    self.tally.received += 1;
                    self.tally.reordered += u64::from(reordered);
                }
                if !o.no_verify && !datagram::verify(d, o.seed, id, seq, o.size, o.size_range) {
                    if sent.measured {
                        count(&mut self.out.errors, Kind::Mismatch);
                        self.intervals.error(t_end);
                    }
                    return;
                }
                self.record(&sent, t_end);
            }
            Echo::Duplicate { measured } => self.tally.duplicated += u64::from(measured),
            Echo::Late { measured, now_lost } => {
                if measured {
                    self.tally.late += 1;
                    self.tally.lost += u64::from(now_lost);
                }
            }
            Echo::Unknown => self.count_error(Kind::Mismatch, t_end),
        }
    }

    fn record(&mut self, d: &Sent, t_end: Instant) {
        let start = d.intended.unwrap_or(d.sent);
        let latency = ns(t_end.saturating_duration_since(start));
        if !d.measured {
            if t_end < self.go.warm_end {
                self.intervals.record(t_end, latency, None);
            }
            return;
        }
        let mut uncorrected = None;
        if d.intended.is_some() {
            let u = ns(t_end.saturating_duration_since(d.sent));
            self.out.uncorrected.saturating_record(u);
            uncorrected = Some(u);
        }
        self.out.requests += 1;
        self.out.last_completion = Some(t_end);
        if self.draining {
            // After the window: in the run's totals, but no 1 s interval of the `.hlog` is
            // past the window's end.
            self.out.corrected.saturating_record(latency);
            return;
        }
        record::completion(
            &mut self.out.corrected,
            &mut self.intervals,
            t_end,
            latency,
            uncorrected,
        );
    }

    fn count_error(&mut self, kind: Kind, now: Instant) {
        if self.measured(now) {
            count(&mut self.out.errors, kind);
            self.intervals.error(now);
        }
    }

    /// The run is over: the last timeouts, what is still in flight, the drops, the totals.
    fn finish(mut self) -> Outcome {
        let now = Instant::now();
        self.out.stopped_at = now;
        let last = self.go.end.map_or(now, |e| now.min(e));
        let mut own_drops = 0u64;
        for s in &mut self.socks {
            let (_, measured) = s.ledger.expire(now, self.o.timeout);
            self.tally.lost += measured;
            self.tally.in_flight += s.ledger.outstanding_measured();
            own_drops += u64::from(s.drops.wrapping_sub(s.drops_at_open));
        }
        if let (Some(end), Some(open)) = (self.go.end, &self.open)
            && !self.out.interrupted
        {
            self.out.unsent = open.arrivals.between(self.go.warm_end, end);
        }
        self.out.sent = self.tally.sent;
        self.out.udp = Some(self.tally.clone());
        self.out.own_rcvbuf_drops = (self.drops_known && self.window_open).then_some(own_drops);
        self.intervals.finish(last);
        let _ = self.tx.send((self.id, Msg::Done));
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drain_lasts_one_timeout_past_the_last_send_even_one_after_the_end() {
        let end = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(drained_by(end, None, ms(100)), end + ms(100));
        assert_eq!(drained_by(end, Some(end - ms(50)), ms(100)), end + ms(100));
        assert_eq!(drained_by(end, Some(end + ms(3)), ms(100)), end + ms(103));
    }
}
