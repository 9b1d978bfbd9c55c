//! One OS thread per client, plain blocking `std::net` I/O: the model every other one is
//! measured against.
//!
//! The accept thread blocks in `accept`; each client thread blocks in `read`, then writes what it
//! read before reading again (backpressure comes free). Stop wakes the accept thread by
//! connecting to it and ends client threads with `shutdown`, on a shared `Arc<TcpStream>` so no
//! descriptor is duplicated. Client threads get small stacks (the buffer is on the heap), so
//! thousands of them fit.
//!
//! UDP (`--proto udp`): no clients to give threads to; each of `--threads` threads blocks in
//! `recvfrom` on its socket and sends every datagram straight back. Stop shuts the socket's
//! receive side (Linux wakes a blocked `recvfrom` that way) and sends it an empty datagram
//! (which wakes it everywhere else).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use crate::ctx::Ctx;
use crate::datagram::{Echo, Endpoint, transient};
use crate::listen::{Incoming, blocking_accept_error, wake_blocking_accept};
use crate::stats::{LoopCounters, Shared};

const CLIENT_STACK: usize = 64 * 1024;
/// How long stop waits for client threads to notice their shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Clients {
    open: Mutex<(u64, HashMap<u64, Arc<TcpStream>>)>,
    gone: Condvar,
}

pub(crate) fn run(incoming: Vec<Incoming>, ctx: &Ctx) -> io::Result<()> {
    let Some(Incoming::Listener(listener)) = incoming.into_iter().next() else {
        return Err(io::Error::other("blocking: needs its own listener"));
    };
    let addr = listener.local_addr()?;
    let counters = ctx.shared.new_loop();
    let clients = Arc::new(Clients::default());
    let c = clients.clone();
    ctx.stop.on_stop(move || {
        wake_blocking_accept(addr);
        let open = c.open.lock().unwrap_or_else(|e| e.into_inner());
        for stream in open.1.values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    });
    ctx.ready();

    while !ctx.stop.is_stopped() {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) => {
                blocking_accept_error(&e, &ctx.shared, &ctx.stop);
                continue;
            }
        };
        if ctx.stop.is_stopped() {
            break;
        }
        let _ = stream.set_nodelay(true);
        let stream = Arc::new(stream);
        let id = {
            let mut open = clients.open.lock().unwrap_or_else(|e| e.into_inner());
            open.0 += 1;
            let id = open.0;
            open.1.insert(id, stream.clone());
            id
        };
        ctx.shared.opened();
        let (shared, counters, clients2, buffer) = (
            ctx.shared.clone(),
            counters.clone(),
            clients.clone(),
            ctx.config.buffer_size,
        );
        let spawned = thread::Builder::new()
            .name("blocking-client".into())
            .stack_size(CLIENT_STACK)
            .spawn(move || {
                echo(&stream, buffer, &counters);
                finish(&clients2, id, &shared);
            });
        if let Err(e) = spawned {
            // Out of threads is like out of descriptors: refuse this one, keep serving.
            log::warn!("blocking: cannot start a client thread: {e}");
            ctx.shared.accept_error();
            finish(&clients, id, &ctx.shared);
        }
    }

    // Stop already shut every client socket; wait (bounded) for their threads to leave.
    let open = clients.open.lock().unwrap_or_else(|e| e.into_inner());
    let (open, _) = clients
        .gone
        .wait_timeout_while(open, DRAIN_TIMEOUT, |open| !open.1.is_empty())
        .unwrap_or_else(|e| e.into_inner());
    if !open.1.is_empty() {
        return Err(io::Error::other(format!(
            "blocking: {} client threads did not stop",
            open.1.len()
        )));
    }
    Ok(())
}

fn finish(clients: &Clients, id: u64, shared: &Shared) {
    let mut open = clients.open.lock().unwrap_or_else(|e| e.into_inner());
    open.1.remove(&id);
    shared.closed();
    clients.gone.notify_all();
}

fn echo(stream: &TcpStream, buffer: usize, counters: &LoopCounters) {
    let mut buf = vec![0u8; buffer];
    let mut s = stream;
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) => {
                // Half-close: everything read has been written; finish with our FIN.
                let _ = stream.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        counters.read(n);
        let mut off = 0;
        while off < n {
            match s.write(&buf[off..n]) {
                Ok(0) => break,
                Ok(k) => {
                    counters.wrote(k);
                    off += k;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        if off < n {
            counters.dropped(n - off);
            return;
        }
    }
}

/// One thread blocking in `recvfrom` on its socket until stop.
pub(crate) fn run_udp(endpoint: Endpoint, ctx: &Ctx) -> io::Result<()> {
    endpoint.socket.set_nonblocking(false)?;
    let counters = ctx.shared.new_loop();
    let wake = endpoint.socket.try_clone()?;
    let mut target = wake.local_addr()?;
    if target.ip().is_unspecified() {
        target.set_ip(match target {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    ctx.stop.on_stop(move || {
        let _ = socket2::SockRef::from(&wake).shutdown(Shutdown::Read);
        let _ = wake.send_to(&[], target);
    });
    let mut echo = Echo::new();
    ctx.ready();
    loop {
        let got = echo.receive(&endpoint.socket);
        // Whatever woke the receive after a stop (the shutdown's empty return, the wake-up
        // datagram) is not a client's datagram.
        if ctx.stop.is_stopped() {
            return Ok(());
        }
        match got {
            Ok(got) => echo.answer(&endpoint.socket, got, &endpoint.drops, &counters),
            Err(e) if transient(&e) => {}
            Err(e) => return Err(e),
        }
    }
}
