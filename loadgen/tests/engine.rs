//! Engine behaviour against servers whose behaviour is known: latency lands where the server
//! put it, coordinated omission is corrected, errors are counted by kind, runs end on time.
//!
//! Time bounds here are liveness checks with generous slack, never speed claims.

mod common;

use std::time::{Duration, Instant};

use common::{Behavior, TestServer, dead_addr, options, run, run_within};
use loadgen::{Arrival, LoadError, SizeRange, Stop};

#[test]
fn fixed_delay_closed_loop_latency_sits_at_the_delay() {
    let delay = Duration::from_millis(5);
    let srv = TestServer::start(Behavior::Delay(delay));
    let mut o = options(srv.addr);
    o.connections = 4;
    let r = run(o);
    assert_eq!(r.errors.total, 0, "{:?}", r.errors);
    assert!(r.requests > 50, "{}", r.requests);
    let l = r.latency_us;
    // Correctness bounds: never below the delay, and within 3x of it.
    assert!(l.p50 >= 5_000.0 && l.p50 <= 15_000.0, "p50 {}", l.p50);
    assert!(l.p90 >= 5_000.0 && l.p90 <= 15_000.0, "p90 {}", l.p90);
    assert!(r.uncorrected_latency_us.is_none() && r.send_lag_us.is_none());
}

#[test]
fn stalls_show_in_corrected_but_not_uncorrected_latency() {
    let srv = TestServer::start(Behavior::Stall {
        stall: Duration::from_millis(100),
        every: Duration::from_millis(500),
    });
    let mut o = options(srv.addr);
    // One connection: each stall holds exactly one sent request, the rest wait in the queue
    // with their clocks running. That is the coordinated-omission case.
    o.connections = 1;
    o.rate = Some(500.0);
    o.duration = Some(Duration::from_secs(2));
    let r = run(o);
    let corrected = r.latency_us.p99;
    let uncorrected = r.uncorrected_latency_us.expect("open loop").p99;
    assert!(
        corrected >= 50_000.0,
        "corrected p99 {corrected} µs should show the 100 ms stall"
    );
    assert!(
        uncorrected < corrected / 4.0,
        "uncorrected p99 {uncorrected} µs should be far below corrected {corrected} µs"
    );
    assert!(r.send_lag_us.is_some() && r.target_rps == Some(500.0) && r.achieved_rps.is_some());
    assert!(r.uncorrected_histogram.is_some());
    // Requests queued behind the stall were not sent on time: the run says so.
    assert!(r.saturated, "queued requests must mark the run saturated");
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("waited for a free connection")),
        "{:?}",
        r.warnings
    );
}

#[test]
fn flipped_byte_counts_as_mismatch() {
    let srv = TestServer::start(Behavior::Flip);
    let mut o = options(srv.addr);
    o.duration = Some(Duration::from_millis(500));
    let r = run(o);
    assert!(r.errors.mismatch > 0, "{:?}", r.errors);
    assert_eq!(r.requests, 0);
}

