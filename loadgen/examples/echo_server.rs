//! A minimal thread-per-connection echo server: a target for comparing clients that shares no
//! code with the `servers` crate, so a client comparison can be repeated against a server that
//! is not one of the project's models.
//!
//! `scripts/bench-clients.sh` loads `iomodels serve epoll` by default and builds this example
//! so it can be given instead (`scripts/bench-clients.sh -- target/release/examples/echo_server`).
//! Deliberately not one of the project's I/O models and not measured by `run` or the benches:
//! it prints `listening ADDR` like `iomodels serve` does, echoes with TCP_NODELAY, and runs
//! until killed (no stats line).
//!
//! Usage: `echo_server [ADDR=127.0.0.1:0]`

use std::io::{Read, Write};
use std::net::TcpListener;

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let l = TcpListener::bind(&addr).unwrap_or_else(|e| {
        eprintln!("echo_server: bind {addr}: {e}");
        std::process::exit(2);
    });
    println!("listening {}", l.local_addr().expect("bound address"));
    for s in l.incoming() {
        let Ok(mut s) = s else { continue };
        std::thread::spawn(move || {
            s.set_nodelay(true).ok();
            let mut buf = [0u8; 16 * 1024];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 || s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
    }
}
