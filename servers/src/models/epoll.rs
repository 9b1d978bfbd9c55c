//! Raw `epoll`, edge-triggered, written directly against libc.
//!
//! Each connection is registered once for `EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET` and never
//! modified again: with edge triggering the state machine simply runs until the socket would
//! block, so a connection costs one `epoll_ctl` in its lifetime (plus the implicit removal on
//! close). Wake-ups come through an `eventfd`. Connections that spent their read budget go on a
//! ready list and are driven again next turn without waiting (an edge will not come again).
#![allow(unsafe_code)] // raw epoll/eventfd calls: the FFI edge, each with its SAFETY line

use std::io;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use slab::Slab;

use crate::conn::{Conn, drive_keyed};
use crate::ctx::Ctx;
use crate::listen::{Incoming, Pacer, prepare_nonblocking};
use crate::sys::timeout_ms;

const LISTENER: u64 = u64::MAX - 1;
const WAKER: u64 = u64::MAX;
const EVENTS: usize = 1024;

pub(crate) fn availability() -> Result<(), String> {
    Epoll::new()
        .map(drop)
        .map_err(|e| format!("epoll_create1 failed: {e}"))
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

pub(crate) fn run(incoming: Incoming, ctx: &Ctx) -> io::Result<()> {
    let counters = ctx.shared.new_loop();
    let epoll = Epoll::new()?;
    let wake = EventFd::new()?;
    epoll.add(wake.0.as_raw_fd(), libc::EPOLLIN as u32, WAKER)?;
    ctx.stop.on_stop(wake.waker()?);
    let (listener, inbox) = match incoming {
        Incoming::Listener(l) => {
            l.set_nonblocking(true)?;
            epoll.add(
                l.as_raw_fd(),
                (libc::EPOLLIN | libc::EPOLLET) as u32,
                LISTENER,
            )?;
            (Some(l), None)
        }
        Incoming::Handoff(slot) => (None, Some(slot.install_inbox(wake.waker()?))),
    };
    let mut conns: Slab<Conn<TcpStream>> = Slab::new();
    let mut yielded: Vec<usize> = Vec::new();
    let mut events: Vec<libc::epoll_event> = Vec::with_capacity(EVENTS);
    let mut pacer = Pacer::new(listener.is_some());
    ctx.ready();

    let adopt = |stream: TcpStream, conns: &mut Slab<Conn<TcpStream>>, yielded: &mut Vec<usize>| {
        if !prepare_nonblocking(&stream, &ctx.shared) {
            return;
        }
        let fd = stream.as_raw_fd();
        let key = conns.insert(Conn::new(stream, ctx.config.buffer_size));
        let interest = libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET;
        if epoll.add(fd, interest as u32, key as u64).is_err() {
            ctx.shared.accept_error();
            conns.remove(key);
            return;
        }
        ctx.shared.opened();
        // Data may have arrived before registration; the edge for it is not lost (EPOLL_CTL_ADD
        // reports current readiness), but driving now saves a turn.
        yielded.push(key);
    };

    while !ctx.stop.is_stopped() {
        if let Some(l) = &listener {
            pacer.accept_if_due(
                &ctx.shared,
                || l.accept().map(|(s, _)| s),
                |s| adopt(s, &mut conns, &mut yielded),
            );
        }
        // Drive connections that still had work left (or are new) before sleeping.
        for key in std::mem::take(&mut yielded) {
            drive_keyed(&mut conns, key, false, &mut yielded, &ctx.shared, &counters);
        }
        let timeout = if yielded.is_empty() {
            timeout_ms(pacer.timeout())
        } else {
            0
        };
        epoll.wait(&mut events, timeout)?;
        for ev in &events {
            match ev.u64 {
                WAKER => {
                    wake.drain();
                    if let Some(inbox) = &inbox {
                        for s in inbox.take() {
                            adopt(s, &mut conns, &mut yielded);
                        }
                    }
                }
                LISTENER => pacer.signalled(),
                key => {
                    let closed = ev.events
                        & (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32
                        != 0;
                    drive_keyed(
                        &mut conns,
                        key as usize,
                        closed,
                        &mut yielded,
                        &ctx.shared,
                        &counters,
                    );
                }
            }
        }
    }
    for (_, conn) in conns {
        conn.close(&counters, &ctx.shared);
    }
    Ok(())
}