#[test]
fn nothing_listening_fails_fast() {
    let o = options(dead_addr());
    let t = Instant::now();
    let e = loadgen::run(&o.validate().unwrap(), &Stop::new(), None).unwrap_err();
    assert!(matches!(e, LoadError::Refused { .. }), "{e}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

#[test]
fn reset_is_counted_and_the_run_ends_at_its_deadline() {
    let srv = TestServer::start(Behavior::Reset);
    let o = options(srv.addr);
    let t = Instant::now();
    let r = run(o);
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    assert!(r.errors.reset > 0, "{:?}", r.errors);
    assert_eq!(r.duration_s, 1.0);
}

#[test]
fn server_death_mid_run_is_counted_and_the_run_ends_at_its_deadline() {
    let srv = TestServer::start(Behavior::DieAt(Duration::from_millis(600)));
    let mut o = options(srv.addr);
    o.duration = Some(Duration::from_millis(1500));
    let t = Instant::now();
    let r = run(o);
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    assert!(r.requests > 0);
    assert!(
        r.errors.total > 0 && r.errors.reset + r.errors.other + r.errors.refused > 0,
        "{:?}",
        r.errors
    );
    assert_eq!(r.duration_s, 1.5);
    assert!(!r.interrupted);
}

#[test]
fn silent_server_times_out() {
    let srv = TestServer::start(Behavior::Silent);
    let mut o = options(srv.addr);
    o.timeout = Duration::from_millis(200);
    let r = run(o);
    assert!(r.errors.timeout > 0, "{:?}", r.errors);
}

#[test]
fn pipelined_variable_sizes_verify_across_threads() {
    let srv = TestServer::start(Behavior::Echo);
    let mut o = options(srv.addr);
    o.threads = 2;
    o.connections = 4;
    o.depth = 8;
    o.size_range = Some(SizeRange { min: 1, max: 3000 });
    o.duration = Some(Duration::from_millis(500));
    let r = run(o);
    assert_eq!(r.errors.total, 0, "{:?}", r.errors);
    // The merged histogram holds exactly the counted requests.
    assert_eq!(r.latency_histogram().unwrap().len(), r.requests);
}

#[test]
fn request_count_limit_is_exact() {
    let srv = TestServer::start(Behavior::Echo);
    let mut o = options(srv.addr);
    o.threads = 2;
    o.connections = 3;
    o.depth = 2;
    o.duration = None;
    o.requests = Some(777);
    let r = run(o);
    assert_eq!(r.requests, 777);
    assert!(r.duration_s > 0.0);
}

#[test]
fn connect_per_request_and_idle_connections() {
    let srv = TestServer::start(Behavior::Echo);
    let mut o = options(srv.addr);
    o.connect_per_request = true;
    o.idle = 3;
    o.duration = Some(Duration::from_millis(500));
    let r = run(o);
    assert!(r.requests > 0);
    assert_eq!(r.errors.total, 0, "{:?}", r.errors);
    let c = r.connect_us.expect("connect_us");
    assert!(c.p50 > 0.0 && c.p50 <= r.latency_us.p50.max(c.p50));
}

#[test]
fn poisson_open_loop_keeps_its_rate() {
    let srv = TestServer::start(Behavior::Echo);
    let mut o = options(srv.addr);
    o.rate = Some(400.0);
    o.arrival = Arrival::Poisson;
    let r = run(o);
    let achieved = r.achieved_rps.unwrap();
    // Poisson over one second: ±25% is a loose liveness bound, not a precision claim.
    assert!((300.0..=500.0).contains(&achieved), "{achieved}");
}

#[test]
fn stop_interrupts_promptly() {
    let srv = TestServer::start(Behavior::Echo);
    let mut o = options(srv.addr);
    o.duration = Some(Duration::from_secs(60));
    let stop = Stop::new();
    let s2 = stop.clone();
    let t = Instant::now();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        s2.stop();
    });
    let r = loadgen::run(&o.validate().unwrap(), &stop, None).unwrap();
    killer.join().unwrap();
    assert!(r.interrupted);
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(r.duration_s < 5.0 && r.duration_s > 0.0, "{}", r.duration_s);
}

#[test]
fn progress_is_reported() {
    let srv = TestServer::start(Behavior::Echo);
    let mut o = options(srv.addr);
    o.duration = Some(Duration::from_millis(2100));
    let seen = std::cell::Cell::new(0);
    let cb = |p: &loadgen::Progress| {
        assert!(p.interval_rps >= 0.0);
        seen.set(seen.get() + 1);
    };
    let r = loadgen::run(&o.validate().unwrap(), &Stop::new(), Some(&cb)).unwrap();
    assert!(r.requests > 0);
    assert!(seen.get() >= 2, "{}", seen.get());
}

#[test]
fn progress_goes_on_after_one_thread_has_finished_its_share() {
    // 5 requests over 2 threads at 4 req/s: one thread's share (2) is done about half a
    // second before the other's (3). Every interval must still be reported.
    let srv = TestServer::start(Behavior::Echo);
    let mut o = options(srv.addr);
    o.duration = None;
    o.requests = Some(5);
    o.rate = Some(4.0);
    o.threads = 2;
    o.warmup = Duration::ZERO;
    let last = std::cell::Cell::new(0);
    let cb = |p: &loadgen::Progress| last.set(p.requests);
    let r = loadgen::run(&o.validate().unwrap(), &Stop::new(), Some(&cb)).unwrap();
    assert_eq!(r.requests, 5);
    assert_eq!(last.get(), 5, "progress stopped before the last interval");
}

