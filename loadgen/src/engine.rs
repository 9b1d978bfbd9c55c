//! The engine: a coordinator on the caller's thread and one `mio` event loop per worker thread.
//!
//! Each worker owns its share of the connections, its histograms and its RNG; nothing on the hot
//! path is shared or locked. Workers talk to the coordinator over one `mpsc` channel, and only
//! at three moments: "my connections are up" (readiness, so a dead target fails fast), "here is
//! the interval that just ended" (once a second: the interval histograms are *moved* into the
//! channel and replaced, which is how the `.hlog` gets 1 s intervals without a lock), and "done"
//! (the totals come back through `join`).
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
//! This module deliberately does not format, print or write files; it returns a [`Report`].

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::report::{self, Cpu, Errors, Interval, LatencySummary, Report, SCHEMA};
use crate::rng::Rng;
use crate::timer::Timer;
use crate::workload::{Arrival, Limit, Workload};
use crate::{LoadError, Progress, Stop, cpu, host};

/// Idle connections get tokens from here up, so one `usize` tells the two kinds apart.
const IDLE_BASE: usize = 1 << 30;
/// The open-loop send timer's token, just below the idle range.
const TIMER: Token = Token(IDLE_BASE - 1);
/// How often a worker scans its connections for timeouts and due reconnects.
const TICK: Duration = Duration::from_millis(10);
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
const SECOND: Duration = Duration::from_secs(1);
/// Whether the poller reports new data on a socket that was not read until `WouldBlock`. It
/// does with epoll (`EPOLLET` "can generate multiple events upon receipt of multiple chunks of
/// data", epoll(7)) and kqueue (`EV_CLEAR` fires again on new data); mio's Windows backend
/// re-arms a socket only after an operation returned `WouldBlock`, so there the engine always
/// reads until it would block. Where it holds, a connection whose every sent byte has come back
/// is not read again until its next event: no `read` → `EAGAIN` per request, a third of a closed
/// loop's system calls.
const EVENT_ON_EVERY_ARRIVAL: bool = cfg!(any(
    target_os = "linux",
    target_os = "android",
    target_vendor = "apple",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
));
/// Highest trackable latency: one hour in ns. `saturating_record` clamps anything above.
const HIGHEST_NS: u64 = 3_600_000_000_000;

/// A latency histogram: nanoseconds, 3 significant digits.
pub(crate) fn new_hist() -> Histogram<u64> {
    // Constant, valid bounds: this cannot fail.
    Histogram::new_with_bounds(1, HIGHEST_NS, 3).expect("constant histogram bounds are valid")
}

/// Merge per-thread histograms. Every histogram here comes from [`new_hist`], so their bounds
/// match and `add` cannot fail.
pub(crate) fn merge(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    into.add(from).expect("histograms share bounds");
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Refused,
    Reset,
    Timeout,
    Mismatch,
    AddrUnavailable,
    Other,
}

fn kind_of(e: &io::Error) -> Kind {
    use io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => Kind::Refused,
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => Kind::Reset,
        K::TimedOut => Kind::Timeout,
        K::AddrNotAvailable => Kind::AddrUnavailable,
        _ => Kind::Other,
    }
}

fn count(errors: &mut Errors, k: Kind) {
    errors.total += 1;
    match k {
        Kind::Refused => errors.refused += 1,
        Kind::Reset => errors.reset += 1,
        Kind::Timeout => errors.timeout += 1,
        Kind::Mismatch => errors.mismatch += 1,
        Kind::AddrUnavailable => errors.addr_unavailable += 1,
        Kind::Other => errors.other += 1,
    }
}

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
}

/// The shared timeline, fixed by the coordinator once every worker is connected.
#[derive(Clone, Copy)]
struct Go {
    t0: Instant,
    warm_end: Instant,
    end: Option<Instant>,
}

/// Interval histograms merged across threads: corrected, uncorrected, threads reported.
type Merged = (Histogram<u64>, Option<Histogram<u64>>, usize);

