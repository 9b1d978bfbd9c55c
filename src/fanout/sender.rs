//! The fan-out sender: the same message at a fixed rate to every receiver, by the mode's
//! means, counting its send calls and measuring its own CPU and its interface's packets.
//!
//! tcp: one connection per receiver, one `write` per receiver per message (more if a write is
//! partial). udp: one socket, one `sendto` per receiver per message. multicast: one `sendto`
//! to the group (`IP_MULTICAST_IF` = the interface, `IP_MULTICAST_LOOP` on when receivers share
//! the host). broadcast: one `sendto` to the interface's broadcast address (`SO_BROADCAST`).
//! Blocking sockets: a full buffer blocks the sender, which shows as a lower achieved rate,
//! never as a busy loop. Deliberately not a load generator: no closed loop, no replies.

use std::io::{self, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use loadgen::Stop;
use socket2::{Domain, Protocol, Socket, Type};

use super::Mode;
use super::sys::{Iface, clock_ns, sender_cpu, thread_cpu_ns, tx_packets};
use super::wire::{self, Header};

/// What the sender needs to know.
#[derive(Clone, Debug)]
pub struct SenderConfig {
    pub mode: Mode,
    pub size: usize,
    /// Messages per second.
    pub rate: f64,
    pub duration: Duration,
    /// The sending interface: source address, multicast interface, broadcast address, counters.
    pub iface: Iface,
    /// Receivers share this host's network stack: multicast must loop back to them.
    pub loop_back: bool,
    /// Set `SO_BROADCAST` (off only to show the kernel's EACCES).
    pub so_broadcast: bool,
    pub run_id: u64,
}

/// What the sender did over its window.
#[derive(Clone, Debug, Default)]
pub struct SendOutcome {
    pub sent: u64,
    pub send_errors: u64,
    /// Send system calls made (write/sendto), successful or not.
    pub calls: u64,
    pub window: Duration,
    pub user: Duration,
    pub system: Duration,
    /// The interface's `tx_packets` delta; `None` if unreadable.
    pub wire_packets: Option<u64>,
    /// Thread CPU spent in the send calls of each message (clock read before and after them),
    /// summed: the cost of sending without the pacing sleeps; `None` where not measured.
    pub in_send: Option<Duration>,
    /// The first send error, for the warning.
    pub first_error: Option<String>,
}

enum Out {
    Tcp(Vec<Option<TcpStream>>),
    Udp {
        sock: UdpSocket,
        to: Vec<SocketAddr>,
    },
}

/// Connected or configured sockets, built before the window opens.
pub struct Sender {
    cfg: SenderConfig,
    out: Out,
}

/// How long a TCP connect to a receiver may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connect (tcp) or configure (udp, multicast, broadcast) towards `endpoints`: one per receiver
/// (tcp, udp), or the group and port (multicast) or the wildcard and port (broadcast; the
/// datagram goes to the interface's broadcast address).
///
/// # Errors
/// The OS's, saying what was being done.
pub fn prepare(cfg: SenderConfig, endpoints: &[SocketAddr]) -> io::Result<Sender> {
    let ctx = |what: String| move |e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"));
    let out = match cfg.mode {
        Mode::Tcp => {
            let mut conns = Vec::with_capacity(endpoints.len());
            for a in endpoints {
                let c = TcpStream::connect_timeout(a, CONNECT_TIMEOUT)
                    .map_err(ctx(format!("cannot connect to receiver {a}")))?;
                c.set_nodelay(true)?;
                conns.push(Some(c));
            }
            Out::Tcp(conns)
        }
        Mode::Udp | Mode::Multicast | Mode::Broadcast => {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            s.bind(&SocketAddrV4::new(cfg.iface.addr, 0).into())
                .map_err(ctx(format!("cannot bind {}", cfg.iface.addr)))?;
            let to = match cfg.mode {
                Mode::Multicast => {
                    s.set_multicast_if_v4(&cfg.iface.addr)?;
                    s.set_multicast_loop_v4(cfg.loop_back)?;
                    s.set_multicast_ttl_v4(1)?;
                    endpoints.iter().take(1).copied().collect()
                }
                Mode::Broadcast => {
                    s.set_broadcast(cfg.so_broadcast)?;
                    let b = cfg.iface.broadcast.ok_or_else(|| {
                        io::Error::other(format!("{} has no broadcast address", cfg.iface.name))
                    })?;
                    endpoints
                        .iter()
                        .take(1)
                        .map(|e| SocketAddr::from((b, e.port())))
                        .collect()
                }
                _ => endpoints.to_vec(),
            };
            Out::Udp { sock: s.into(), to }
        }
    };
    Ok(Sender { cfg, out })
}

/// Why the sender stopped before its window ended.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(
        "the kernel refused the broadcast (EACCES: the socket lacks SO_BROADCAST); fanout sets it unless --without-so-broadcast"
    )]
    BroadcastRefused,
    #[error("cannot read the sender's CPU time: {0}")]
    Cpu(io::Error),
    #[error("sender: {0}")]
    Pin(String),
}