#[test]
fn request_count_run_gives_up_when_the_server_is_gone() {
    let srv = TestServer::start(Behavior::DieAt(Duration::from_millis(300)));
    let mut o = options(srv.addr);
    o.duration = None;
    o.requests = Some(u64::MAX / 2);
    o.timeout = Duration::from_millis(200);
    let r = run_within(o, Duration::from_secs(10));
    assert!(!r.interrupted, "did not give up by itself");
    assert!(
        r.warnings.iter().any(|w| w.starts_with("gave up")),
        "{:?}",
        r.warnings
    );
    assert!(r.errors.total > 0);
}

#[test]
fn stop_before_start_gives_an_empty_interrupted_report() {
    // A stop that comes before any connect is tried (Ctrl-C during start-up) is an interrupted
    // run, not a refused one: the CLI must exit 130 with a report, not 1 with "refused".
    let srv = TestServer::start(Behavior::Echo);
    for crr in [false, true] {
        let mut o = options(srv.addr);
        o.duration = Some(Duration::from_secs(60));
        o.connect_per_request = crr;
        let stop = Stop::new();
        stop.stop();
        let t = Instant::now();
        let r = loadgen::run(&o.validate().unwrap(), &stop, None)
            .unwrap_or_else(|e| panic!("crr {crr}: a stopped run must still report: {e}"));
        assert!(r.interrupted, "crr {crr}");
        assert_eq!(r.requests, 0, "crr {crr}");
        assert_eq!(r.errors.total, 0, "crr {crr}: {:?}", r.errors);
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    }
}

#[test]
fn slow_open_loop_request_count_run_does_not_give_up_between_sends() {
    // Sends 800 ms apart against a healthy server, with a give-up limit of 3 × 200 ms: the gaps
    // between scheduled sends are idle, not a stall, and must not end the run.
    let srv = TestServer::start(Behavior::Echo);
    let mut o = options(srv.addr);
    o.connections = 1;
    o.rate = Some(1.25);
    o.duration = None;
    o.requests = Some(3);
    o.timeout = Duration::from_millis(200);
    let t = Instant::now();
    let r = run(o);
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    assert!(
        !r.warnings.iter().any(|w| w.starts_with("gave up")),
        "{:?}",
        r.warnings
    );
    assert_eq!(r.errors.total, 0, "{:?}", r.errors);
    assert_eq!(r.requests, 3);
}

#[test]
fn slow_open_loop_request_count_run_still_gives_up_on_a_dead_server() {
    // The other side of the rule above: with sends 800 ms apart, a dead server must still end
    // the run, also with connect per request, where each attempt fails at once and nothing
    // stays outstanding between sends.
    for crr in [false, true] {
        let srv = TestServer::start(Behavior::DieAt(Duration::from_millis(300)));
        let mut o = options(srv.addr);
        o.connections = 1;
        o.rate = Some(1.25);
        o.duration = None;
        o.requests = Some(1_000_000);
        o.timeout = Duration::from_millis(200);
        o.connect_per_request = crr;
        let r = run_within(o, Duration::from_secs(15));
        assert!(!r.interrupted, "crr {crr}: did not give up by itself");
        assert!(
            r.warnings.iter().any(|w| w.starts_with("gave up")),
            "crr {crr}: {:?}",
            r.warnings
        );
    }
}

#[test]
fn a_close_that_arrives_with_the_last_echo_is_noticed_before_the_next_send() {
    // Each connection gets one echo with the server's FIN in the same segment, after which the
    // server reads and ignores. A client that misses the FIN sends its next request into the
    // half-closed connection and learns of the close only when that request times out; one that
    // notices it reconnects first, so nothing times out.
    let srv = TestServer::start(Behavior::EchoThenHalfClose);
    let mut o = options(srv.addr);
    o.connections = 1;
    o.timeout = Duration::from_millis(300);
    o.duration = Some(Duration::from_millis(1500));
    let r = run(o);
    assert!(r.requests > 0, "{}", r.requests);
    assert!(r.errors.other > 0, "the closes are counted: {:?}", r.errors);
    assert_eq!(r.errors.timeout, 0, "{:?}", r.errors);
}

