//! The level-triggered event loop that `select` and `poll` share.
//!
//! Each turn declares interest for every socket from scratch (that O(n) rebuild is what these
//! APIs cost, and what the comparison is meant to show), waits, then drives the ready
//! connections through the shared state machine. The wait itself is a [`Backend`]: `poll(2)`,
//! `select(2)`, Winsock's `WSAPoll` and `select`, each a small module of raw calls.
//!
//! UDP ([`run_udp`]) uses the same backends over two entries: the wake-up and the socket.

use std::io;
use std::net::TcpStream;
use std::time::Duration;

use crate::conn::{Conn, Status};
use crate::ctx::Ctx;
use crate::datagram::{Echo, Endpoint};
use crate::listen::{Incoming, Pacer, prepare_nonblocking};
use crate::sys::{RawSock, raw};
use crate::wake::WakeSocket;

/// One readiness wait over a list of sockets, rebuilt every turn.
pub(crate) trait Backend {
    /// Whether the backend can watch this socket at all, given the loop already watches
    /// `watched` sockets (`select(2)` cannot watch a descriptor at or above `FD_SETSIZE`;
    /// Winsock's `select` cannot watch more sockets than its set holds); refused sockets are
    /// closed with a warning.
    fn admits(&self, _fd: RawSock, _watched: usize) -> Result<(), String> {
        Ok(())
    }
    /// Forgets last turn's entries.
    fn clear(&mut self);
    /// Adds an entry; entries are numbered in the order they are added.
    fn add(&mut self, fd: RawSock, read: bool, write: bool);
    /// Waits until an entry is ready or the timeout passes. An interrupted wait returns `Ok`
    /// with nothing ready.
    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()>;
    /// Whether entry `index` became ready (readable, writable, hang-up or error).
    fn is_ready(&self, index: usize) -> bool;
}

/// Runs one level-triggered loop until stop.
pub(crate) fn run(mut backend: impl Backend, incoming: Incoming, ctx: &Ctx) -> io::Result<()> {
    let counters = ctx.shared.new_loop();
    let wake = WakeSocket::new()?;
    backend
        .admits(raw(wake.socket()), 0)
        .map_err(io::Error::other)?;
    ctx.stop.on_stop(wake.waker());
    let (listener, inbox) = match incoming {
        Incoming::Listener(l) => {
            l.set_nonblocking(true)?;
            backend.admits(raw(&l), 1).map_err(io::Error::other)?;
            (Some(l), None)
        }
        Incoming::Handoff(slot) => (None, Some(slot.install_inbox(wake.waker()))),
    };
    let mut conns: Vec<(Conn<TcpStream>, Status)> = Vec::new();
    let mut pacer = Pacer::new(listener.is_some());
    ctx.ready();

    while !ctx.stop.is_stopped() {
        // Declare this turn's interest: wake-up, listener (unless paused), then connections.
        backend.clear();
        backend.add(raw(wake.socket()), true, false);
        let listening = listener.as_ref().filter(|_| pacer.watching());
        if let Some(l) = listening {
            backend.add(raw(l), true, false);
        }
        let base = 1 + usize::from(listening.is_some());
        for (conn, status) in &conns {
            // Backpressure: a connection with bytes pending is watched for writing only.
            let write = *status == Status::WantWrite;
            backend.add(raw(&conn.sock), !write, write);
        }
        let polled = conns.len();
        // Busy-poll: never sleep; the stop flag is still read every turn, so stop stays prompt.
        backend.wait(if ctx.config.busy_poll {
            Some(Duration::ZERO)
        } else {
            pacer.timeout()
        })?;

        // Drive the ready connections before adopting new ones, so indexes still match.
        for (i, (conn, status)) in conns.iter_mut().enumerate() {
            if backend.is_ready(base + i) {
                *status = conn.drive(&counters);
            }
        }
        debug_assert_eq!(polled, conns.len());
        for i in (0..conns.len()).rev() {
            if conns[i].1 == Status::Done {
                conns.swap_remove(i).0.close(&counters, &ctx.shared);
            }
        }

        if backend.is_ready(0) {
            wake.drain();
            if ctx.stop.is_stopped() {
                break;
            }
            for stream in inbox.iter().flat_map(|inbox| inbox.take()) {
                adopt(&backend, stream, ctx, &mut conns);
            }
        }
        if let Some(l) = &listener {
            if listening.is_some() && backend.is_ready(1) {
                pacer.signalled();
            }
            pacer.accept_if_due(
                &ctx.shared,
                || l.accept().map(|(s, _)| s),
                |s| adopt(&backend, s, ctx, &mut conns),
            );
        }
    }
    for (conn, _) in conns {
        conn.close(&counters, &ctx.shared);
    }
    Ok(())
}

/// Runs one level-triggered UDP loop until stop: each turn watches the wake-up socket and the
/// datagram socket for reading (never for writing: an echo that cannot be sent is dropped,
/// see `datagram`), then echoes what the socket holds.
pub(crate) fn run_udp(mut backend: impl Backend, endpoint: Endpoint, ctx: &Ctx) -> io::Result<()> {
    let counters = ctx.shared.new_loop();
    let wake = WakeSocket::new()?;
    for (watched, sock) in [raw(wake.socket()), raw(&endpoint.socket)]
        .into_iter()
        .enumerate()
    {
        backend.admits(sock, watched).map_err(io::Error::other)?;
    }
    ctx.stop.on_stop(wake.waker());
    endpoint.socket.set_nonblocking(true)?;
    let mut echo = Echo::new();
    ctx.ready();
    while !ctx.stop.is_stopped() {
        backend.clear();
        backend.add(raw(wake.socket()), true, false);
        backend.add(raw(&endpoint.socket), true, false);
        backend.wait(ctx.config.busy_poll.then_some(Duration::ZERO))?;
        if backend.is_ready(0) {
            wake.drain();
        }
        if backend.is_ready(1) {
            echo.drain(&endpoint.socket, &endpoint.drops, &counters)?;
        }
    }
    Ok(())
}

/// Takes a new connection into the loop, or refuses it if the backend cannot watch it.
fn adopt(
    backend: &impl Backend,
    stream: TcpStream,
    ctx: &Ctx,
    conns: &mut Vec<(Conn<TcpStream>, Status)>,
) {
    // Watched: the wake-up socket, the listener (counted whether or not it is paused) and
    // every connection.
    if let Err(why) = backend.admits(raw(&stream), 2 + conns.len()) {
        ctx.shared.accept_error();
        log::warn!("{why}");
        return; // dropping the stream closes it: the client sees the connection end
    }
    if !prepare_nonblocking(&stream, &ctx.shared) {
        return;
    }
    ctx.shared.opened();
    conns.push((Conn::new(stream, ctx.config.buffer_size), Status::WantRead));
}