impl Sender {
    /// Send for the window (or until `stop`), paced at the rate from the window's start (a late
    /// send goes out at once, the schedule does not slip). Call it on the thread whose CPU is
    /// to be measured.
    ///
    /// # Errors
    /// [`SendError::BroadcastRefused`] at the first EACCES of a broadcast; a CPU clock failure.
    pub fn run(mut self, stop: &Stop) -> Result<SendOutcome, SendError> {
        let cfg = self.cfg.clone();
        let mut buf = vec![0u8; cfg.size];
        for (i, b) in buf.iter_mut().enumerate().skip(wire::HEADER) {
            *b = i as u8;
        }
        let period = Duration::from_secs_f64(1.0 / cfg.rate);
        let mut o = SendOutcome::default();
        let tx0 = tx_packets(&cfg.iface.name);
        let (u0, s0) = sender_cpu().map_err(SendError::Cpu)?;
        let (mut in_send, mut measured_in_send) = (0u64, false);
        let start = Instant::now();
        let end = start + cfg.duration;
        loop {
            let intended = start + period.mul_f64(o.sent as f64);
            if intended >= end || stop.is_stopped() {
                break;
            }
            let now = Instant::now();
            if intended > now {
                std::thread::sleep(intended - now);
            }
            let h = Header {
                run_id: cfg.run_id,
                seq: o.sent,
                stamp_ns: clock_ns(),
            };
            wire::encode(&mut buf, h);
            let c0 = thread_cpu_ns();
            self.send(&buf, &mut o)?;
            if let (Some(a), Some(b)) = (c0, thread_cpu_ns()) {
                in_send += b.saturating_sub(a);
                measured_in_send = true;
            }
            o.sent += 1;
        }
        o.window = start.elapsed();
        o.in_send = measured_in_send.then(|| Duration::from_nanos(in_send));
        let (u1, s1) = sender_cpu().map_err(SendError::Cpu)?;
        o.user = u1.saturating_sub(u0);
        o.system = s1.saturating_sub(s0);
        // Let the last segments leave (TCP may queue a moment) before reading the counter.
        std::thread::sleep(Duration::from_millis(20));
        o.wire_packets = match (tx0, tx_packets(&cfg.iface.name)) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        Ok(o)
    }

    fn send(&mut self, buf: &[u8], o: &mut SendOutcome) -> Result<(), SendError> {
        let fail = |o: &mut SendOutcome, e: io::Error| {
            o.send_errors += 1;
            o.first_error.get_or_insert_with(|| e.to_string());
        };
        match &mut self.out {
            Out::Tcp(conns) => {
                for slot in conns.iter_mut() {
                    let Some(c) = slot else { continue };
                    let mut at = 0;
                    while at < buf.len() {
                        o.calls += 1;
                        match c.write(&buf[at..]) {
                            Ok(n) => at += n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => {
                                // The receiver is gone: stop writing to it.
                                fail(o, e);
                                *slot = None;
                                break;
                            }
                        }
                    }
                }
            }
            Out::Udp { sock, to } => {
                for a in to.iter() {
                    o.calls += 1;
                    if let Err(e) = sock.send_to(buf, a) {
                        if self.cfg.mode == Mode::Broadcast
                            && e.kind() == io::ErrorKind::PermissionDenied
                        {
                            return Err(SendError::BroadcastRefused);
                        }
                        fail(o, e);
                    }
                }
            }
        }
        Ok(())
    }
}
