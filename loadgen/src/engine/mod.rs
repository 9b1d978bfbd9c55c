//! The engine: a coordinator on the caller's thread and one `mio` event loop per worker thread.
//!
//! Each worker owns its share of the connections, its histograms and its RNG; nothing on the hot
//! path is shared or locked. Workers talk to the coordinator over one `mpsc` channel, and only
//! at three moments: "ready" (everything made, connections up, so a dead target fails fast),
//! "here is the interval that just ended" (once a second: the interval histograms are *moved*
//! into the channel and replaced, which is how the `.hlog` gets 1 s intervals without a lock),
//! and "done" (the totals come back through `join`).
//!
//! A run is four steps, one module each: [`startup`] (spawn, hand-shake, the timeline), the
//! workers' event loops ([`mod@worker`]) while the coordinator [`collect`]s their intervals,
//! then [`assemble`] (merge, the saturation [`verdict`], the report). What the threads exchange
//! is in [`msg`]; a run's [`mode`] (pacing × carrier) is matched where it matters. Below the
//! worker: one connection's state ([`conn`]) and byte FIFO ([`pipe`]), open-loop arrival times
//! and the interval grid ([`schedule`]), the owed arrivals ([`arrivals`]), a worker's live 1 s
//! intervals ([`intervals`]), what one measured completion records ([`record`]), the give-up
//! clock of a request-count run ([`stall`]), and the classification of failures ([`errors`]).
//! UDP runs replace the TCP worker with the UDP worker ([`mod@udp`]) over the same machinery:
//! its datagrams' wire format and fates are [`datagram`], its receive call [`rxq`].
//!
//! This module is the entry ([`run`]) and the one histogram shape every thread records into, so
//! that merging is exact. It deliberately does not format, print or write files; it returns a
//! [`Report`].

mod arrivals;
mod assemble;
mod collect;
mod conn;
mod datagram;
mod errors;
mod intervals;
mod margin;
mod mode;
mod msg;
mod pipe;
mod record;
mod rxq;
mod schedule;
mod stall;
mod startup;
mod udp;
mod verdict;
mod worker;

use std::io;
use std::sync::mpsc;
use std::time::SystemTime;

use hdrhistogram::Histogram;
use mio::Poll;

use crate::report::Report;
use crate::workload::Workload;
use crate::{Hooks, LoadError, Progress, Stop};
use msg::Msg;

pub use record::Recorder;
pub use schedule::Schedule;

/// Whether a UDP echo server answers at `addr`: one header-only datagram (connection id
/// `u32::MAX`, sequence 0) from a fresh socket, the same probe every UDP load thread sends
/// before a run. `Ok(true)`: an echo came within `wait`; `Ok(false)`: silence (a UDP server
/// may simply not answer); `Err` with kind `ConnectionRefused`: an ICMP port unreachable came
/// back (nothing listens there), or another socket error. Blocks for at most `wait`.
///
/// For a caller that must choose among several addresses of a host name, as `load` does.
pub fn probe_udp(addr: std::net::SocketAddr, wait: std::time::Duration) -> io::Result<bool> {
    udp::probe(addr, wait)
}

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

/// Run a workload to completion (deadline, request count or `stop`), calling `progress` about
/// once a second from this thread, and return its report.
///
/// Fails only if the run cannot start: every first connection refused ([`LoadError::Refused`],
/// within about one connect attempt), no connection possible at all, or a worker thread that
/// cannot start ([`LoadError::Io`]: a run missing its share would measure a different load). A
/// `stop` during start-up is not a failure: the report covers what ran (possibly nothing) and is
/// marked `interrupted`. Failures during the run are counted in the report's `errors` and the
/// run still ends at its deadline.
pub fn run(
    w: &Workload,
    stop: &Stop,
    progress: Option<&dyn Fn(&Progress)>,
) -> Result<Report, LoadError> {
    let hooks = Hooks {
        progress,
        window: None,
    };
    run_with(w, stop, &hooks, Inject::REAL)
}

/// [`run`] with every hook: progress, and the edges of the measured window.
///
/// `iomodels run` uses the window hook to sample the server process's CPU time over exactly the
/// window the generator's own `client_cpu` covers. Errors and guarantees are those of [`run`].
pub fn run_with_hooks(w: &Workload, stop: &Stop, hooks: &Hooks) -> Result<Report, LoadError> {
    run_with(w, stop, hooks, Inject::REAL)
}

