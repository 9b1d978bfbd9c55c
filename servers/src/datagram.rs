//! UDP echo's shared half: the socket a loop owns ([`Endpoint`]), the one receive call every
//! model makes ([`DatagramSocket::recv`], which on Linux also reads the kernel's drop count),
//! and the datagram state machine of the readiness models ([`Echo`]).
//!
//! What it is: the datagram counterpart of `conn`'s connection state machine, much smaller,
//! because UDP echo has no state between datagrams. A turn receives one datagram into a buffer
//! sized for the largest one (64 KiB, whatever `--buffer` says: a datagram larger than the
//! buffer would be cut silently) and sends it straight back to its sender. A send that fails
//! (`EAGAIN`/`ENOBUFS`: the send buffer is full) drops the echo and counts it in
//! `send_drops`: UDP has no backpressure, the sender's datagrams keep arriving whatever the
//! server does, so holding an echo to retry would only move the loss into our own memory (and
//! a retry loop would spin). The kernel's own drops (a full receive buffer) are counted from
//! `SO_RXQ_OVFL` on Linux.
//!
//! What it is not: an event loop. Each model keeps its own wait (epoll, mio, a blocking
//! `recvfrom`, io_uring completions) next to its TCP loop and calls in here for the datagram.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use socket2::SockRef;

use crate::stats::LoopCounters;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
#[allow(unused_imports)] // io_uring's receive parses its own control messages with it
pub(crate) use linux::{
    COUNTS_DROPS, DROPS_SOURCE, GRANT_SHARE, control_drops, drop_reader, enable_drop_count, recv,
    send_to,
};

#[cfg(not(target_os = "linux"))]
mod portable;
#[cfg(not(target_os = "linux"))]
pub(crate) use portable::{
    COUNTS_DROPS, DROPS_SOURCE, GRANT_SHARE, drop_reader, enable_drop_count, recv, send_to,
};

/// Bytes of the receive buffer: at least the largest UDP payload over IPv4 (65,507 B) or IPv6
/// without jumbograms (65,527 B), so no datagram is ever cut.
pub(crate) const DATAGRAM_BUFFER: usize = 64 * 1024;

/// Reads a socket's kernel drop count now (`None` if it cannot be read).
pub(crate) type DropReader = Box<dyn Fn() -> Option<u64> + Send + Sync>;

/// One datagram a receive returned.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    /// Its length (0 for an empty datagram).
    pub(crate) len: usize,
    /// Its sender, where the echo goes.
    pub(crate) from: SocketAddr,
    /// The socket's kernel drop count when it was queued (`SO_RXQ_OVFL`), if the OS said.
    pub(crate) drops: Option<u32>,
}

/// A loop's UDP socket and its kernel drop count (shared by clones of one socket, so the
/// server's total counts each socket once).
pub(crate) struct Endpoint {
    /// Bound; blocking or not as the model sets it.
    pub(crate) socket: UdpSocket,
    /// Highest `SO_RXQ_OVFL` count seen on this socket.
    pub(crate) drops: Arc<AtomicU64>,
}

/// Records a drop count a receive reported into the socket's count (the highest seen: the
/// kernel's count is cumulative).
pub(crate) fn saw_drops(count: &AtomicU64, drops: Option<u32>) {
    if let Some(d) = drops {
        count.fetch_max(d as u64, Relaxed);
    }
}

/// What UDP echo needs of a socket type (std's, mio's, tokio's).
pub(crate) trait DatagramSocket {
    /// Receives one datagram into `buf` (nonblocking sockets: `WouldBlock` when none).
    fn recv(&self, buf: &mut [u8]) -> io::Result<Received>;
    /// Sends `buf` to `to` as one datagram, without waiting.
    fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize>;
}

impl DatagramSocket for UdpSocket {
    fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        recv(SockRef::from(self), buf)
    }

    fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        // Not `UdpSocket::send_to`: on a blocking socket that would wait for room.
        send_to(SockRef::from(self), buf, to)
    }
}

impl DatagramSocket for mio::net::UdpSocket {
    fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        // Through `try_io`, so mio's Windows backend sees the `WouldBlock` and re-arms.
        self.try_io(|| recv(SockRef::from(self), buf))
    }

    fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        mio::net::UdpSocket::send_to(self, buf, to)
    }
}

impl DatagramSocket for tokio::net::UdpSocket {
    fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        // Through `try_io`, so tokio clears its readiness on `WouldBlock`.
        self.try_io(tokio::io::Interest::READABLE, || {
            recv(SockRef::from(self), buf)
        })
    }

    fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.try_send_to(buf, to)
    }
}

