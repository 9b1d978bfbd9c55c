//! `cargo bench`: one echo round trip per iteration against every model that runs here, over
//! loopback, named `echo/<model>/<payload>`.
//!
//! Server start-up stays out of the timing (`iter_custom` times only the round trips, on a
//! connection opened beforehand). These numbers are for spotting regressions in one model
//! between commits on one machine; they are a single blocking client's latency, not a model
//! comparison under load: that is `iomodels load` / `run`'s job.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use servers::{Config, Model, Server};

fn echo(c: &mut Criterion) {
    let mut group = c.benchmark_group("echo");
    for model in Model::available() {
        let server = match Server::start(model, "127.0.0.1:0".parse().unwrap(), &Config::default())
        {
            Ok(s) => s,
            Err(e) => {
                eprintln!("echo/{model}: skipped: {e}");
                continue;
            }
        };
        for payload in [64usize, 512, 16 * 1024] {
            let mut stream = TcpStream::connect(server.local_addr()).expect("connect");
            stream.set_nodelay(true).unwrap();
            let out = vec![0xA5u8; payload];
            let mut back = vec![0u8; payload];
            group.throughput(Throughput::Bytes(payload as u64));
            group.bench_function(BenchmarkId::new(model.name(), payload), |b| {
                b.iter_custom(|iters| {
                    let t = Instant::now();
                    for _ in 0..iters {
                        stream.write_all(&out).unwrap();
                        stream.read_exact(&mut back).unwrap();
                    }
                    t.elapsed()
                })
            });
        }
        let _ = server.stop();
    }
    group.finish();
}

criterion_group!(benches, echo);
criterion_main!(benches);
