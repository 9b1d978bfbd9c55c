//! `iocp --proto udp`: datagram echo with `WSARecvFrom`/`WSASendTo` on the I/O completion port,
//! `--threads` workers dequeuing from it.
//!
//! What it is: the UDP half of `iocp`, on the port, workers and stop of [`super`]. Each
//! operation is one heap-allocated [`Op`], `#[repr(C)]` with its `OVERLAPPED` first, that owns
//! a 64 KiB buffer ([`DATAGRAM_BUFFER`]), the sender's `SOCKADDR_STORAGE` and its length. It is
//! handed to the kernel with `Box::into_raw` and taken back with `Box::from_raw` only when its
//! completion is dequeued (or when the call failed without starting, which queues no packet).
//!
//! - **Receives are posted ahead**: [`RECEIVES_PER_WORKER`] `WSARecvFrom` per worker, so the
//!   datagrams that arrive while an echo is in flight are taken off the socket into the other
//!   operations' buffers rather than left in the kernel's receive queue.
//! - **A receive's completion becomes the echo**: the same `Op` (its buffer, the address the
//!   receive filled in) goes back out as a `WSASendTo` of the bytes received, zero included;
//!   when the send completes the `Op` is posted as a receive again. So an `Op` is always in
//!   the kernel, as a receive or as a send, and the buffer is never copied.
//! - **The echo rule is `datagram`'s**: sent once; a send that fails at once or completes with
//!   an error is one `send_drops` and the `Op` goes back to receiving, never a retry. A receive
//!   that completes (or fails at once) with an error about an earlier datagram
//!   (`WSAECONNRESET`/`WSAENETRESET`, Windows' report of an ICMP error for an earlier echo;
//!   `WSAEMSGSIZE`, a datagram larger than the buffer, which cannot happen with 64 KiB) is
//!   posted again; any other receive error ends the server, as in every model.
//! - **No skip-on-success.** Every completion, inline ones included, goes through the port, so
//!   one path handles all of them. The TCP side sets `FILE_SKIP_COMPLETION_PORT_ON_SUCCESS`
//!   to save a dequeue per operation, which needs its IFS check and a budget of inline
//!   completions per connection; here every worker serves the one socket, so a worker
//!   following inline completions would keep the socket's datagrams on its thread and there
//!   is no connection to budget.
//! - **One socket.** On Windows `--threads N` gives N clones of one socket (there is no
//!   balancing `SO_REUSEPORT`): the first is served, the clones are closed before anything is
//!   posted, and the workers share the socket through the port.
//! - **Stop**: the stop waker posts one packet per worker; once they have left, `CancelIoEx`
//!   cancels every operation on the socket and each is dequeued before it is freed. A receive
//!   that completed with a datagram before its cancel counts as received and dropped (it will
//!   not be echoed); a send that completed counts as sent; a cancelled send, as dropped. An
//!   operation that never comes back within the drain limit is leaked with a warning.
//!
//! What it is not: a second port or worker loop (those are [`super`]'s), nor a reader of the
//! kernel's receive drops: Windows has no per-socket count (`rcvbuf_drops` is null, as for
//! every model there, `datagram/portable.rs`).
#![allow(unsafe_code)] // overlapped operations whose memory the kernel owns: the FFI edge

use std::io;
use std::mem;
use std::os::windows::io::AsRawSocket;
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::Networking::WinSock::{
    SOCKADDR, SOCKADDR_STORAGE, SOCKET, SOCKET_ERROR, WSA_IO_PENDING, WSABUF, WSAECONNRESET,
    WSAEMSGSIZE, WSAENETRESET, WSARecvFrom, WSASendTo,
};
use windows_sys::Win32::System::IO::{CancelIoEx, OVERLAPPED, OVERLAPPED_ENTRY};
use windows_sys::Win32::System::Threading::INFINITE;

use super::{BATCH, Port, drain_port, result_of, run_workers, work_loop, wsa_error};
use crate::ctx::Ctx;
use crate::datagram::{DATAGRAM_BUFFER, Endpoint, transient};
use crate::stats::LoopCounters;

/// `WSARecvFrom` calls each worker keeps in the kernel (each with its own 64 KiB buffer).
const RECEIVES_PER_WORKER: usize = 8;

