//! The `mio` crate: epoll on Linux, kqueue on macOS/BSD, IOCP with AFD polling on Windows.
//!
//! Same shape as the raw `epoll` model (edge-triggered, registered once for both directions,
//! a ready list for connections that spent their budget), but through mio's portable API, so the
//! difference between the two is the cost of the abstraction.

use std::io;
use std::sync::Arc;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::conn::{Conn, drive_keyed};
use crate::ctx::Ctx;
use crate::listen::{Incoming, Pacer, prepare_nonblocking};

const LISTENER: Token = Token(usize::MAX - 1);
/// mio's Windows backend (IOCP with AFD polls) re-arms a socket only after an operation returned
/// `WouldBlock`, so there connections read until it (see `conn`'s short-read rule).
const REARMS_ONLY_ON_WOULD_BLOCK: bool = cfg!(windows);
const WAKER: Token = Token(usize::MAX);

pub(crate) fn run(incoming: Incoming, ctx: &Ctx) -> io::Result<()> {
    let counters = ctx.shared.new_loop();
    let mut poll = Poll::new()?;
    // A clone of the registry, so `adopt` can register while `poll` waits for events.
    let registry = poll.registry().try_clone()?;
    let waker = Arc::new(Waker::new(&registry, WAKER)?);
    let w = waker.clone();
    ctx.stop.on_stop(move || {
        let _ = w.wake();
    });
    let (listener, inbox) = match incoming {
        Incoming::Listener(l) => {
            l.set_nonblocking(true)?;
            let mut l = TcpListener::from_std(l);
            registry.register(&mut l, LISTENER, Interest::READABLE)?;
            (Some(l), None)
        }
        Incoming::Handoff(slot) => {
            let w = waker.clone();
            (
                None,
                Some(slot.install_inbox(move || {
                    let _ = w.wake();
                })),
            )
        }
    };
    let mut conns: Slab<Conn<TcpStream>> = Slab::new();
    let mut yielded: Vec<usize> = Vec::new();
    let mut events = Events::with_capacity(1024);
    let mut pacer = Pacer::new(listener.is_some());
    ctx.ready();

    let adopt =
        |mut stream: TcpStream, conns: &mut Slab<Conn<TcpStream>>, yielded: &mut Vec<usize>| {
            let entry = conns.vacant_entry();
            let key = entry.key();
            let interest = Interest::READABLE | Interest::WRITABLE;
            if registry
                .register(&mut stream, Token(key), interest)
                .is_err()
            {
                ctx.shared.accept_error();
                return;
            }
            let conn = Conn::new(stream, ctx.config.buffer_size);
            entry.insert(if REARMS_ONLY_ON_WOULD_BLOCK {
                conn.draining()
            } else {
                conn
            });
            ctx.shared.opened();
            yielded.push(key);
        };

    while !ctx.stop.is_stopped() {
        if let Some(l) = &listener {
            pacer.accept_if_due(
                &ctx.shared,
                || l.accept().map(|(s, _)| s),
                |s| {
                    let _ = s.set_nodelay(true);
                    adopt(s, &mut conns, &mut yielded)
                },
            );
        }
        for key in std::mem::take(&mut yielded) {
            drive_keyed(&mut conns, key, false, &mut yielded, &ctx.shared, &counters);
        }
        let timeout = if yielded.is_empty() {
            pacer.timeout()
        } else {
            Some(std::time::Duration::ZERO)
        };
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for ev in &events {
            match ev.token() {
                WAKER => {
                    for s in inbox.iter().flat_map(|i| i.take()) {
                        // Handed-off sockets come blocking from the acceptor thread.
                        if prepare_nonblocking(&s, &ctx.shared) {
                            adopt(TcpStream::from_std(s), &mut conns, &mut yielded);
                        }
                    }
                }
                LISTENER => pacer.signalled(),
                Token(key) => {
                    let closed = ev.is_read_closed() || ev.is_error();
                    drive_keyed(
                        &mut conns,
                        key,
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
