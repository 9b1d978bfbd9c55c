//! Raw `epoll`, edge-triggered, written directly against libc: the calls, for `edge`'s loop.
//!
//! Each connection is registered once for `EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET` and never
//! modified again: with edge triggering the state machine simply runs until the socket would
//! block, so a connection costs one `epoll_ctl` in its lifetime (plus the implicit removal on
//! close). Wake-ups come through an `eventfd`. The loop itself (ready list, accept pacing, the
//! slab) is `edge`'s; this file is only what epoll does differently from mio and polling.
#![allow(unsafe_code)] // raw epoll/eventfd calls: the FFI edge, each with its SAFETY line

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::ctx::Ctx;
use crate::datagram::{Echo, Endpoint};
use crate::listen::Incoming;
use crate::stats::Shared;
use crate::sys::timeout_ms;

use super::edge::{self, Backend, Ready};

const LISTENER: u64 = u64::MAX - 1;
const WAKER: u64 = u64::MAX;
const EVENTS: usize = 1024;
/// Every connection's one registration: both directions, the peer's FIN, edge-triggered.
const CONN_INTEREST: i32 = libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET;
/// Event bits that mean the peer closed (or failed): read to end of file from then on.
const CLOSED: i32 = libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR;

pub(crate) fn availability() -> Result<(), String> {
    Epoll::new()
        .map(drop)
        .map_err(|e| format!("epoll_create1 failed: {e}"))
}

pub(crate) fn run(incoming: Incoming, ctx: &Ctx) -> io::Result<()> {
    let epoll = Epoll::new()?;
    let wake = EventFd::new()?;
    epoll.add(wake.0.as_raw_fd(), libc::EPOLLIN as u32, WAKER)?;
    edge::run(
        Loop {
            epoll,
            wake,
            events: Vec::with_capacity(EVENTS),
        },
        incoming,
        ctx,
    )
}

/// One UDP loop: the socket registered once, edge-triggered, for reading only (an echo that
/// cannot be sent is dropped, so nothing ever waits to write); each event drains it.
pub(crate) fn run_udp(endpoint: Endpoint, ctx: &Ctx) -> io::Result<()> {
    const SOCKET: u64 = 0;
    let epoll = Epoll::new()?;
    let wake = EventFd::new()?;
    epoll.add(wake.0.as_raw_fd(), libc::EPOLLIN as u32, WAKER)?;
    endpoint.socket.set_nonblocking(true)?;
    let interest = (libc::EPOLLIN | libc::EPOLLET) as u32;
    epoll.add(endpoint.socket.as_raw_fd(), interest, SOCKET)?;
    ctx.stop.on_stop(wake.waker()?);
    let counters = ctx.shared.new_loop();
    let mut echo = Echo::new();
    let mut events = Vec::with_capacity(EVENTS);
    let timeout = if ctx.config.busy_poll { 0 } else { -1 };
    ctx.ready();
    // Datagrams may have arrived between bind and registration: drain once before waiting.
    echo.drain(&endpoint.socket, &endpoint.drops, &counters)?;
    while !ctx.stop.is_stopped() {
        epoll.wait(&mut events, timeout)?;
        for ev in &events {
            match ev.u64 {
                WAKER => wake.drain(),
                _ => echo.drain(&endpoint.socket, &endpoint.drops, &counters)?,
            }
        }
    }
    Ok(())
}

/// One loop's epoll instance, its eventfd and its event buffer.
struct Loop {
    epoll: Epoll,
    wake: EventFd,
    events: Vec<libc::epoll_event>,
}

impl Backend for Loop {
    type Listener = TcpListener;
    type Stream = TcpStream;
    type Sock = TcpStream;

    fn waker(&self) -> io::Result<impl Fn() + Send + Sync + 'static> {
        self.wake.waker()
    }

    fn listen(&self, listener: TcpListener) -> io::Result<TcpListener> {
        let interest = (libc::EPOLLIN | libc::EPOLLET) as u32;
        self.epoll.add(listener.as_raw_fd(), interest, LISTENER)?;
        Ok(listener)
    }

    fn accept(&self, listener: &TcpListener, shared: &Shared) -> io::Result<Option<TcpStream>> {
        edge::accept_std(listener, shared)
    }

    fn handed_off(&self, stream: TcpStream, shared: &Shared) -> Option<TcpStream> {
        edge::std_stream(stream, shared)
    }

    fn register(&self, stream: TcpStream, key: usize) -> io::Result<TcpStream> {
        self.epoll
            .add(stream.as_raw_fd(), CONN_INTEREST as u32, key as u64)?;
        Ok(stream)
    }

    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.epoll.wait(&mut self.events, timeout_ms(timeout))
    }

    fn events(&self) -> impl Iterator<Item = Ready> + '_ {
        self.events.iter().map(|ev| match ev.u64 {
            WAKER => Ready::Wake,
            LISTENER => Ready::Listener,
            key => Ready::Conn {
                key: key as usize,
                peer_closed: ev.events & CLOSED as u32 != 0,
            },
        })
    }

    fn woken(&self) {
        self.wake.drain();
    }
}

struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    fn new() -> io::Result<Self> {
        // SAFETY: epoll_create1 takes a flag word and touches no memory of ours.
        let fd = syscall!(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: epoll_create1 just returned this descriptor and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd })
    }

    fn add(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: both descriptors are open; `ev` is a valid epoll_event that the kernel copies.
        syscall!(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })
            .map(drop)
    }

    fn wait(&self, events: &mut Vec<libc::epoll_event>, timeout: i32) -> io::Result<()> {
        events.clear();
        // SAFETY: `events` has capacity for EVENTS entries and the kernel writes at most that many.
        match syscall!(unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                events.as_mut_ptr(),
                EVENTS as i32,
                timeout,
            )
        }) {
            Ok(n) => {
                // SAFETY: the kernel initialised the first `n` entries (n <= capacity).
                unsafe { events.set_len(n as usize) };
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(e),
        }
    }
}

struct EventFd(OwnedFd);

impl EventFd {
    fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes two plain values and touches no memory of ours.
        let fd = syscall!(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: eventfd just returned this descriptor and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self(fd))
    }

    fn waker(&self) -> io::Result<impl Fn() + Send + Sync + 'static> {
        let fd = self.0.try_clone()?;
        Ok(move || {
            let one = 1u64.to_ne_bytes();
            // SAFETY: `fd` is an open eventfd owned by this closure and `one` is 8 readable bytes.
            let _ = syscall!(unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), 8) });
        })
    }

    fn drain(&self) {
        let mut buf = [0u8; 8];
        // SAFETY: `buf` is 8 writable bytes; a nonblocking eventfd read resets the counter.
        let _ = syscall!(unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), 8) });
    }
}
