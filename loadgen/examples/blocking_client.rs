//! A plain thread-per-connection blocking echo client: the kind most echo benchmarks use.
//!
//! It exists as the baseline `scripts/bench-clients.sh` compares the `mio` engine against, so it
//! is deliberately naive (one OS thread per connection, `write_all` then `read_exact`, fixed
//! size, no latency histogram, no verification). It prints one JSON line:
//! `{"requests", "throughput_rps", "client_cpu": {"user_s", "system_s", "us_per_request"}}`,
//! counting only after a warm-up, CPU measured the same way as `client_cpu` in the reports.
//!
//! Usage: `blocking_client ADDR [-c CONNECTIONS=50] [-s SIZE=512] [-t SECONDS=5] [--warmup SECONDS=1]`

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut addr = None;
    let (mut conns, mut size, mut secs, mut warmup) = (50usize, 512usize, 5.0f64, 1.0f64);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().expect("flag needs a value").clone();
        match a.as_str() {
            "-c" => conns = val().parse().expect("-c N"),
            "-s" => size = val().parse().expect("-s BYTES"),
            "-t" => secs = val().parse().expect("-t SECONDS"),
            "--warmup" => warmup = val().parse().expect("--warmup SECONDS"),
            other => addr = Some(other.to_owned()),
        }
    }
    let Some(addr) = addr else {
        eprintln!("usage: blocking_client ADDR [-c N] [-s BYTES] [-t SECONDS] [--warmup SECONDS]");
        std::process::exit(2);
    };

    let stop = Arc::new(AtomicBool::new(false));
    // One counter per thread: nothing shared on the hot path but a cache line each.
    let counters: Vec<Arc<AtomicU64>> = (0..conns).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let mut threads = Vec::new();
    for (i, counter) in counters.iter().enumerate() {
        let (stop, counter, addr) = (stop.clone(), counter.clone(), addr.clone());
        threads.push(std::thread::spawn(move || {
            let mut s = TcpStream::connect(&addr).unwrap_or_else(|e| {
                eprintln!("blocking_client: connect {addr}: {e}");
                std::process::exit(1);
            });
            s.set_nodelay(true).ok();
            // Bounded reads so a stalled server cannot keep the client past its duration.
            s.set_read_timeout(Some(Duration::from_secs(1))).ok();
            let payload: Vec<u8> = (0..size).map(|b| (b + i) as u8).collect();
            let mut back = vec![0u8; size];
            while !stop.load(Ordering::Relaxed) {
                if s.write_all(&payload).is_err() || s.read_exact(&mut back).is_err() {
                    break;
                }
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let total = |c: &[Arc<AtomicU64>]| c.iter().map(|x| x.load(Ordering::Relaxed)).sum::<u64>();
    std::thread::sleep(Duration::from_secs_f64(warmup));
    let (n0, cpu0) = (
        total(&counters),
        loadgen::process_cpu_times().expect("cpu times"),
    );
    std::thread::sleep(Duration::from_secs_f64(secs));
    let (n1, cpu1) = (
        total(&counters),
        loadgen::process_cpu_times().expect("cpu times"),
    );
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let requests = n1 - n0;
    let (user, system) = (
        (cpu1.0 - cpu0.0).as_secs_f64(),
        (cpu1.1 - cpu0.1).as_secs_f64(),
    );
    let per = if requests == 0 {
        0.0
    } else {
        (user + system) * 1e6 / requests as f64
    };
    println!(
        "{{\"requests\": {requests}, \"throughput_rps\": {:.1}, \"client_cpu\": {{\"user_s\": {user:.3}, \"system_s\": {system:.3}, \"us_per_request\": {per:.3}}}}}",
        requests as f64 / secs
    );
}
