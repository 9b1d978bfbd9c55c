//! The `mio` crate: epoll on Linux, kqueue on macOS/BSD, IOCP with AFD polling on Windows; its
//! calls, for `edge`'s loop.
//!
//! Same shape as the raw `epoll` model (edge-triggered, registered once for both directions,
//! never re-armed), but through mio's portable API, so the difference between the two is the
//! cost of the abstraction. The loop itself is `edge`'s; this file is only what mio does
//! differently.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::ctx::Ctx;
use crate::datagram::{Echo, Endpoint};
use crate::listen::{Incoming, prepare_nonblocking};
use crate::stats::Shared;

use super::edge::{self, Backend, Ready};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX);

pub(crate) fn run(incoming: Incoming, ctx: &Ctx) -> io::Result<()> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    edge::run(
        Loop {
            poll,
            waker,
            events: Events::with_capacity(1024),
        },
        incoming,
        ctx,
    )
}

/// One UDP loop: mio's `UdpSocket` registered once for reading; each event drains it (its
/// receives go through mio's `try_io`, so the Windows backend re-arms on `WouldBlock`).
pub(crate) fn run_udp(endpoint: Endpoint, ctx: &Ctx) -> io::Result<()> {
    const SOCKET: Token = Token(0);
    let mut poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    ctx.stop.on_stop(move || {
        let _ = waker.wake();
    });
    let Endpoint { socket, drops } = endpoint;
    socket.set_nonblocking(true)?;
    let mut socket = mio::net::UdpSocket::from_std(socket);
    poll.registry()
        .register(&mut socket, SOCKET, Interest::READABLE)?;
    let counters = ctx.shared.new_loop();
    let mut echo = Echo::new();
    let mut events = Events::with_capacity(64);
    let timeout = ctx.config.busy_poll.then_some(Duration::ZERO);
    ctx.ready();
    echo.drain(&socket, &drops, &counters)?;
    while !ctx.stop.is_stopped() {
        match poll.poll(&mut events, timeout) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => result?,
        }
        for ev in events.iter() {
            if ev.token() == SOCKET {
                echo.drain(&socket, &drops, &counters)?;
            }
        }
    }
    Ok(())
}

/// One loop's `Poll`, its waker and its event buffer.
struct Loop {
    poll: Poll,
    waker: Arc<Waker>,
    events: Events,
}

impl Backend for Loop {
    type Listener = TcpListener;
    type Stream = TcpStream;
    type Sock = TcpStream;
    /// mio's Windows backend (IOCP with AFD polls) re-arms a socket only after an operation
    /// returned `WouldBlock`, so there connections read until it (see `conn`'s short-read rule).
    const DRAIN: bool = cfg!(windows);

    fn waker(&self) -> io::Result<impl Fn() + Send + Sync + 'static> {
        let waker = self.waker.clone();
        Ok(move || {
            let _ = waker.wake();
        })
    }

    fn listen(&self, listener: std::net::TcpListener) -> io::Result<TcpListener> {
        let mut listener = TcpListener::from_std(listener);
        self.poll
            .registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(listener)
    }

    fn accept(&self, listener: &TcpListener, _shared: &Shared) -> io::Result<Option<TcpStream>> {
        // mio accepts nonblocking sockets already.
        let (stream, _) = listener.accept()?;
        let _ = stream.set_nodelay(true);
        Ok(Some(stream))
    }

    fn handed_off(&self, stream: std::net::TcpStream, shared: &Shared) -> Option<TcpStream> {
        // Handed-off sockets come blocking from the acceptor thread.
        prepare_nonblocking(&stream, shared).then(|| TcpStream::from_std(stream))
    }

    fn register(&self, mut stream: TcpStream, key: usize) -> io::Result<TcpStream> {
        let interest = Interest::READABLE | Interest::WRITABLE;
        self.poll
            .registry()
            .register(&mut stream, Token(key), interest)?;
        Ok(stream)
    }

    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        match self.poll.poll(&mut self.events, timeout) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                self.events.clear();
                Ok(())
            }
            result => result,
        }
    }

    fn events(&self) -> impl Iterator<Item = Ready> + '_ {
        self.events.iter().map(|ev| match ev.token() {
            WAKER => Ready::Wake,
            LISTENER => Ready::Listener,
            Token(key) => Ready::Conn {
                key,
                peer_closed: ev.is_read_closed() || ev.is_error(),
            },
        })
    }
}
