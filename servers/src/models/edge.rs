//! The edge-triggered event loop that `epoll`, `mio` and `polling` share.
//!
//! What is the same in all three lives here: the slab of connections keyed by their event
//! token, the ready list (a connection that spent `conn`'s read budget is driven again next
//! turn without waiting, since no new edge will come for it), accept pacing (`listen::Pacer`),
//! the hand-off inbox, and the turn itself: accept if due, drive the ready list, wait (without
//! a timeout unless the ready list or an accept pause needs one), drive what the wait reported.
//!
//! What differs is a [`Backend`], and each model's file keeps its API's calls in plain sight:
//! how it registers a socket, how it waits, how it reports events, and whether it must re-arm
//! (`polling`'s oneshot) or never touches a registration again (`epoll`, `mio`). This module
//! makes no system call of its own and knows no readiness API.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use slab::Slab;

use crate::conn::{Conn, Socket, Status};
use crate::ctx::Ctx;
use crate::listen::{AcceptState, Inbox, Incoming, Pacer, prepare_nonblocking};
use crate::stats::{LoopCounters, Shared};

/// One thing a wait reported, in the loop's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ready {
    /// The waker fired (stop, or a handed-off connection).
    Wake,
    /// The listener has connections to accept.
    Listener,
    /// Connection `key` is ready; `peer_closed`: the event reported the peer's FIN or an error.
    Conn { key: usize, peer_closed: bool },
}

/// One edge-triggered (or oneshot) readiness API, as the shared loop drives it.
pub(crate) trait Backend {
    /// The listening socket, as registered with this API.
    type Listener;
    /// An accepted socket, ready to register (nonblocking, `TCP_NODELAY`).
    type Stream;
    /// A registered connection's socket: what [`Conn`] reads and writes.
    type Sock: Socket;
    /// Connections read until `WouldBlock` even after a short read (pollers that re-arm only
    /// then; see `conn`).
    const DRAIN: bool = false;
    /// Whether a wake-up arrives as a [`Ready::Wake`] event; if not, the hand-off inbox is
    /// checked after every wait.
    const WAKE_IS_AN_EVENT: bool = true;

    /// A wake-up another thread may call (stop, hand-off).
    fn waker(&self) -> io::Result<impl Fn() + Send + Sync + 'static>;
    /// Registers the (already nonblocking) listener.
    fn listen(&self, listener: TcpListener) -> io::Result<Self::Listener>;
    /// Accepts one connection: `Ok(None)` when it was accepted but refused (counted).
    fn accept(
        &self,
        listener: &Self::Listener,
        shared: &Shared,
    ) -> io::Result<Option<Self::Stream>>;
    /// Readies a connection the acceptor thread handed over (it comes blocking); `None` when
    /// refused (counted).
    fn handed_off(&self, stream: TcpStream, shared: &Shared) -> Option<Self::Stream>;
    /// Registers a connection under `key`, for both directions or for none (then
    /// [`rearm`](Self::rearm) arms it).
    fn register(&self, stream: Self::Stream, key: usize) -> io::Result<Self::Sock>;
    /// Called once an accept round drained the backlog (oneshot APIs re-arm the listener).
    fn rearm_listener(&self, _listener: &Self::Listener) -> io::Result<()> {
        Ok(())
    }
    /// Called after a drive ended waiting (`WantRead`/`WantWrite`); an error ends the
    /// connection.
    fn rearm(&self, _sock: &Self::Sock, _key: usize, _status: Status) -> io::Result<()> {
        Ok(())
    }
    /// Waits for events; `Some(ZERO)` polls. An interrupted wait returns `Ok` with no events.
    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()>;
    /// What the last wait reported.
    fn events(&self) -> impl Iterator<Item = Ready> + '_;
    /// Called on [`Ready::Wake`] (an eventfd is read empty here).
    fn woken(&self) {}
}