/// One datagram's operation: a receive into `buf`, or the echo of what it received.
#[repr(C)]
struct Op {
    /// First, so the pointer a completion hands back is the `Op`'s own.
    overlapped: OVERLAPPED,
    /// Whether the operation in flight is the echo (a `WSASendTo`), not a receive.
    send: bool,
    buf: Box<[u8]>,
    /// Points into `buf`: all of it for a receive, the datagram for its echo.
    wsabuf: WSABUF,
    /// The sender, filled in by the receive; where the echo goes.
    from: SOCKADDR_STORAGE,
    /// `from`'s length: room on input to a receive, the address's length after it.
    fromlen: i32,
    /// `WSARecvFrom`'s flags, in and out.
    flags: u32,
}

impl Op {
    fn boxed() -> Box<Op> {
        let mut buf = vec![0u8; DATAGRAM_BUFFER].into_boxed_slice();
        Box::new(Op {
            // SAFETY: OVERLAPPED is plain integers and a handle; all zeros is its start state.
            overlapped: unsafe { mem::zeroed() },
            send: false,
            wsabuf: WSABUF {
                len: 0,
                buf: buf.as_mut_ptr(),
            },
            buf,
            // SAFETY: SOCKADDR_STORAGE is plain data; all zeros is a valid (empty) address.
            from: unsafe { mem::zeroed() },
            fromlen: 0,
            flags: 0,
        })
    }

    /// Made ready to be issued again: a fresh `OVERLAPPED`, and `wsabuf` over `len` bytes.
    fn reset(&mut self, send: bool, len: usize) {
        // SAFETY: as in `boxed`; the previous operation completed, the kernel is done with it.
        self.overlapped = unsafe { mem::zeroed() };
        self.send = send;
        self.wsabuf = WSABUF {
            len: len as u32,
            buf: self.buf.as_mut_ptr(),
        };
    }
}

/// The server: the port, the one socket, and the operations in the kernel.
struct Udp<'a> {
    ctx: &'a Ctx,
    port: Arc<Port>,
    /// The endpoint's socket, kept open by `run` until everything is drained.
    socket: SOCKET,
    counters: Arc<LoopCounters>,
    /// `Op`s handed to the kernel whose completion has not been dequeued yet.
    in_kernel: AtomicUsize,
}

/// Runs the server: posts the receives, then `--threads` workers until stop, then drains.
pub(crate) fn run(endpoints: Vec<Endpoint>, ctx: &Ctx) -> io::Result<()> {
    let mut endpoints = endpoints.into_iter();
    let endpoint = endpoints
        .next()
        .ok_or_else(|| io::Error::other("no socket"))?;
    // The others are clones of this one socket (see the module doc): closed before anything
    // is posted, so no operation is tied to a handle that goes away.
    drop(endpoints);
    let threads = ctx.config.threads;
    let port = Arc::new(Port::new(threads)?);
    let socket = endpoint.socket.as_raw_socket() as SOCKET;
    port.associate(socket)?;
    let receives = RECEIVES_PER_WORKER * threads;
    ctx.shared.setting("udp_receives_in_flight", receives);
    ctx.shared.setting("batch", BATCH);
    ctx.shared.setting("skip_on_success", false);
    port.wake_on_stop(ctx, threads);
    let server = Udp {
        ctx,
        port,
        socket,
        counters: ctx.shared.new_loop(),
        in_kernel: AtomicUsize::new(0),
    };
    // Posted before ready: once the server says it serves, its receives are in the kernel.
    let mut result = (0..receives).try_for_each(|_| server.receive(Op::boxed()));
    if result.is_ok() {
        ctx.ready();
        result = run_workers(ctx, "iocp-udp", || server.work());
    }
    // Whatever ended the workers, nothing is freed while the kernel may still use it.
    server.drain();
    drop(endpoint);
    result
}

/// A receive error about an earlier datagram or the call, not the socket: post it again.
fn skippable(e: &io::Error) -> bool {
    transient(e)
        || matches!(
            e.raw_os_error(),
            Some(WSAECONNRESET | WSAENETRESET | WSAEMSGSIZE)
        )
}