/// What one worker is responsible for.
struct Plan {
    id: usize,
    conns: usize,
    idle: usize,
    share: Option<u64>,
    rate: Option<f64>,
    phase: f64,
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
/// within about one connect attempt), or no connection possible at all. Failures during the run
/// are counted in the report's `errors` and the run still ends at its deadline.
pub fn run(
    w: &Workload,
    stop: &Stop,
    progress: Option<&dyn Fn(&Progress)>,
) -> Result<Report, LoadError> {
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
                phase: o.rate.map_or(0.0, |r| id as f64 / r),
                cpu: o.cpus.as_ref().map(|c| c[id % c.len()]),
            };
            let (gtx, grx) = mpsc::channel::<Go>();
            let tx = tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("loadgen-{id}"))
                .spawn_scoped(s, move || worker(w, plan, stop, tx, grx));
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
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if connected == 0 {
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
        while done < threads {
            let now = Instant::now();
            if cpu_start.is_none() && now >= warm_end {
                cpu_start = Some(cpu::process_times());
            }
            let wait = if cpu_start.is_none() {
                warm_end - now
            } else {
                Duration::from_millis(250)
            };
            match rx.recv_timeout(wait) {
                Ok((
                    _,
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
                        .or_insert_with(|| (new_hist(), None, 0));
                    merge(&mut slot.0, &corrected);
                    if let Some(u) = uncorrected {
                        merge(slot.1.get_or_insert_with(new_hist), &u);
                    }
                    slot.2 += 1;
                    if slot.2 == threads
                        && let Some(p) = progress
                    {
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
                Ok((_, Msg::Done)) => done += 1,
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let cpu_end = cpu::process_times();

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
            server_cpu: None,
            server: None,
            saturated,
            interrupted,
            warnings,
            histogram: report::encode(&corrected),
            uncorrected_histogram: open.then(|| report::encode(&uncorrected)),
            intervals,
            measured_start: Some(wall_t0 + o.warmup),
        })
    })
}

/// The 1 s grid of intervals, aligned on the start of the measured window: interval `k` ends at
/// `grid(warm_end, k + 1)`. Negative `k` are warm-up intervals (progress only).
fn grid(warm_end: Instant, k: i64) -> Instant {
    if k >= 0 {
        warm_end + SECOND * k as u32
    } else {
        warm_end
            .checked_sub(SECOND * k.unsigned_abs() as u32)
            .unwrap_or(warm_end)
    }
}

/// Bytes of one connection that are queued, sent or awaiting their echo, as one FIFO.
///
/// `buf[head..]` holds stream bytes from offset `echoed` to `queued`; `sent` is how far writes
/// got. An echo must equal the oldest unechoed bytes, which is how pipelined responses are
/// checked byte for byte without per-request buffers.
#[derive(Default)]
struct Pipe {
    buf: Vec<u8>,
    head: usize,
    echoed: u64,
    sent: u64,
    queued: u64,
    reqs: VecDeque<Req>,
    /// Index in `reqs` of the first request whose first byte has not been written yet.
    unstamped: usize,
}

struct Req {
    first: u64,
    end: u64,
    /// Open loop: the schedule's time for this request.
    intended: Option<Instant>,
    /// Timestamp taken right before the write (or, connect per request, the connect) that
    /// sent its first byte.
    sent: Option<Instant>,
    /// When it was handed to its connection: the request timeout counts from here.
    dispatched: Instant,
    measured: bool,
    /// Open loop: it found every connection busy and waited in the thread's queue.
    queued: bool,
}

impl Pipe {
    fn clear(&mut self) {
        self.buf.clear();
        self.head = 0;
        self.reqs.clear();
        self.unstamped = 0;
        self.echoed = 0;
        self.sent = 0;
        self.queued = 0;
    }

    fn unsent(&self) -> bool {
        self.sent < self.queued
    }

    /// Mark every request whose first byte is now written with `t`, the pre-write timestamp.
    fn stamp(&mut self, t: Instant) {
        while let Some(r) = self.reqs.get_mut(self.unstamped) {
            if r.first >= self.sent {
                break;
            }
            r.sent = Some(t);
            self.unstamped += 1;
        }
    }

    /// Account for `data` just read; false if it is not the echo of what was sent.
    fn take_echo(&mut self, data: &[u8], verify: bool) -> bool {
        let n = data.len();
        if self.echoed + n as u64 > self.sent {
            return false;
        }
        if verify && self.buf[self.head..self.head + n] != *data {
            return false;
        }
        self.head += n;
        self.echoed += n as u64;
        if self.head == self.buf.len() {
            self.buf.clear();
            self.head = 0;
        } else if self.head >= 64 * 1024 && self.head * 2 >= self.buf.len() {
            // Compact rarely and only when most of the buffer is dead, so the memmove is
            // amortised over at least as many bytes as it moves.
            self.buf.drain(..self.head);
            self.head = 0;
        }
        true
    }
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

/// Open-loop arrival times for one worker: intended times are computed from `t0` in f64 seconds
/// so rounding never accumulates into drift.
struct Schedule {
    t0: Instant,
    at: f64,
    next: Instant,
    mean: f64,
    arrival: Arrival,
    rng: Rng,
}

impl Schedule {
    fn new(t0: Instant, rate: f64, phase: f64, arrival: Arrival, seed: u64) -> Self {
        let mut s = Self {
            t0,
            at: phase,
            next: t0,
            mean: 1.0 / rate,
            arrival,
            rng: Rng::new(seed),
        };
        if arrival == Arrival::Poisson {
            s.at = s.rng.exp(s.mean);
        }
        s.next = t0 + Duration::from_secs_f64(s.at);
        s
    }

    fn advance(&mut self) {
        self.at += match self.arrival {
            Arrival::Uniform => self.mean,
            Arrival::Poisson => self.rng.exp(self.mean),
        };
        self.next = self.t0 + Duration::from_secs_f64(self.at);
    }
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
    out: Outcome,
    iv_corrected: Histogram<u64>,
    iv_uncorrected: Histogram<u64>,
    iv_errors: u64,
    iv_index: i64,
    next_boundary: Instant,
    tx: mpsc::Sender<(usize, Msg)>,
    id: usize,
}

fn worker(
    w: &Workload,
    plan: Plan,
    stop: &Stop,
    tx: mpsc::Sender<(usize, Msg)>,
    go: mpsc::Receiver<Go>,
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
    let poll = match Poll::new() {
        Ok(p) => p,
        Err(e) => {
            ready(0, 0, Some(e));
            return None;
        }
    };

    // Connect up front with blocking connects: simple, and a refused first connect tells us at
    // once that nothing listens, so the rest are not even tried.
    let (mut connected, mut refused, mut first_error) = (0, 0, None::<io::Error>);
    let mut give_up = false;
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
    let budget = || {
        let left = budget_end.saturating_duration_since(Instant::now());
        (!left.is_zero() && !stop.is_stopped()).then_some(left)
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
        } else if let Some(left) = budget().filter(|_| !give_up) {
            match connect_blocking(o.addr, left).and_then(|mut s| {
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
                    give_up = i == 0;
                    note(e, &mut refused, &mut first_error);
                }
            }
        }
        conns.push(c);
    }
    if o.connect_per_request && plan.conns > 0 {
        // One probe so a dead target fails fast here too; closed again at once.
        match std::net::TcpStream::connect_timeout(&o.addr, budget().unwrap_or(o.timeout)) {
            Ok(_) => connected += 1,
            Err(e) => {
                give_up = true;
                note(e, &mut refused, &mut first_error);
            }
        }
    }
    let mut idle = Vec::with_capacity(plan.idle);
    for j in 0..plan.idle {
        let Some(left) = budget().filter(|_| !give_up) else {
            warnings.push(format!(
                "{} idle connections were not opened in time",
                plan.idle - j
            ));
            break;
        };
        // Registered for READABLE only: an idle connection is never written, so the only
        // events it can produce are a close or an error from the server.
        match connect_blocking(o.addr, left).and_then(|mut s| {
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
    let first_index = -(o.warmup.as_nanos().div_ceil(SECOND.as_nanos()) as i64);
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
        iv_corrected: new_hist(),
        iv_uncorrected: new_hist(),
        iv_errors: 0,
        iv_index: first_index,
        next_boundary: grid(go.warm_end, first_index + 1),
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
        // good. Three timeouts without a single completion is "gone", not "slow".
        if wk.share.is_some() && now >= go.warm_end {
            let since = wk
                .out
                .last_completion
                .unwrap_or(go.warm_end)
                .max(go.warm_end);
            if now.saturating_duration_since(since) > 3 * wk.timeout {
                wk.out.warnings.push(format!(
                    "gave up: no request completed for {:?} (3 × --timeout)",
                    3 * wk.timeout
                ));
                break;
            }
        }
        wk.roll(now);
        if now >= next_tick {
            wk.maintain(now);
            next_tick = now + TICK;
        }
        if let Some(s) = schedule.as_mut() {
            while s.next <= now {
                let t = s.next;
                s.advance();
                wk.arrival(t, now);
            }
        }
        let mut wake = next_tick.min(wk.next_boundary);
        if let Some(e) = go.end {
            wake = wake.min(e);
        }
        let mut timeout = wake.saturating_duration_since(now);
        let mut spinning = false;
        if let Some(s) = &schedule {
            let d = s.next.saturating_duration_since(now);
            if d < timeout && !timer.as_mut().is_some_and(|t| t.arm(s.next, d)) {
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
                    if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                        wk.read(t);
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
    wk.roll(last);
    wk.send_interval();
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

    fn send_interval(&mut self) {
        let corrected = std::mem::replace(&mut self.iv_corrected, new_hist());
        let uncorrected = self
            .open
            .then(|| std::mem::replace(&mut self.iv_uncorrected, new_hist()));
        let errors = std::mem::take(&mut self.iv_errors);
        let _ = self.tx.send((
            self.id,
            Msg::Interval {
                index: self.iv_index,
                corrected,
                uncorrected,
                errors,
            },
        ));
    }

    /// Close every interval that ended at or before `t` and hand it to the coordinator.
    fn roll(&mut self, t: Instant) {
        while t >= self.next_boundary {
            self.send_interval();
            self.iv_index += 1;
            self.next_boundary = grid(self.go.warm_end, self.iv_index + 1);
        }
    }

    fn fail(&mut self, i: usize, kind: Kind, now: Instant) {
        let c = &mut self.conns[i];
        if let Some(mut s) = c.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        let lost = c.pipe.reqs.iter().filter(|r| r.measured).count() as u64;
        self.issued -= lost;
        c.pipe.clear();
        c.epoch = c.epoch.wrapping_add(1);
        c.state = State::Down {
            retry_at: now + c.backoff,
        };
        c.backoff = (c.backoff * 2).min(BACKOFF_MAX);
        if now >= self.go.warm_end {
            count(&mut self.out.errors, kind);
            self.iv_errors += 1;
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
        while self.conns[i].pipe.reqs.len() < self.depth && self.budget_ok(measured) {
            if measured {
                self.issued += 1;
            }
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
        while let Some((i, epoch)) = self.free.pop_front() {
            let c = &self.conns[i];
            let usable = c.epoch == epoch
                && if self.crr {
                    c.state == State::Free
                } else {
                    c.state == State::Open && c.pipe.reqs.len() < self.depth
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
        let p = &mut self.conns[i].pipe;
        let at = p.buf.len();
        p.buf.resize(at + len, 0);
        self.rng.fill(&mut p.buf[at..]);
        p.reqs.push_back(Req {
            first: p.queued,
            end: p.queued + len as u64,
            intended,
            sent: None,
            dispatched: now,
            measured,
            queued,
        });
        p.queued += len as u64;
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
            let buf = &p.buf[p.head + (p.sent - p.echoed) as usize..];
            // The contract: timestamp immediately before the write, nothing in between.
            let t = Instant::now();
            match s.write(buf) {
                Ok(0) => return self.fail(i, Kind::Other, t),
                Ok(n) => {
                    p.sent += n as u64;
                    p.stamp(t);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(i, kind_of(&e), t),
            }
        }
    }

    /// Connect per request: the latency starts right before `connect`.
    fn connect_for_request(&mut self, i: usize) {
        let t = Instant::now();
        match TcpStream::connect(self.addr) {
            Ok(mut s) => {
                if let Err(e) = self.poll.registry().register(
                    &mut s,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    return self.fail(i, kind_of(&e), t);
                }
                let c = &mut self.conns[i];
                for r in c.pipe.reqs.iter_mut() {
                    r.sent = Some(t);
                }
                c.pipe.unstamped = c.pipe.reqs.len();
                c.stream = Some(s);
                c.state = State::Connecting { since: t };
            }
            Err(e) => self.fail(i, kind_of(&e), t),
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
            if self.conns[i].pipe.reqs.front().is_some_and(|r| r.measured) {
                self.out.connect.saturating_record(ns(now - since));
            }
            self.flush(i);
        } else {
            self.became_ready(i, now);
        }
    }

    fn read(&mut self, i: usize) {
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
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.fail(i, kind_of(&e), t_end),
            };
            if !self.conns[i].pipe.take_echo(&self.rbuf[..n], self.verify) {
                return self.fail(i, Kind::Mismatch, t_end);
            }
            // Nothing in flight any more: no byte can arrive before the next send, whose echo
            // brings its own event (see EVENT_ON_EVERY_ARRIVAL).
            let caught_up = EVENT_ON_EVERY_ARRIVAL && {
                let p = &self.conns[i].pipe;
                p.echoed == p.sent
            };
            let mut done = 0;
            loop {
                let p = &mut self.conns[i].pipe;
                let Some(front) = p.reqs.front() else { break };
                if front.end > p.echoed {
                    break;
                }
                let Some(req) = p.reqs.pop_front() else { break };
                p.unstamped = p.unstamped.saturating_sub(1);
                self.record(&req, t_end);
                done += 1;
            }
            if done > 0 {
                self.conns[i].backoff = BACKOFF_MIN;
                if self.crr {
                    self.close_clean(i);
                }
                if self.open {
                    for _ in 0..done {
                        self.slot_free(i, t_end);
                    }
                } else {
                    self.fill(i, t_end);
                }
                if self.crr || self.conns[i].state != State::Open {
                    return;
                }
            }
            if caught_up {
                return;
            }
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
                self.roll(t_end);
                self.iv_corrected.saturating_record(latency);
            }
            return;
        }
        self.roll(t_end);
        self.out.corrected.saturating_record(latency);
        self.iv_corrected.saturating_record(latency);
        if let Some(intended) = req.intended {
            let uncorrected = ns(t_end.saturating_duration_since(sent));
            let lag = ns(sent.saturating_duration_since(intended));
            self.out.uncorrected.saturating_record(uncorrected);
            self.iv_uncorrected.saturating_record(uncorrected);
            self.out.lag.saturating_record(lag);
            if !req.queued {
                self.out.gen_lag.saturating_record(lag);
            }
        }
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
                    if c.pipe.reqs.front().is_some_and(|r| {
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
        match TcpStream::connect(self.addr) {
            Ok(mut s) => {
                if let Err(e) = self.poll.registry().register(
                    &mut s,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    return self.fail(i, kind_of(&e), now);
                }
                let c = &mut self.conns[i];
                c.stream = Some(s);
                c.state = State::Connecting { since: now };
            }
            Err(e) => self.fail(i, kind_of(&e), now),
        }
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
        let now = Instant::now();
        if self.measured(now) {
            count(&mut self.out.errors, kind);
            self.iv_errors += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn pipe_stamps_and_verifies() {
        let mut p = Pipe::default();
        let t = Instant::now();
        for _ in 0..2 {
            let at = p.buf.len();
            p.buf.extend_from_slice(&[1, 2, 3, 4]);
            p.reqs.push_back(Req {
                first: at as u64,
                end: at as u64 + 4,
                intended: None,
                sent: None,
                dispatched: t,
                measured: true,
                queued: false,
            });
            p.queued += 4;
        }
        p.sent = 5; // a partial write: request 2's first byte went out
        p.stamp(t);
        assert_eq!(p.unstamped, 2);
        assert!(p.take_echo(&[1, 2, 3], true));
        assert!(!p.take_echo(&[4, 1, 9], true), "more than was sent");
        assert!(!p.take_echo(&[9], true), "flipped byte");
        assert!(p.take_echo(&[4, 1], true));
        assert_eq!(p.echoed, 5);
    }

    #[test]
    fn split_covers_total() {
        assert_eq!(
            (0..3).map(|i| split(10, 3, i)).collect::<Vec<_>>(),
            vec![4, 3, 3]
        );
    }
}
