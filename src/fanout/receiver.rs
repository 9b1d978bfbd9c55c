//! One fan-out receiver: bind (and join the group), report where the sender should send, read
//! messages until stopped, and hand back what it saw: a tally, membership spans and a latency
//! histogram.
//!
//! The same code runs as a thread of `fanout` or as a `fanout-receiver` child process. It
//! deliberately computes no loss: that needs the sender's count, so the record does it
//! ([`iomodels::record::fanout::Span`]). Blocking sockets with short read timeouts, so a stop
//! is seen within [`POLL`] without a busy loop.

use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use iomodels::record::fanout::Span;
use loadgen::Stop;
use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, Socket, Type};

use super::Mode;
use super::sys::{Iface, clock_ns, own_groups_only};
use super::wire;

/// How long a blocked read waits before looking at the stop flag.
const POLL: Duration = Duration::from_millis(20);

/// Largest IPv4 UDP payload: the receive buffer's size.
const MAX_DATAGRAM: usize = 65_507;

/// What a receiver needs to know.
#[derive(Clone, Debug)]
pub struct ReceiverConfig {
    pub mode: Mode,
    /// This receiver's number, from 0, and how many there are (to stagger churn).
    pub index: usize,
    pub receivers: usize,
    /// Message size in bytes (TCP reads exactly this much per message).
    pub size: usize,
    /// The receiver's interface: unicast binds its address, multicast joins on it.
    pub iface: Iface,
    pub group: Ipv4Addr,
    /// Multicast and broadcast: the shared port (0: pick one; the first receiver does).
    pub port: u16,
    pub run_id: u64,
    /// Multicast: leave and rejoin the group every this long (staggered by index).
    pub churn: Option<Duration>,
    /// TCP: how long to wait for the sender's connection.
    pub accept_timeout: Duration,
}

/// What one receiver saw; the line a child prints at the end, as JSON.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReceiverReport {
    pub index: usize,
    pub delivered: u64,
    pub spans: Vec<Span>,
    pub joins: u64,
    pub leaves: u64,
    /// Latency in ns, HdrHistogram V2 (deflate), base64.
    pub histogram: String,
    /// Messages from this run that were too short to carry a header, plus read errors.
    pub bad: u64,
}

enum Sock {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// A receiver bound and (multicast) joined, ready for the sender.
pub struct Bound {
    sock: Sock,
    /// Where the sender sends: the listener (TCP), the socket (UDP), the group and port
    /// (multicast), `0.0.0.0:port` (broadcast: the sender knows the broadcast address).
    pub endpoint: SocketAddr,
}

/// Bind per `cfg.mode`.
///
/// # Errors
/// The OS's, with what was being done (bind, join).
pub fn bind(cfg: &ReceiverConfig) -> io::Result<Bound> {
    let ctx = |what: String| move |e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"));
    match cfg.mode {
        Mode::Tcp => {
            let l = TcpListener::bind((cfg.iface.addr, 0))
                .map_err(ctx(format!("cannot listen on {}", cfg.iface.addr)))?;
            let endpoint = l.local_addr()?;
            Ok(Bound {
                sock: Sock::Tcp(l),
                endpoint,
            })
        }
        Mode::Udp => {
            let s = UdpSocket::bind((cfg.iface.addr, 0))
                .map_err(ctx(format!("cannot bind {}", cfg.iface.addr)))?;
            let endpoint = s.local_addr()?;
            Ok(Bound {
                sock: Sock::Udp(s),
                endpoint,
            })
        }
        Mode::Multicast | Mode::Broadcast => {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            // Every receiver shares the port: each gets its own copy of a multicast or
            // broadcast datagram (unlike SO_REUSEPORT's balancing of unicast).
            s.set_reuse_address(true)?;
            let here = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, cfg.port);
            s.bind(&here.into()).map_err(ctx(format!(
                "cannot bind the wildcard address, port {}",
                cfg.port
            )))?;
            let port = s.local_addr()?.as_socket().map_or(cfg.port, |a| a.port());
            let endpoint = if cfg.mode == Mode::Multicast {
                own_groups_only(&s)?;
                s.join_multicast_v4(&cfg.group, &cfg.iface.addr)
                    .map_err(ctx(format!(
                        "cannot join {} on {} ({})",
                        cfg.group, cfg.iface.name, cfg.iface.addr
                    )))?;
                SocketAddr::from((cfg.group, port))
            } else {
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))
            };
            Ok(Bound {
                sock: Sock::Udp(s.into()),
                endpoint,
            })
        }
    }
}

/// A latency histogram in ns: 1 ns to 60 s at 3 significant digits (a later value saturates).
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("bounds and precision are valid")
}

/// Counts and spans as messages arrive.
struct Tally {
    run_id: u64,
    delivered: u64,
    spans: Vec<Span>,
    hist: Histogram<u64>,
    bad: u64,
}