impl Udp<'_> {
    fn work(&self) -> io::Result<()> {
        let timeout = if self.ctx.config.busy_poll {
            0
        } else {
            INFINITE
        };
        work_loop(
            &self.port,
            self.ctx,
            || timeout,
            |e| self.completed(e),
            || {},
        )
    }

    /// A dequeued operation, while serving: count it and issue what comes next.
    fn completed(&self, e: &OVERLAPPED_ENTRY) -> io::Result<()> {
        // SAFETY: every non-null OVERLAPPED on this port is the first field of an `Op` this
        // server handed over with Box::into_raw, and its completion (this entry) is how it
        // comes back, once.
        let op = unsafe { Box::from_raw(e.lpOverlapped.cast::<Op>()) };
        self.in_kernel.fetch_sub(1, Relaxed);
        let result = result_of(&op.overlapped, self.socket, e.dwNumberOfBytesTransferred);
        match (op.send, result) {
            (true, result) => {
                self.sent(result);
                self.receive(op)
            }
            (false, Ok(n)) => {
                self.counters.datagram_in(n);
                self.echo(op, n)
            }
            (false, Err(e)) if skippable(&e) => {
                log::debug!("udp: receive: {e} (skipped, receiving again)");
                self.receive(op)
            }
            (false, Err(e)) => Err(e),
        }
    }

    /// Counts the end of an echo: sent, or dropped.
    fn sent(&self, result: io::Result<usize>) {
        match result {
            Ok(n) => self.counters.datagram_out(n),
            Err(e) => {
                log::debug!("udp: echo dropped: {e}");
                self.counters.send_drop();
            }
        }
    }

    /// Posts `op` as a receive into its whole buffer. A receive that fails at once with an
    /// error about an earlier datagram is posted again (each such error is reported once, so
    /// this ends); any other failure is the server's.
    fn receive(&self, mut op: Box<Op>) -> io::Result<()> {
        loop {
            op.reset(false, DATAGRAM_BUFFER);
            op.fromlen = mem::size_of::<SOCKADDR_STORAGE>() as i32;
            op.flags = 0;
            let raw = Box::into_raw(op);
            self.in_kernel.fetch_add(1, Relaxed);
            // SAFETY: `raw` is a live Box just leaked; the kernel owns it (and writes the
            // datagram into its buffer, the sender into `from`, its length into `fromlen`)
            // until its completion is dequeued. The socket is associated with the port and not
            // in skip-on-success mode, so even an immediate success queues a packet.
            let rc = unsafe {
                WSARecvFrom(
                    self.socket,
                    &(*raw).wsabuf,
                    1,
                    ptr::null_mut(),
                    &mut (*raw).flags,
                    (&raw mut (*raw).from).cast::<SOCKADDR>(),
                    &mut (*raw).fromlen,
                    &mut (*raw).overlapped,
                    None,
                )
            };
            let Some(e) = (rc == SOCKET_ERROR).then(wsa_error) else {
                return Ok(());
            };
            if e.raw_os_error() == Some(WSA_IO_PENDING) {
                return Ok(());
            }
            // SAFETY: the call failed without starting the operation; no packet is queued and
            // nothing else holds `raw`.
            op = unsafe { Box::from_raw(raw) };
            self.in_kernel.fetch_sub(1, Relaxed);
            if !skippable(&e) {
                return Err(e);
            }
            log::debug!("udp: receive: {e} (skipped, receiving again)");
        }
    }

    /// Posts `op`'s first `len` bytes back to the sender its receive filled in. A send that
    /// fails at once is dropped and counted, and `op` goes back to receiving.
    fn echo(&self, mut op: Box<Op>, len: usize) -> io::Result<()> {
        op.reset(true, len);
        let raw = Box::into_raw(op);
        self.in_kernel.fetch_add(1, Relaxed);
        // SAFETY: `raw` is a live Box just leaked; the kernel owns it (reads the datagram from
        // its buffer and the address from `from`) until its completion is dequeued; as for
        // the receive, an immediate success queues a packet too.
        let rc = unsafe {
            WSASendTo(
                self.socket,
                &(*raw).wsabuf,
                1,
                ptr::null_mut(),
                0,
                (&raw const (*raw).from).cast::<SOCKADDR>(),
                (*raw).fromlen,
                &mut (*raw).overlapped,
                None,
            )
        };
        let Some(e) = (rc == SOCKET_ERROR).then(wsa_error) else {
            return Ok(());
        };
        if e.raw_os_error() == Some(WSA_IO_PENDING) {
            return Ok(());
        }
        // SAFETY: the call failed without starting the operation; no packet is queued and
        // nothing else holds `raw`.
        let op = unsafe { Box::from_raw(raw) };
        self.in_kernel.fetch_sub(1, Relaxed);
        self.sent(Err(e));
        self.receive(op)
    }

    /// Stop, after every worker left: cancel what is in flight and dequeue every operation
    /// before any is freed.
    fn drain(&self) {
        // SAFETY: cancels every operation on an open socket we own; one that already completed
        // (or a FALSE return, ERROR_NOT_FOUND) leaves its packet queued, dequeued below.
        unsafe { CancelIoEx(self.socket as HANDLE, ptr::null()) };
        let drained = drain_port(
            &self.port,
            &mut (),
            |()| self.in_kernel.load(Relaxed) == 0,
            |(), e| {
                // SAFETY: as in `completed`: an `Op` of ours, given back once by its completion.
                let op = unsafe { Box::from_raw(e.lpOverlapped.cast::<Op>()) };
                self.in_kernel.fetch_sub(1, Relaxed);
                match (
                    op.send,
                    result_of(&op.overlapped, self.socket, e.dwNumberOfBytesTransferred),
                ) {
                    // Received before the cancel took effect, and not echoed: the stop drops it.
                    (false, Ok(n)) => {
                        self.counters.datagram_in(n);
                        self.counters.send_drop();
                    }
                    (false, Err(_)) => {}
                    (true, result) => self.sent(result),
                }
            },
        );
        if !drained {
            log::warn!(
                "iocp: {} UDP operations leaked at stop",
                self.in_kernel.load(Relaxed)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};
    use windows_sys::Win32::Networking::WinSock::WSAENOTSOCK;

    #[test]
    fn only_errors_about_an_earlier_datagram_are_skipped() {
        for code in [WSAECONNRESET, WSAENETRESET, WSAEMSGSIZE] {
            assert!(skippable(&io::Error::from_raw_os_error(code)), "{code}");
        }
        assert!(!skippable(&io::Error::from_raw_os_error(WSAENOTSOCK)));
    }

    /// An echo whose `WSASendTo` fails at once (port 0 is no destination) is one send drop,
    /// never retried, and its `Op` goes back to receiving; that receive then serves the next
    /// datagram (received, echoed), and stop cancels and takes back the receive in flight.
    #[test]
    fn a_send_that_fails_at_once_is_one_drop_and_the_op_receives_again() {
        let (ready, _) = mpsc::channel();
        let ctx = Ctx::new(Config::default(), ready);
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let raw = socket.as_raw_socket() as SOCKET;
        let port = Arc::new(Port::new(1).unwrap());
        port.associate(raw).unwrap();
        let server = Udp {
            ctx: &ctx,
            port,
            socket: raw,
            counters: ctx.shared.new_loop(),
            in_kernel: AtomicUsize::new(0),
        };
        let nowhere = socket2::SockAddr::from("127.0.0.1:0".parse::<SocketAddr>().unwrap());
        let mut op = Op::boxed();
        // SAFETY: `nowhere` is `len()` bytes of address, at most a SOCKADDR_STORAGE.
        unsafe {
            ptr::copy_nonoverlapping(
                nowhere.as_ptr().cast::<u8>(),
                (&raw mut op.from).cast::<u8>(),
                nowhere.len() as usize,
            )
        };
        op.fromlen = nowhere.len();
        server.echo(op, 3).unwrap();
        assert_eq!(server.counters.send_drops_now(), 1, "one drop, no retry");
        assert_eq!(server.in_kernel.load(Relaxed), 1, "the Op receives again");

        let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        client.connect(socket.local_addr().unwrap()).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        client.send(b"abc").unwrap();
        // Two completions: the receive (which posts the echo), then the echo (which posts
        // the receive again).
        // SAFETY: OVERLAPPED_ENTRY is plain data; all zeros is a valid value to be overwritten.
        let mut entries: [OVERLAPPED_ENTRY; BATCH] = unsafe { mem::zeroed() };
        let mut seen = 0;
        let until = Instant::now() + Duration::from_secs(10);
        while seen < 2 && Instant::now() < until {
            let n = server.port.dequeue(&mut entries, 100).unwrap();
            for e in &entries[..n] {
                server.completed(e).unwrap();
                seen += 1;
            }
        }
        let mut back = [0u8; 8];
        assert_eq!(client.recv(&mut back).unwrap(), 3);
        assert_eq!(&back[..3], b"abc");
        assert_eq!(server.counters.datagrams_in_now(), 1);
        assert_eq!(server.in_kernel.load(Relaxed), 1, "receiving again");

        server.drain();
        assert_eq!(
            server.in_kernel.load(Relaxed),
            0,
            "the cancelled receive came back"
        );
        assert_eq!(server.counters.datagrams_in_now(), 1);
        assert_eq!(server.counters.send_drops_now(), 1);
    }
}
