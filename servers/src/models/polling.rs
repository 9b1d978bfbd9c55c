//! The `polling` crate, smol's reactor: epoll/kqueue/IOCP-AFD underneath, oneshot interest; its
//! calls, for `edge`'s loop.
//!
//! Oneshot is how smol uses it: after every event the socket must be re-armed with `modify`,
//! which costs one more `epoll_ctl` per wake-up than the edge-triggered models. That cost is the
//! point of having this model beside `mio`. The crate requires a socket to be deleted from the
//! poller before it is dropped; every registration here is a [`Registered`] guard that deletes
//! on drop, so that holds on every exit path, errors included. The loop itself is `edge`'s.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use polling::{Event, Events, Poller};

use crate::conn::Status;
use crate::ctx::Ctx;
use crate::datagram::{Echo, Endpoint};
use crate::listen::Incoming;
use crate::stats::Shared;

use super::edge::{self, Backend, Ready};

mod registered;
use registered::Registered;

const LISTENER: usize = usize::MAX - 1;

pub(crate) fn run(incoming: Incoming, ctx: &Ctx) -> io::Result<()> {
    let poller = std::sync::Arc::new(Poller::new()?);
    edge::run(
        Loop {
            poller: &poller,
            events: Events::new(),
        },
        incoming,
        ctx,
    )
}

/// One UDP loop: the socket registered oneshot for reading, drained and re-armed after every
/// event (the `modify` per wake-up is this model's cost, as for TCP).
pub(crate) fn run_udp(endpoint: Endpoint, ctx: &Ctx) -> io::Result<()> {
    const SOCKET: usize = 0;
    let poller = std::sync::Arc::new(Poller::new()?);
    let p = poller.clone();
    ctx.stop.on_stop(move || {
        let _ = p.notify();
    });
    let Endpoint { socket, drops } = endpoint;
    socket.set_nonblocking(true)?;
    let socket = Registered::new(&poller, socket, Event::readable(SOCKET))?;
    let counters = ctx.shared.new_loop();
    let mut echo = Echo::new();
    let mut events = Events::new();
    let timeout = ctx.config.busy_poll.then_some(Duration::ZERO);
    ctx.ready();
    while !ctx.stop.is_stopped() {
        events.clear();
        match poller.wait(&mut events, timeout) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => result?,
        };
        if events.iter().any(|ev| ev.key == SOCKET) {
            echo.drain(&*socket, &drops, &counters)?;
            socket.modify(Event::readable(SOCKET))?;
        }
    }
    Ok(())
}

/// One loop's poller (shared with its wakers) and its event buffer.
struct Loop<'p> {
    poller: &'p std::sync::Arc<Poller>,
    events: Events,
}

impl<'p> Backend for Loop<'p> {
    type Listener = Registered<'p, TcpListener>;
    type Stream = TcpStream;
    type Sock = Registered<'p, TcpStream>;
    /// `notify()` wakes the wait without an event.
    const WAKE_IS_AN_EVENT: bool = false;

    fn waker(&self) -> io::Result<impl Fn() + Send + Sync + 'static> {
        let poller = self.poller.clone();
        Ok(move || {
            let _ = poller.notify();
        })
    }

    fn listen(&self, listener: TcpListener) -> io::Result<Self::Listener> {
        Registered::new(self.poller, listener, Event::readable(LISTENER))
    }

    fn accept(&self, listener: &Self::Listener, shared: &Shared) -> io::Result<Option<TcpStream>> {
        edge::accept_std(listener, shared)
    }

    fn handed_off(&self, stream: TcpStream, shared: &Shared) -> Option<TcpStream> {
        edge::std_stream(stream, shared)
    }

    fn register(&self, stream: TcpStream, key: usize) -> io::Result<Self::Sock> {
        // Registered with no interest: `rearm` arms it with what the connection waits for.
        Registered::new(self.poller, stream, Event::none(key))
    }

    /// Oneshot: the listener is re-armed once drained; while accepting is paused it stays
    /// disarmed.
    fn rearm_listener(&self, listener: &Self::Listener) -> io::Result<()> {
        listener.modify(Event::readable(LISTENER))
    }

    fn rearm(&self, sock: &Self::Sock, key: usize, status: Status) -> io::Result<()> {
        match status {
            Status::WantWrite => sock.modify(Event::writable(key)),
            _ => sock.modify(Event::readable(key)),
        }
    }

    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.events.clear();
        match self.poller.wait(&mut self.events, timeout) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            result => result.map(drop),
        }
    }

    fn events(&self) -> impl Iterator<Item = Ready> + '_ {
        self.events.iter().map(|ev| match ev.key {
            LISTENER => Ready::Listener,
            key => Ready::Conn {
                key,
                peer_closed: false,
            },
        })
    }
}