/// How a worker (by id) gets its poller. A parameter rather than a plain `Poll::new()` only so
/// that a test can make one thread's setup fail, which nothing else provokes reliably.
type NewPoll = fn(usize) -> io::Result<Poll>;

/// What a test can inject into the workers; [`Inject::REAL`] outside tests. Faults nothing else
/// provokes reliably: a thread whose setup fails, a generator that sends late.
#[derive(Clone, Copy)]
struct Inject {
    new_poll: NewPoll,
    /// Busy-wait this long before every open-loop send: a generator that cannot keep up, on
    /// any machine, for the saturation rule's "the generator sent late".
    late_by: std::time::Duration,
}

impl Inject {
    const REAL: Inject = Inject {
        new_poll: |_| Poll::new(),
        late_by: std::time::Duration::ZERO,
    };
}

fn run_with(w: &Workload, stop: &Stop, hooks: &Hooks, inject: Inject) -> Result<Report, LoadError> {
    let threads = w.effective_threads();
    let (tx, rx) = mpsc::channel::<(usize, Msg)>();
    std::thread::scope(|s| {
        let launched = startup::launch(s, w, stop, tx, &rx, inject)?;
        let go = startup::timeline(w);
        let wall_t0 = SystemTime::now() + startup::START_LEAD;
        launched.go(go);
        let udp = w.options().proto == crate::Proto::Udp;
        let collected = collect::collect(&rx, threads, go, hooks, udp);
        let mut outcomes = Vec::with_capacity(threads);
        for h in launched.handles {
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
        Ok(assemble::assemble(w, go, wall_t0, &outcomes, collected))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use std::time::{Duration, Instant};

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
            Inject {
                new_poll,
                ..Inject::REAL
            },
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

    /// An echo server on its own threads, for as long as the test process lives.
    fn echo_server() -> std::net::SocketAddr {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let _ = s.set_nodelay(true);
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    #[test]
    fn a_generator_that_sends_late_is_marked_saturated_and_says_so() {
        // Every send 800 µs late at 200 req/s: the lag limit is max(25 µs, 10 % of the 5 ms
        // gap, 5 % of the corrected p99) = 500 µs here unless the p99 passes 10 ms. Before
        // issue 18 the limit was 1 ms and this run was not flagged: its lag went into the
        // server's latency unremarked. Ten connections, so that even on a busy machine a send
        // finds a free one (a queued send is rule 3's, not the generator's).
        let mut o = crate::Options::new(echo_server());
        o.connections = 10;
        o.rate = Some(200.0);
        o.duration = Some(Duration::from_millis(1000));
        o.warmup = Duration::from_millis(200);
        let t = Instant::now();
        let r = sent_late(o);
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        assert_saturated_by_lag(&r);
    }

    /// A run of `o` whose every send the hook makes 800 µs late.
    fn sent_late(o: crate::Options) -> Report {
        run_with(
            &o.validate().unwrap(),
            &Stop::new(),
            &Hooks::default(),
            Inject {
                late_by: Duration::from_micros(800),
                ..Inject::REAL
            },
        )
        .unwrap()
    }

    /// `r` (a [`sent_late`] run) shows the lateness and is saturated for it, saying so.
    fn assert_saturated_by_lag(r: &Report) {
        let lag = r.send_lag_us.as_ref().unwrap();
        assert!(lag.p50 >= 800.0, "the hook made every send late: {lag:?}");
        assert!(r.saturated, "{:?}", r.warnings);
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("saturated: the generator sent late")),
            "{:?}",
            r.warnings
        );
    }

    /// A UDP echo server on its own thread, for as long as the test process lives.
    fn udp_echo_server() -> std::net::SocketAddr {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = s.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(&buf[..n], from);
            }
        });
        addr
    }

    #[test]
    fn a_udp_generator_that_sends_late_is_saturated() {
        // The same injected lateness as for TCP: UDP open loop is judged by the same rule, on
        // what it sent (a datagram the server lost was still sent on time).
        let mut o = crate::Options::new(udp_echo_server());
        o.proto = crate::Proto::Udp;
        o.connections = 2;
        o.rate = Some(200.0);
        o.duration = Some(Duration::from_millis(1000));
        o.warmup = Duration::from_millis(200);
        o.timeout = Duration::from_millis(500);
        let r = sent_late(o);
        assert_saturated_by_lag(&r);
        let u = r.udp.unwrap();
        assert!(u.sent >= 150, "{u:?}");
    }
}
