//! `cargo bench -p loadgen`: the load generator's own bookkeeping per request, which every
//! latency it reports carries.
//!
//! `loadgen/record` times recording one completed request's latency the way a closed-loop
//! worker does (the run's total histogram plus the live 1 s interval, through the worker's own
//! code); `loadgen/schedule/{uniform,poisson}` times computing the next open-loop intended send
//! time. These are for catching regressions in the generator between commits; they are not the
//! whole cost of a request (no system calls, no clock reads, no event loop): `client_cpu` in a
//! `load` result is.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use loadgen::{Arrival, Recorder, Schedule};

fn record(c: &mut Criterion) {
    let mut group = c.benchmark_group("loadgen");
    group.throughput(Throughput::Elements(1));
    let start = Instant::now();
    let mut r = Recorder::new(start);
    // A fixed completion time inside the first interval: the once-a-second hand-over is not a
    // per-request cost. Latencies spread over 20 µs..1.3 ms so they land in many buckets.
    let t = start + Duration::from_millis(1);
    let mut latency = 20_000u64;
    group.bench_function("record", |b| {
        b.iter(|| {
            latency = 20_000 + (latency * 7 + 1) % 1_280_000;
            r.record(black_box(t), black_box(latency));
        })
    });
    black_box(r.recorded());
    group.finish();
}

fn schedule(c: &mut Criterion) {
    let mut group = c.benchmark_group("loadgen/schedule");
    group.throughput(Throughput::Elements(1));
    for (name, arrival) in [("uniform", Arrival::Uniform), ("poisson", Arrival::Poisson)] {
        let mut s = Schedule::new(Instant::now(), 20_000.0, Duration::ZERO, arrival, 1);
        group.bench_function(name, |b| {
            b.iter(|| {
                s.advance();
                black_box(s.next_send())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, record, schedule);
criterion_main!(benches);