impl Tally {
    fn new(run_id: u64) -> Self {
        Self {
            run_id,
            delivered: 0,
            // Ready (and joined) before the first send: owed everything from message 0.
            spans: vec![Span {
                from: Some(0),
                ..Span::default()
            }],
            hist: latency_histogram(),
            bad: 0,
        }
    }

    fn message(&mut self, buf: &[u8]) {
        let Some(h) = wire::decode(buf) else {
            self.bad += 1;
            return;
        };
        if h.run_id != self.run_id {
            return; // another run's datagram on a shared port or group
        }
        let latency = clock_ns().saturating_sub(h.stamp_ns);
        self.hist.saturating_record(latency);
        self.delivered += 1;
        // A message read after leaving was queued before the leave: it belongs to the last span.
        if let Some(s) = self.spans.last_mut() {
            s.count += 1;
            s.min = Some(s.min.map_or(h.seq, |m| m.min(h.seq)));
            s.max = Some(s.max.map_or(h.seq, |m| m.max(h.seq)));
        }
    }

    fn report(mut self, index: usize, member: bool, joins: u64, leaves: u64) -> ReceiverReport {
        if let Some(s) = self.spans.last_mut() {
            s.open_at_end = member;
        }
        ReceiverReport {
            index,
            delivered: self.delivered,
            spans: self.spans,
            joins,
            leaves,
            histogram: loadgen::encode_histogram(&self.hist),
            bad: self.bad,
        }
    }
}

impl Bound {
    /// Read until `stop` (or, TCP, until the sender closes), then report.
    ///
    /// # Errors
    /// TCP: no connection within the accept timeout; a multicast leave or join that fails.
    pub fn run(self, cfg: &ReceiverConfig, stop: &Stop) -> io::Result<ReceiverReport> {
        match self.sock {
            Sock::Tcp(l) => tcp(l, cfg, stop),
            Sock::Udp(s) => udp(s, cfg, stop),
        }
    }
}

fn tcp(l: TcpListener, cfg: &ReceiverConfig, stop: &Stop) -> io::Result<ReceiverReport> {
    let mut tally = Tally::new(cfg.run_id);
    let mut conn = accept(&l, cfg.accept_timeout, stop)?;
    if let Some(c) = conn.as_mut() {
        c.set_nodelay(true)?;
        c.set_read_timeout(Some(POLL))?;
        let mut buf = vec![0u8; cfg.size];
        let mut filled = 0;
        loop {
            match c.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => {
                    filled += n;
                    if filled == buf.len() {
                        tally.message(&buf);
                        filled = 0;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if stop.is_stopped() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    tally.bad += 1;
                    break;
                }
            }
        }
    }
    Ok(tally.report(cfg.index, true, 0, 0))
}

/// The sender's one connection; `None` if stopped first.
fn accept(l: &TcpListener, timeout: Duration, stop: &Stop) -> io::Result<Option<TcpStream>> {
    l.set_nonblocking(true)?;
    let deadline = Instant::now() + timeout;
    loop {
        match l.accept() {
            Ok((c, _)) => {
                c.set_nonblocking(false)?;
                return Ok(Some(c));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if stop.is_stopped() {
                    return Ok(None);
                }
                if Instant::now() >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the sender did not connect within {timeout:?}"),
                    ));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn udp(s: UdpSocket, cfg: &ReceiverConfig, stop: &Stop) -> io::Result<ReceiverReport> {
    let mut tally = Tally::new(cfg.run_id);
    s.set_read_timeout(Some(POLL))?;
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let churning = cfg.mode == Mode::Multicast && cfg.churn.is_some();
    // Without churn the toggle time is never reached (a day is past any run's bound).
    let period = cfg.churn.unwrap_or(Duration::from_secs(86_400));
    let start = Instant::now();
    // Receiver i first toggles at period × (1 + i/N): leaves spread over the period.
    let offset = period.mul_f64(cfg.index as f64 / cfg.receivers.max(1) as f64);
    let mut next_toggle = start + period + offset;
    let (mut member, mut joins, mut leaves) = (true, u64::from(cfg.mode == Mode::Multicast), 0);
    let sock2 = socket2::SockRef::from(&s);
    while !stop.is_stopped() {
        if churning && Instant::now() >= next_toggle {
            if member {
                sock2.leave_multicast_v4(&cfg.group, &cfg.iface.addr)?;
                leaves += 1;
            } else {
                sock2.join_multicast_v4(&cfg.group, &cfg.iface.addr)?;
                joins += 1;
                // Owed from the first message read after the rejoin (see Span::from).
                tally.spans.push(Span::default());
            }
            member = !member;
            next_toggle += period;
        }
        match s.recv(&mut buf) {
            Ok(n) => tally.message(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => tally.bad += 1,
        }
    }
    // Drain what arrived before the stop.
    s.set_nonblocking(true)?;
    while let Ok(n) = s.recv(&mut buf) {
        tally.message(&buf[..n]);
    }
    Ok(tally.report(cfg.index, member, joins, leaves))
}