#[test]
fn an_unreachable_rate_runs_at_the_generators_ceiling_ends_on_time_and_says_so() {
    // -R 5e7 on one connection used to complete a handful of requests, grow by hundreds of MB a
    // second and overrun its deadline (one entry queued per arrival, every due arrival handled
    // before the next poll). Now the owed requests are a count, the loop still does its I/O,
    // and the report says the rate was out of reach.
    let srv = TestServer::start(Behavior::Echo);
    let mut o = options(srv.addr);
    o.connections = 1;
    o.rate = Some(1e9);
    o.warmup = Duration::ZERO;
    let t = Instant::now();
    let r = run_within(o, Duration::from_secs(30));
    assert!(!r.interrupted, "did not end by itself");
    assert!(
        t.elapsed() < Duration::from_secs(6),
        "1 s run: {:?}",
        t.elapsed()
    );
    assert_eq!(r.duration_s, 1.0);
    assert!(r.requests > 0, "the connection was served");
    assert!(r.saturated);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("below 95% of the target") && w.contains("never sent")),
        "{:?}",
        r.warnings
    );
}

/// `busy_poll` with two connections (read directly between polls) keeps every rule the
/// sleeping generator keeps: latency where the server put it, a flipped byte is a mismatch, a
/// reset and a server's death are counted and the run still ends at its deadline, silence
/// times out, and it reports itself in the workload.
#[test]
fn busy_poll_keeps_the_rules_of_the_sleeping_generator() {
    let busy = |addr| {
        let mut o = options(addr);
        o.busy_poll = true;
        o
    };
    let srv = TestServer::start(Behavior::Delay(Duration::from_millis(5)));
    let r = run(busy(srv.addr));
    assert!(r.workload.busy_poll);
    assert_eq!(r.errors.total, 0, "{:?}", r.errors);
    assert!(r.requests > 50, "{}", r.requests);
    assert!(
        r.latency_us.p50 >= 5_000.0 && r.latency_us.p50 <= 15_000.0,
        "p50 {}",
        r.latency_us.p50
    );

    let srv = TestServer::start(Behavior::Flip);
    let r = run(busy(srv.addr));
    assert!(r.errors.mismatch > 0, "{:?}", r.errors);
    assert_eq!(r.requests, 0);

    let srv = TestServer::start(Behavior::Reset);
    let t = Instant::now();
    let r = run(busy(srv.addr));
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    assert!(r.errors.reset > 0, "{:?}", r.errors);

    let srv = TestServer::start(Behavior::DieAt(Duration::from_millis(600)));
    let mut o = busy(srv.addr);
    o.duration = Some(Duration::from_millis(1500));
    let t = Instant::now();
    let r = run(o);
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    assert!(r.requests > 0 && r.errors.total > 0, "{:?}", r.errors);
    assert_eq!(r.duration_s, 1.5);

    let srv = TestServer::start(Behavior::Silent);
    let mut o = busy(srv.addr);
    o.timeout = Duration::from_millis(200);
    let r = run(o);
    assert!(r.errors.timeout > 0, "{:?}", r.errors);
}

/// An open loop far above what the server can do: the requests owed since the warm-up are
/// served oldest first, so every completion inside the window was due in the warm-up. They
/// count, with their whole latency (the queue): before, the window reported no request at
/// all ("no request completed", 0 req/s) for a server that answered all along.
#[test]
fn an_open_loop_over_capacity_counts_what_completes_in_the_window() {
    // One connection answering each request 10 ms after it arrived: at most 100 req/s.
    let srv = TestServer::start(Behavior::Delay(Duration::from_millis(10)));
    let mut o = options(srv.addr);
    o.connections = 1;
    o.rate = Some(1_000.0);
    o.warmup = Duration::from_millis(300);
    o.duration = Some(Duration::from_millis(600));
    let r = run(o);
    // ≈ 60 in 600 ms; a fifth of that is a liveness bound on a loaded machine, not a speed.
    assert!(
        r.requests >= 12,
        "{} requests: {:?}",
        r.requests,
        r.warnings
    );
    assert!(r.saturated, "{:?}", r.warnings);
    assert_eq!(r.latency_histogram().unwrap().len(), r.requests);
    // Each counted request waited behind the warm-up's backlog (300 owed, 30 served).
    assert!(r.latency_us.p50 >= 100_000.0, "p50 {} µs", r.latency_us.p50);
}