/// Runs one edge-triggered loop until stop.
pub(crate) fn run<B: Backend>(mut backend: B, incoming: Incoming, ctx: &Ctx) -> io::Result<()> {
    let counters = ctx.shared.new_loop();
    ctx.stop.on_stop(backend.waker()?);
    let (listener, inbox) = match incoming {
        Incoming::Listener(l) => {
            l.set_nonblocking(true)?;
            (Some(backend.listen(l)?), None)
        }
        Incoming::Handoff(slot) => (None, Some(slot.install_inbox(backend.waker()?))),
    };
    let mut conns = Conns::<B::Sock>::default();
    let mut pacer = Pacer::new(listener.is_some());
    ctx.ready();

    while !ctx.stop.is_stopped() {
        if let Some(l) = &listener {
            let state = pacer.accept_if_due(
                &ctx.shared,
                || backend.accept(l, &ctx.shared),
                |s| {
                    if let Some(s) = s {
                        conns.adopt(&backend, s, ctx);
                    }
                },
            );
            if state == Some(AcceptState::Drained) {
                backend.rearm_listener(l)?;
            }
        }
        // Drive connections that still had work left (or are new) before sleeping.
        for key in std::mem::take(&mut conns.ready) {
            conns.drive(&backend, key, false, ctx, &counters);
        }
        let timeout = if conns.ready.is_empty() {
            pacer.timeout()
        } else {
            Some(Duration::ZERO)
        };
        // Busy-poll: never sleep; the stop flag is still read every turn, so stop stays prompt.
        backend.wait(if ctx.config.busy_poll {
            Some(Duration::ZERO)
        } else {
            timeout
        })?;
        if !B::WAKE_IS_AN_EVENT {
            conns.adopt_inbox(&backend, inbox.as_ref(), ctx);
        }
        for ready in backend.events() {
            match ready {
                Ready::Wake => {
                    backend.woken();
                    if B::WAKE_IS_AN_EVENT {
                        conns.adopt_inbox(&backend, inbox.as_ref(), ctx);
                    }
                }
                Ready::Listener => pacer.signalled(),
                Ready::Conn { key, peer_closed } => {
                    conns.drive(&backend, key, peer_closed, ctx, &counters)
                }
            }
        }
    }
    for (_, conn) in conns.slab {
        conn.close(&counters, &ctx.shared);
    }
    Ok(())
}

/// A loop's connections, keyed by their event token, and its ready list.
struct Conns<S> {
    slab: Slab<Conn<S>>,
    /// Connections to drive next turn without waiting: new ones, and ones that spent their
    /// read budget (no new edge will come for them).
    ready: Vec<usize>,
}

impl<S> Default for Conns<S> {
    fn default() -> Self {
        Self {
            slab: Slab::new(),
            ready: Vec::new(),
        }
    }
}

impl<S: Socket> Conns<S> {
    /// Registers a new connection and puts it on the ready list: data may have arrived before
    /// registration, and driving it now saves a turn.
    fn adopt<B: Backend<Sock = S>>(&mut self, backend: &B, stream: B::Stream, ctx: &Ctx) {
        let entry = self.slab.vacant_entry();
        let key = entry.key();
        let Ok(sock) = backend.register(stream, key) else {
            ctx.shared.accept_error();
            return;
        };
        let conn = Conn::new(sock, ctx.config.buffer_size);
        entry.insert(if B::DRAIN { conn.draining() } else { conn });
        ctx.shared.opened();
        self.ready.push(key);
    }

    /// Adopts every connection the acceptor handed over since the last look.
    fn adopt_inbox<B: Backend<Sock = S>>(&mut self, backend: &B, inbox: Option<&Inbox>, ctx: &Ctx) {
        for s in inbox.iter().flat_map(|i| i.take()) {
            if let Some(s) = backend.handed_off(s, &ctx.shared) {
                self.adopt(backend, s, ctx);
            }
        }
    }

    /// Drives connection `key`: one that spent its budget goes on the ready list, one that
    /// waits is re-armed (if the API needs it), a finished one is removed and counted closed.
    fn drive<B: Backend<Sock = S>>(
        &mut self,
        backend: &B,
        key: usize,
        peer_closed: bool,
        ctx: &Ctx,
        counters: &LoopCounters,
    ) {
        let Some(conn) = self.slab.get_mut(key) else {
            return;
        };
        if peer_closed {
            conn.peer_closed();
        }
        match conn.drive(counters) {
            status @ (Status::WantRead | Status::WantWrite) => {
                if backend.rearm(&conn.sock, key, status).is_err() {
                    self.slab.remove(key).close(counters, &ctx.shared);
                }
            }
            Status::Yield => self.ready.push(key),
            Status::Done => self.slab.remove(key).close(counters, &ctx.shared),
        }
    }
}

/// [`Backend::accept`] for APIs that take `std`'s sockets: accept, then [`std_stream`].
pub(crate) fn accept_std(listener: &TcpListener, shared: &Shared) -> io::Result<Option<TcpStream>> {
    Ok(std_stream(listener.accept()?.0, shared))
}

/// [`Backend::handed_off`] for APIs that take `std`'s sockets: nonblocking and `TCP_NODELAY`
/// (a socket that cannot be made nonblocking is refused and counted).
pub(crate) fn std_stream(stream: TcpStream, shared: &Shared) -> Option<TcpStream> {
    prepare_nonblocking(&stream, shared).then_some(stream)
}
