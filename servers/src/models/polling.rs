//! The `polling` crate, smol's reactor: epoll/kqueue/IOCP-AFD underneath, oneshot interest.
//!
//! Oneshot is how smol uses it: after every event the socket must be re-armed with `modify`,
//! which costs one more `epoll_ctl` per wake-up than the edge-triggered models. That cost is the
//! point of having this model beside `mio`. Sockets are deleted from the poller before they are
//! closed, as the crate requires.
#![allow(unsafe_code)] // Poller::add is unsafe: the socket must be deleted before it is dropped

use std::io;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use polling::{Event, Events, Poller};
use slab::Slab;

use crate::conn::{Conn, Status};
use crate::ctx::Ctx;
use crate::listen::{AcceptState, Incoming, Pacer, prepare_nonblocking};

const LISTENER: usize = usize::MAX - 1;

pub(crate) fn run(incoming: Incoming, ctx: &Ctx) -> io::Result<()> {
    let counters = ctx.shared.new_loop();
    let poller = Arc::new(Poller::new()?);
    let p = poller.clone();
    ctx.stop.on_stop(move || {
        let _ = p.notify();
    });
    let (listener, inbox): (Option<TcpListener>, _) = match incoming {
        Incoming::Listener(l) => {
            l.set_nonblocking(true)?;
            // SAFETY: the listener is deleted from the poller before it is dropped (end of run).
            unsafe { poller.add(&l, Event::readable(LISTENER))? };
            (Some(l), None)
        }
        Incoming::Handoff(slot) => {
            let p = poller.clone();
            (
                None,
                Some(slot.install_inbox(move || {
                    let _ = p.notify();
                })),
            )
        }
    };
    let mut conns: Slab<Conn<TcpStream>> = Slab::new();
    let mut yielded: Vec<usize> = Vec::new();
    let mut events = Events::new();
    let mut pacer = Pacer::new(listener.is_some());
    ctx.ready();

    let adopt = |stream: TcpStream, conns: &mut Slab<Conn<TcpStream>>, yielded: &mut Vec<usize>| {
        if !prepare_nonblocking(&stream, &ctx.shared) {
            return;
        }
        let entry = conns.vacant_entry();
        let key = entry.key();
        // Registered with no interest: `drive` arms it with what it waits for.
        // SAFETY: the stream is deleted from the poller before it is dropped (`drive` on `Done`, and the end of `run`).
        if unsafe { poller.add(&stream, Event::none(key)) }.is_err() {
            ctx.shared.accept_error();
            return;
        }
        entry.insert(Conn::new(stream, ctx.config.buffer_size));
        ctx.shared.opened();
        yielded.push(key);
    };
    let drive = |conns: &mut Slab<Conn<TcpStream>>, key: usize, yielded: &mut Vec<usize>| {
        let Some(conn) = conns.get_mut(key) else {
            return;
        };
        let rearm = match conn.drive(&counters) {
            Status::WantRead => Event::readable(key),
            Status::WantWrite => Event::writable(key),
            Status::Yield => {
                yielded.push(key);
                return;
            }
            Status::Done => {
                let conn = conns.remove(key);
                let _ = poller.delete(&conn.sock);
                conn.close(&counters, &ctx.shared);
                return;
            }
        };
        if poller.modify(&conn.sock, rearm).is_err() {
            let conn = conns.remove(key);
            let _ = poller.delete(&conn.sock);
            conn.close(&counters, &ctx.shared);
        }
    };

    while !ctx.stop.is_stopped() {
        if let Some(l) = &listener {
            let state = pacer.accept_if_due(
                &ctx.shared,
                || l.accept().map(|(s, _)| s),
                |s| adopt(s, &mut conns, &mut yielded),
            );
            // Oneshot: re-arm the listener once drained; while paused it stays disarmed.
            if state == Some(AcceptState::Drained) {
                poller.modify(l, Event::readable(LISTENER))?;
            }
        }
        for key in std::mem::take(&mut yielded) {
            drive(&mut conns, key, &mut yielded);
        }
        let timeout = if yielded.is_empty() {
            pacer.timeout()
        } else {
            Some(Duration::ZERO)
        };
        events.clear();
        match poller.wait(&mut events, timeout) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        // A notify() returns without an event: check the inbox every turn (cheap when empty).
        for s in inbox.iter().flat_map(|i| i.take()) {
            adopt(s, &mut conns, &mut yielded);
        }
        for ev in events.iter() {
            if ev.key == LISTENER {
                pacer.signalled();
            } else {
                drive(&mut conns, ev.key, &mut yielded);
            }
        }
    }
    if let Some(l) = &listener {
        let _ = poller.delete(l);
    }
    for (_, conn) in conns {
        let _ = poller.delete(&conn.sock);
        conn.close(&counters, &ctx.shared);
    }
    Ok(())
}