/// What one [`Echo::turn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turn {
    /// A datagram came in (and was echoed or dropped).
    Echoed,
    /// Nothing to receive now (nonblocking socket): wait for readiness again.
    Idle,
}

/// One loop's datagram echo: its buffer, and the echo rule.
pub(crate) struct Echo {
    buf: Box<[u8]>,
}

impl Echo {
    pub(crate) fn new() -> Self {
        Self {
            buf: vec![0; DATAGRAM_BUFFER].into_boxed_slice(),
        }
    }

    /// Receives one datagram and echoes it (see [`echo_one`]). An error that is not about
    /// this socket (interrupted; Windows' `WSAECONNRESET` reporting an ICMP port-unreachable
    /// for an earlier echo) is skipped; other receive errors are the loop's to fail on.
    pub(crate) fn turn(
        &mut self,
        sock: &impl DatagramSocket,
        drops: &AtomicU64,
        counters: &LoopCounters,
    ) -> io::Result<Turn> {
        let got = loop {
            match self.receive(sock) {
                Ok(got) => break got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Turn::Idle),
                // Not about this socket: receive again (an edge-triggered or oneshot wait
                // needs the socket read until `WouldBlock`).
                Err(e) if transient(&e) => {}
                Err(e) => return Err(e),
            }
        };
        self.answer(sock, got, drops, counters);
        Ok(Turn::Echoed)
    }

    /// Receives one datagram into the buffer (a blocking socket waits for it).
    pub(crate) fn receive(&mut self, sock: &impl DatagramSocket) -> io::Result<Received> {
        sock.recv(&mut self.buf)
    }

    /// Counts what [`receive`](Self::receive) returned and echoes it.
    pub(crate) fn answer(
        &self,
        sock: &impl DatagramSocket,
        got: Received,
        drops: &AtomicU64,
        counters: &LoopCounters,
    ) {
        saw_drops(drops, got.drops);
        counters.datagram_in(got.len);
        echo_one(sock, &self.buf[..got.len], got.from, counters);
    }

    /// Echoes until the socket has nothing more (edge-triggered and oneshot waits need it
    /// drained; level-triggered ones are served the same way, for one rule everywhere).
    pub(crate) fn drain(
        &mut self,
        sock: &impl DatagramSocket,
        drops: &AtomicU64,
        counters: &LoopCounters,
    ) -> io::Result<()> {
        while self.turn(sock, drops, counters)? == Turn::Echoed {}
        Ok(())
    }
}

/// A receive error that concerns an earlier datagram or the call, not the socket: a signal,
/// or an ICMP error for an earlier echo reported on this one (Windows does, as
/// `WSAECONNRESET`; Linux does not on an unconnected socket).
pub(crate) fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

/// Sends `data` back to `to` once: sent, or dropped and counted (never retried, never waited
/// for). A full send buffer (`EAGAIN`/`ENOBUFS`) is the expected reason; any other send
/// error (an address the kernel will not send to) drops that echo the same way.
pub(crate) fn echo_one(
    sock: &impl DatagramSocket,
    data: &[u8],
    to: SocketAddr,
    counters: &LoopCounters,
) {
    loop {
        match sock.send_to(data, to) {
            Ok(n) => return counters.datagram_out(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                log::debug!("udp: echo to {to} dropped: {e}");
                return counters.send_drop();
            }
        }
    }
}

/// Sets `--rcvbuf`/`--sndbuf` on `socket` and returns what the kernel granted, as
/// `(rcvbuf, sndbuf)` in bytes as the OS reads them back (Linux: twice the granted request,
/// its bookkeeping share included; Linux caps a request at `net.core.rmem_max`/`wmem_max`
/// first, silently: [`warn_if_cut`] says so).
pub(crate) fn set_buffers(
    socket: &socket2::Socket,
    rcvbuf: Option<usize>,
    sndbuf: Option<usize>,
) -> io::Result<(usize, usize)> {
    if let Some(size) = rcvbuf {
        socket.set_recv_buffer_size(size)?;
    }
    if let Some(size) = sndbuf {
        socket.set_send_buffer_size(size)?;
    }
    Ok((socket.recv_buffer_size()?, socket.send_buffer_size()?))
}

/// Logs one warning per request of `--rcvbuf`/`--sndbuf` the kernel cut, naming the limit,
/// from `granted` as [`set_buffers`] returned it. Called once per server: every socket of a
/// group gets the same.
pub(crate) fn warn_if_cut(rcvbuf: Option<usize>, sndbuf: Option<usize>, granted: (usize, usize)) {
    for (flag, asked, got, limit) in [
        ("--rcvbuf", rcvbuf, granted.0, "net.core.rmem_max"),
        ("--sndbuf", sndbuf, granted.1, "net.core.wmem_max"),
    ] {
        if let Some(cut) = cut_request(asked, got) {
            log::warn!(
                "{flag} {}: the kernel granted {cut} B (on Linux the cap is {limit}; raise it \
                 with sysctl to get more)",
                asked.unwrap_or_default()
            );
        }
    }
}

