//! Helpers every server test shares: start a model on port 0, connect with bounded waits,
//! deterministic random payloads, and a bounded wait for a condition.
//!
//! Not a client library: each helper does one small thing so a failing scenario reads plainly.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use servers::{AcceptMode, Config, Model, Proto, Server};

/// Every blocking read or write in a test gives up after this (a liveness bound, not a speed
/// claim).
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// A server configuration the suite runs a model under.
#[derive(Clone, Copy, Debug)]
pub struct Variant {
    pub name: &'static str,
    pub threads: usize,
    pub accept: Option<AcceptMode>,
    /// `Config::busy_poll`: every wait with a zero timeout.
    pub busy_poll: bool,
}

pub const ONE_LOOP: Variant = Variant {
    name: "t1",
    threads: 1,
    accept: None,
    busy_poll: false,
};
pub const TWO_LOOPS: Variant = Variant {
    name: "t2",
    threads: 2,
    accept: None,
    busy_poll: false,
};
pub const TWO_LOOPS_HANDOFF: Variant = Variant {
    name: "t2-handoff",
    threads: 2,
    accept: Some(AcceptMode::Handoff),
    busy_poll: false,
};

/// One loop that busy-polls (`serve --busy-poll`), for the models whose registry row allows it.
pub const ONE_LOOP_SPIN: Variant = Variant {
    name: "t1-spin",
    threads: 1,
    accept: None,
    busy_poll: true,
};

pub fn config(variant: Variant) -> Config {
    Config {
        threads: variant.threads,
        accept: variant.accept.unwrap_or_else(AcceptMode::platform_default),
        busy_poll: variant.busy_poll,
        ..Config::default()
    }
}

/// Starts `model` on 127.0.0.1:0.
pub fn start(model: Model, variant: Variant) -> Server {
    Server::start(model, "127.0.0.1:0".parse().unwrap(), &config(variant))
        .unwrap_or_else(|e| panic!("{model} ({}) did not start: {e}", variant.name))
}

/// Starts `model` serving UDP on 127.0.0.1:0, with `config` changed by `adjust`.
pub fn start_udp_with(model: Model, variant: Variant, adjust: impl FnOnce(&mut Config)) -> Server {
    let mut config = Config {
        proto: Proto::Udp,
        ..config(variant)
    };
    adjust(&mut config);
    Server::start(model, "127.0.0.1:0".parse().unwrap(), &config)
        .unwrap_or_else(|e| panic!("{model} ({}, udp) did not start: {e}", variant.name))
}

/// Starts `model` serving UDP on 127.0.0.1:0.
pub fn start_udp(model: Model, variant: Variant) -> Server {
    start_udp_with(model, variant, |_| {})
}

/// A UDP client socket on loopback, connected to `addr` (so it hears only the server), with
/// bounded reads.
pub fn udp_client(addr: SocketAddr) -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind a client socket");
    s.connect(addr).expect("connect a UDP socket");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// A client socket with `TCP_NODELAY` and bounded reads and writes.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// SplitMix64: a tiny deterministic generator, so a failure can be replayed from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Seeded from the clock; the seed is part of every failure message that uses it.
    pub fn from_time() -> (Self, u64) {
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        (Self(seed), seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        self.fill(&mut v);
        v
    }
}

/// Writes `data` from a second thread while this one reads the echo back, so a payload larger
/// than the socket buffers cannot deadlock against a server that applies backpressure.
pub fn echo_concurrently(stream: &TcpStream, data: &[u8]) -> io::Result<Vec<u8>> {
    let mut writer = stream.try_clone()?;
    let owned = data.to_vec();
    let handle = thread::spawn(move || writer.write_all(&owned));
    let mut got = vec![0; data.len()];
    let mut reader = stream;
    reader.read_exact(&mut got)?;
    handle.join().expect("writer thread")?;
    Ok(got)
}

/// Writes `data` then the FIN from a second thread and reads the echo until the server's EOF.
pub fn echo_then_half_close(stream: &TcpStream, data: &[u8]) -> io::Result<Vec<u8>> {
    let mut writer = stream.try_clone()?;
    let owned = data.to_vec();
    let handle = thread::spawn(move || -> io::Result<()> {
        writer.write_all(&owned)?;
        writer.shutdown(std::net::Shutdown::Write)
    });
    let got = read_to_eof(stream)?;
    handle.join().expect("writer thread")?;
    Ok(got)
}

/// Reads until EOF (bounded by the socket's read timeout).
pub fn read_to_eof(mut stream: &TcpStream) -> io::Result<Vec<u8>> {
    let mut got = Vec::new();
    stream.read_to_end(&mut got)?;
    Ok(got)
}

/// Polls `cond` until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// Asserts two byte strings are equal without printing megabytes on failure.
pub fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let first = got
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "{what}: echo differs: got {} bytes, want {}, first difference at byte {first}",
            got.len(),
            want.len()
        );
    }
}
