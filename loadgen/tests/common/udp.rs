//! UDP test servers with known faults, for `load --proto udp` tests (the engine's and the
//! CLI's, which includes this file by path so there is one copy).
//!
//! One std thread on 127.0.0.1:0, a 2 ms receive timeout so the stop flag and held datagrams
//! are looked at often, joined on drop. Rules count each peer's datagrams from 1 (`n`), so they
//! do not depend on how several sockets interleave. The generator's start-up probes (connection
//! id `u32::MAX`) are echoed (except by `Silent`) and not counted, so every count is about load datagrams only.
//! Deliberately not the project's UDP servers: this exists to be predictable, not fast.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the server does with each peer's `n`th datagram.
#[derive(Clone, Copy, Debug)]
pub enum UdpBehavior {
    /// Echo every datagram at once.
    Echo,
    /// Drop every tenth (`n % 10 == 0`), send every twentieth twice (`n % 20 == 5`), and swap
    /// neighbours: hold each `n % 4 == 1` until the peer's next datagram arrives and echo that
    /// one first. A held datagram whose neighbour is dropped, or that waits [`HOLD`], goes out
    /// unswapped.
    Faulty,
    /// Receive and never answer (not even the start-up probe).
    Silent,
    /// Echo, with the last byte of every `.0`th datagram flipped.
    Corrupt(u64),
    /// Echo, but hold every third of a peer's first `first` datagrams for `by` first.
    Late { first: u64, by: Duration },
}

/// How long a held datagram waits for its neighbour.
pub const HOLD: Duration = Duration::from_millis(20);

/// What the server did, over every peer (probes excluded).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpCounts {
    /// Load datagrams received.
    pub received: u64,
    /// Dropped without an answer.
    pub dropped: u64,
    /// Extra copies sent.
    pub duplicated: u64,
    /// Pairs echoed in swapped order.
    pub swapped: u64,
    /// Echoed with a flipped byte.
    pub corrupted: u64,
    /// Echoed after being held `by` (`Late`).
    pub delayed: u64,
}

pub struct UdpServer {
    pub addr: SocketAddr,
    counts: Arc<Mutex<UdpCounts>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpServer {
    pub fn start(b: UdpBehavior) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind udp 127.0.0.1:0");
        let addr = sock.local_addr().unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(2)))
            .unwrap();
        let counts = Arc::new(Mutex::new(UdpCounts::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, st) = (counts.clone(), stop.clone());
        let thread = std::thread::spawn(move || serve(&sock, b, &c, &st));
        Self {
            addr,
            counts,
            stop,
            thread: Some(thread),
        }
    }

    /// What it did so far.
    pub fn counts(&self) -> UdpCounts {
        *self.counts.lock().unwrap()
    }
}

impl Drop for UdpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One peer's state: datagrams seen, and the one held for a swap (bytes, copies, since).
#[derive(Default)]
struct Peer {
    n: u64,
    held: Option<(Vec<u8>, u32, Instant)>,
}

fn send(sock: &UdpSocket, to: SocketAddr, d: &[u8], copies: u32) {
    for _ in 0..copies {
        let _ = sock.send_to(d, to);
    }
}

fn serve(sock: &UdpSocket, b: UdpBehavior, counts: &Mutex<UdpCounts>, stop: &AtomicBool) {
    let mut buf = vec![0u8; 65536];
    let mut peers: HashMap<SocketAddr, Peer> = HashMap::new();
    // Late datagrams: (due, peer, bytes).
    let mut late: Vec<(Instant, SocketAddr, Vec<u8>)> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        for (from, p) in peers.iter_mut() {
            if p.held.as_ref().is_some_and(|h| now - h.2 >= HOLD) {
                let (d, copies, _) = p.held.take().unwrap();
                send(sock, *from, &d, copies);
            }
        }
        late.retain(|(due, to, d)| {
            if *due <= now {
                send(sock, *to, d, 1);
                false
            } else {
                true
            }
        });
        let (len, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(_) => continue,
        };
        let d = &mut buf[..len];
        if d.len() >= 4 && d[..4] == [0xff; 4] {
            if !matches!(b, UdpBehavior::Silent) {
                send(sock, from, d, 1);
            }
            continue;
        }
        let p = peers.entry(from).or_default();
        p.n += 1;
        let n = p.n;
        let mut c = counts.lock().unwrap();
        c.received += 1;
        match b {
            UdpBehavior::Echo => send(sock, from, d, 1),
            UdpBehavior::Silent => {}
            UdpBehavior::Corrupt(every) => {
                if n % every == 0 {
                    *d.last_mut().unwrap() ^= 0x5a;
                    c.corrupted += 1;
                }
                send(sock, from, d, 1);
            }
            UdpBehavior::Late { first, by } => {
                if n <= first && n % 3 == 0 {
                    c.delayed += 1;
                    late.push((Instant::now() + by, from, d.to_vec()));
                } else {
                    send(sock, from, d, 1);
                }
            }
            UdpBehavior::Faulty => {
                if n % 10 == 0 {
                    c.dropped += 1;
                    if let Some((h, copies, _)) = p.held.take() {
                        send(sock, from, &h, copies);
                    }
                    continue;
                }
                let copies = if n % 20 == 5 { 2 } else { 1 };
                c.duplicated += u64::from(copies - 1);
                if n % 4 == 1 && p.held.is_none() {
                    p.held = Some((d.to_vec(), copies, Instant::now()));
                } else if let Some((h, hc, _)) = p.held.take() {
                    send(sock, from, d, copies);
                    send(sock, from, &h, hc);
                    c.swapped += 1;
                } else {
                    send(sock, from, d, copies);
                }
            }
        }
    }
}
