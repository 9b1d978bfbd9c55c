//! `cargo bench --bench pipelined`: per iteration, 1,000 messages of 64 B written ahead on one
//! connection, timed until the last echo byte is read, against every model that runs here;
//! named `pipelined/<model>`, reported in messages per second.
//!
//! Where `echo/<model>/<payload>` times one round trip at a time, this times a model draining a
//! pipelined burst: many echoes per wake-up. The server starts once per model, outside the
//! timing (`iter_custom`). A reader thread drains the echo while the batch is written, because
//! the server reads nothing more while its 16 KiB per connection is unsent: a client that
//! wrote 64,000 bytes before reading could deadlock once both sides' socket buffers filled.
//! Like `echo`, this is for spotting regressions in one model between commits, not a model
//! comparison under load (`iomodels load` / `run`).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use servers::{Config, Model, Server};

const MESSAGES: usize = 1_000;
const SIZE: usize = 64;

fn pipelined(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipelined");
    group.throughput(Throughput::Elements(MESSAGES as u64));
    // Message i is 64 bytes of the value i mod 251, so a lost or reordered chunk shows.
    let batch: Vec<u8> = (0..MESSAGES)
        .flat_map(|i| [(i % 251) as u8; SIZE])
        .collect();
    for model in Model::available() {
        let server = match Server::start(model, "127.0.0.1:0".parse().unwrap(), &Config::default())
        {
            Ok(s) => s,
            Err(e) => {
                eprintln!("pipelined/{model}: skipped: {e}");
                continue;
            }
        };
        let mut stream = TcpStream::connect(server.local_addr()).expect("connect");
        stream.set_nodelay(true).unwrap();
        let (done_tx, done) = mpsc::channel::<Instant>();
        let reader = {
            let mut stream = stream.try_clone().expect("clone the stream");
            let expected = batch.clone();
            thread::spawn(move || {
                let mut back = vec![0u8; expected.len()];
                // One batch per round; the writer sends the next only after this one's stamp,
                // so batches never overlap. Ends at the server's FIN (after ours).
                while stream.read_exact(&mut back).is_ok() {
                    // Stamped before the check: comparing is not the server's time.
                    let end = Instant::now();
                    assert!(
                        back == expected,
                        "pipelined/{model}: echo differs from batch"
                    );
                    if done_tx.send(end).is_err() {
                        break;
                    }
                }
            })
        };
        group.bench_function(model.name(), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    stream.write_all(&batch).unwrap();
                    let end = done.recv().expect("the echo reader stopped");
                    total += end.duration_since(start);
                }
                total
            })
        });
        let _ = stream.shutdown(Shutdown::Write);
        reader.join().expect("echo reader panicked");
        let _ = server.stop();
    }
    group.finish();
}

criterion_group!(benches, pipelined);
criterion_main!(benches);
