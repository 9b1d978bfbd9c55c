//! Test servers with known behaviour, for the engine's integration tests.
//!
//! Plain std threads on 127.0.0.1:0, one thread per connection, every wait bounded (20 ms read
//! timeouts, a stop flag checked on each), everything joined on drop. Deliberately not the
//! project's echo servers: these exist to be predictable, not fast.
#![allow(dead_code)]

pub mod udp;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use loadgen::{Options, Report, Stop, Workload};

#[derive(Clone, Copy, Debug)]
pub enum Behavior {
    /// Plain echo.
    Echo,
    /// Answer each read `.0` after it arrived.
    Delay(Duration),
    /// Hold answers during the first `stall` of every `every` since server start.
    Stall { stall: Duration, every: Duration },
    /// Echo with the first byte of every read flipped.
    Flip,
    /// Read once, then close with SO_LINGER 0 so the client gets an RST.
    Reset,
    /// Echo until `.0` after start, then close every connection and the listener.
    DieAt(Duration),
    /// Read and never answer.
    Silent,
    /// Echo a connection's first read with the FIN right behind it, in one segment on Linux, so
    /// one readiness event carries both; then read and ignore until the client closes.
    EchoThenHalfClose,
}

pub struct TestServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    pub fn start(b: Behavior) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::spawn(move || accept_loop(listener, b, st));
        Self {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, b: Behavior, stop: Arc<AtomicBool>) {
    let start = Instant::now();
    let dead = Arc::new(AtomicBool::new(false));
    let mut listener = Some(listener);
    let mut conns = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if let Behavior::DieAt(t) = b
            && start.elapsed() >= t
        {
            dead.store(true, Ordering::Relaxed);
            listener = None;
        }
        let Some(l) = listener.as_ref() else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        match l.accept() {
            Ok((s, _)) => {
                let (stop, dead) = (stop.clone(), dead.clone());
                conns.push(std::thread::spawn(move || serve(s, b, start, &stop, &dead)));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    drop(listener);
    for c in conns {
        let _ = c.join();
    }
}

fn serve(mut s: TcpStream, b: Behavior, start: Instant, stop: &AtomicBool, dead: &AtomicBool) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(Duration::from_millis(20)));
    let mut buf = vec![0u8; 65536];
    let mut half_closed = false;
    while !stop.load(Ordering::Relaxed) && !dead.load(Ordering::Relaxed) {
        let n = match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(_) => return,
        };
        let arrived = Instant::now();
        match b {
            Behavior::Echo | Behavior::DieAt(_) => {}
            Behavior::Delay(d) => std::thread::sleep(d.saturating_sub(arrived.elapsed())),
            Behavior::Stall { stall, every } => {
                let phase =
                    Duration::from_nanos((start.elapsed().as_nanos() % every.as_nanos()) as u64);
                if phase < stall {
                    std::thread::sleep(stall - phase);
                }
            }
            Behavior::Flip => buf[0] ^= 0xff,
            Behavior::Reset => {
                let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                return;
            }
            Behavior::Silent => continue,
            Behavior::EchoThenHalfClose if half_closed => continue,
            Behavior::EchoThenHalfClose => {
                echo_with_fin(&mut s, &buf[..n]);
                half_closed = true;
                continue;
            }
        }
        if s.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// Write `data` and shut the write side. With `TCP_CORK` the data waits in the socket and the
/// FIN joins its segment (Linux), so the peer sees both at once; elsewhere they may leave as two
/// segments.
fn echo_with_fin(s: &mut TcpStream, data: &[u8]) {
    #[cfg(target_os = "linux")]
    let _ = socket2::SockRef::from(&*s).set_tcp_cork(true);
    let _ = s.write_all(data);
    let _ = s.shutdown(Shutdown::Write);
}

/// Short-run options against `addr`: 1 s measured, 100 ms warm-up, 1 thread.
pub fn options(addr: SocketAddr) -> Options {
    let mut o = Options::new(addr);
    o.duration = Some(Duration::from_secs(1));
    o.warmup = Duration::from_millis(100);
    o.threads = 1;
    o.connections = 2;
    o
}

pub fn run(o: Options) -> Report {
    let w: Workload = o.validate().expect("valid test workload");
    loadgen::run(&w, &Stop::new(), None).expect("run starts")
}

/// Like [`run`], with a watchdog that stops the run after `limit`: a run that should end by
/// itself but would not fails its test (the report says `interrupted`) instead of hanging it.
pub fn run_within(o: Options, limit: Duration) -> Report {
    let w: Workload = o.validate().expect("valid test workload");
    let stop = Stop::new();
    let (done, ended) = std::sync::mpsc::channel::<()>();
    let s2 = stop.clone();
    let dog = std::thread::spawn(move || {
        if ended.recv_timeout(limit) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
            s2.stop();
        }
    });
    let r = loadgen::run(&w, &stop, None).expect("run starts");
    drop(done);
    dog.join().unwrap();
    r
}

/// An address with nothing listening (bound, then released).
pub fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}