/// What the kernel granted of a buffer request `asked`, read back as `read_back`, when that is
/// less than asked (`None`: not asked, or granted whole).
fn cut_request(asked: Option<usize>, read_back: usize) -> Option<usize> {
    let granted = read_back / GRANT_SHARE;
    asked.filter(|&a| granted < a).map(|_| granted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Shared;
    use std::net::Ipv4Addr;

    fn pair() -> (Endpoint, UdpSocket, Arc<LoopCounters>, Shared) {
        let shared = Shared::default();
        let server = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        server.set_nonblocking(true).unwrap();
        let _ = enable_drop_count(&SockRef::from(&server));
        let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        client.connect(server.local_addr().unwrap()).unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let counters = shared.new_loop();
        let endpoint = Endpoint {
            socket: server,
            drops: shared.new_socket_drops(None),
        };
        (endpoint, client, counters, shared)
    }

    #[test]
    fn every_datagram_comes_back_and_an_empty_socket_is_idle() {
        let (ep, client, counters, _shared) = pair();
        let mut echo = Echo::new();
        assert_eq!(
            echo.turn(&ep.socket, &ep.drops, &counters).unwrap(),
            Turn::Idle
        );
        for size in [0usize, 1, 512, 65_507] {
            let data: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
            client.send(&data).unwrap();
            // Loopback delivers synchronously; wait briefly anyway for a slow machine.
            let mut turns = 0;
            while echo.turn(&ep.socket, &ep.drops, &counters).unwrap() != Turn::Echoed {
                turns += 1;
                assert!(turns < 5000, "datagram of {size} B never arrived");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let mut back = vec![0u8; 65_536];
            let n = client.recv(&mut back).unwrap();
            assert_eq!(&back[..n], &data[..], "{size} B");
        }
        assert_eq!(counters.datagrams_in_now(), 4);
    }

    /// A socket whose send buffer is always full: one datagram to receive, then none.
    struct FullSendBuffer {
        pending: std::cell::Cell<bool>,
        sends: std::cell::Cell<usize>,
    }

    impl DatagramSocket for FullSendBuffer {
        fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
            if !self.pending.replace(false) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            buf[..3].copy_from_slice(b"abc");
            Ok(Received {
                len: 3,
                from: "127.0.0.1:9".parse().unwrap(),
                drops: Some(5),
            })
        }

        fn send_to(&self, _buf: &[u8], _to: SocketAddr) -> io::Result<usize> {
            self.sends.set(self.sends.get() + 1);
            Err(io::ErrorKind::WouldBlock.into())
        }
    }

    #[test]
    fn a_full_send_buffer_drops_the_echo_once_and_moves_on() {
        let shared = Shared::default();
        let counters = shared.new_loop();
        let drops = shared.new_socket_drops(None);
        let sock = FullSendBuffer {
            pending: std::cell::Cell::new(true),
            sends: std::cell::Cell::new(0),
        };
        Echo::new().drain(&sock, &drops, &counters).unwrap();
        assert_eq!(sock.sends.get(), 1, "one attempt, no retry loop");
        assert_eq!(counters.send_drops_now(), 1);
        assert_eq!(counters.datagrams_in_now(), 1);
        assert_eq!(
            drops.load(Relaxed),
            5,
            "the drop count the receive reported"
        );
    }

    #[test]
    fn a_buffer_request_the_kernel_cut_is_told_apart_from_one_granted_whole() {
        assert_eq!(cut_request(None, 1 << 20), None);
        // Linux reads back twice what it granted.
        let whole = 4096 * GRANT_SHARE;
        assert_eq!(cut_request(Some(4096), whole), None);
        let capped = (4 << 20) * GRANT_SHARE;
        assert_eq!(cut_request(Some(16 << 20), capped), Some(4 << 20));
    }

    #[test]
    fn a_failed_send_is_counted_and_not_retried() {
        let (ep, _client, counters, _shared) = pair();
        // A send to port 0 fails at once (EINVAL on Linux): it must be one drop, no loop.
        let nowhere: SocketAddr = "127.0.0.1:0".parse().unwrap();
        echo_one(&ep.socket, b"x", nowhere, &counters);
        assert_eq!(counters.send_drops_now(), 1);
    }
}
