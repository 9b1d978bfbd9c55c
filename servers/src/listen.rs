//! Binding the port, and how connections reach each loop.
//!
//! A port is *claimed* first with a plain bind (no `SO_REUSEPORT`), so a second server on a port
//! in use fails even when it asks for `SO_REUSEPORT`, which would otherwise let two servers share
//! a port silently. With several loops and [`AcceptMode::ReusePort`] the claim is released and
//! the group bound to the same port; otherwise one listener serves, and with several loops an
//! acceptor thread hands connections out ([`Incoming::Handoff`]).
//!
//! Also here: the accept helper every readiness loop shares (per-connection errors are counted,
//! never fatal; running out of descriptors pauses accepting instead of spinning).

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::config::{AcceptMode, Config};
use crate::ctx::{Ctx, StartError};
use crate::datagram::{self, Endpoint};
use crate::stats::Shared;
use crate::stop::Stop;
use crate::sys;

/// How long a loop stops accepting after the process ran out of descriptors. Long enough that
/// being at the limit costs no CPU, short enough that service resumes promptly.
pub(crate) const EXHAUSTED_PAUSE: Duration = Duration::from_millis(100);

/// Consecutive unexplained accept errors before a loop backs off briefly anyway.
pub(crate) const ERROR_RUN: usize = 64;

/// The bound, listening sockets of one server.
pub(crate) struct Bound {
    pub(crate) addr: SocketAddr,
    pub(crate) listeners: Vec<TcpListener>,
}

/// Binds `addr` for a server with `config`: one listener, or one per loop with `SO_REUSEPORT`.
pub(crate) fn bind(addr: SocketAddr, config: &Config) -> Result<Bound, StartError> {
    let claim = bind_one(addr, config, false)?;
    let addr = claim
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("bound address is not an IP address"))?;
    if config.threads == 1 || config.accept == AcceptMode::Handoff {
        claim.listen(config.backlog)?;
        return Ok(Bound {
            addr,
            listeners: vec![claim.into()],
        });
    }
    // Nobody else holds the port: release the claim and bind the group to the same port.
    drop(claim);
    let listeners = (0..config.threads)
        .map(|_| {
            let s = bind_one(addr, config, true)?;
            s.listen(config.backlog)?;
            Ok(s.into())
        })
        .collect::<Result<Vec<TcpListener>, StartError>>()?;
    Ok(Bound { addr, listeners })
}

/// Binds `addr` for a UDP server with `config`: `config.threads` sockets, each its own in a
/// `SO_REUSEPORT` group (the kernel spreads senders over them by their address), or clones of
/// one socket (`--accept handoff`, or where the OS does not balance). The port is claimed
/// first without `SO_REUSEPORT`, as for TCP. Each socket gets `--rcvbuf`/`--sndbuf` and, on
/// Linux, `SO_RXQ_OVFL`; the values granted are recorded in `shared`'s settings.
pub(crate) fn bind_udp(
    addr: SocketAddr,
    config: &Config,
    shared: &Shared,
) -> Result<(SocketAddr, Vec<Endpoint>), StartError> {
    let (claim, granted) = bind_udp_one(addr, config, false, shared)?;
    datagram::warn_if_cut(config.rcvbuf, config.sndbuf, granted);
    let addr = claim
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("bound address is not an IP address"))?;
    if config.threads == 1 || config.accept == AcceptMode::Handoff {
        let socket: UdpSocket = claim.into();
        let drops = shared.new_socket_drops(datagram::drop_reader(&socket)?);
        let mut endpoints = Vec::with_capacity(config.threads);
        for _ in 1..config.threads {
            endpoints.push(Endpoint {
                socket: socket.try_clone()?,
                drops: drops.clone(),
            });
        }
        endpoints.push(Endpoint { socket, drops });
        return Ok((addr, endpoints));
    }
    drop(claim);
    let endpoints = (0..config.threads)
        .map(|_| {
            let socket: UdpSocket = bind_udp_one(addr, config, true, shared)?.0.into();
            let drops = shared.new_socket_drops(datagram::drop_reader(&socket)?);
            Ok(Endpoint { socket, drops })
        })
        .collect::<Result<Vec<_>, StartError>>()?;
    Ok((addr, endpoints))
}

/// One UDP socket bound to `addr`, and its buffer sizes as granted (`set_buffers`).
fn bind_udp_one(
    addr: SocketAddr,
    config: &Config,
    reuse_port: bool,
    shared: &Shared,
) -> Result<(Socket, (usize, usize)), StartError> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if reuse_port {
        sys::set_reuse_port(&socket)?;
    }
    let granted = datagram::set_buffers(&socket, config.rcvbuf, config.sndbuf)?;
    shared.setting("rcvbuf", granted.0);
    shared.setting("sndbuf", granted.1);
    shared.setting("datagram_buffer", datagram::DATAGRAM_BUFFER);
    let counting = datagram::enable_drop_count(&SockRef::from(&socket));
    shared.setting(
        "rcvbuf_drops_source",
        match counting {
            Ok(()) => datagram::DROPS_SOURCE.to_string(),
            Err(e) => format!("none ({e})"),
        },
    );
    socket
        .bind(&addr.into())
        .map_err(|e| StartError::bind(addr, e))?;
    Ok((socket, granted))
}

fn bind_one(addr: SocketAddr, _config: &Config, reuse_port: bool) -> Result<Socket, StartError> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sys::prepare_listener(&socket)?;
    if reuse_port {
        sys::set_reuse_port(&socket)?;
    }
    socket
        .bind(&addr.into())
        .map_err(|e| StartError::bind(addr, e))?;
    Ok(socket)
}

/// Where a loop gets its connections from.
pub(crate) enum Incoming {
    /// Its own listening socket (one loop, or one of a `SO_REUSEPORT` group).
    Listener(TcpListener),
    /// Connections handed over by the acceptor thread; the loop installs how to deliver them.
    Handoff(Slot),
}

/// How the acceptor delivers a connection to a loop (push to its inbox, then wake it).
pub(crate) type Deliver = Box<dyn Fn(TcpStream) + Send + Sync>;

/// A loop's place in the hand-off: the loop installs its [`Deliver`] before it reports ready.
#[derive(Clone, Default)]
pub(crate) struct Slot(Arc<OnceLock<Deliver>>);

impl Slot {
    pub(crate) fn install(&self, deliver: Deliver) {
        let _ = self.0.set(deliver);
    }
}

/// Runs the hand-off acceptor until stop: blocking accept, round-robin over the loops.
pub(crate) fn run_acceptor(listener: TcpListener, slots: Vec<Slot>, ctx: &Ctx) {
    let addr = listener.local_addr().ok();
    if let Some(addr) = addr {
        ctx.stop.on_stop(move || wake_blocking_accept(addr));
    }
    let mut next = 0;
    while !ctx.stop.is_stopped() {
        match listener.accept() {
            Ok((stream, _)) => {
                if ctx.stop.is_stopped() {
                    break;
                }
                if let Some(deliver) = slots[next].0.get() {
                    deliver(stream);
                }
                next = (next + 1) % slots.len();
            }
            Err(e) => blocking_accept_error(&e, &ctx.shared, &ctx.stop),
        }
    }
}

/// Handles an accept error in a thread that blocks in `accept`: count it; when out of
/// descriptors, sleep instead of spinning (waking early on stop is not needed: the pause is
/// short).
pub(crate) fn blocking_accept_error(e: &io::Error, shared: &Shared, stop: &Stop) {
    if e.kind() == io::ErrorKind::Interrupted || stop.is_stopped() {
        return;
    }
    shared.accept_error();
    if sys::is_fd_exhaustion(e) {
        log::warn!("accept: {e}; pausing accepts for {EXHAUSTED_PAUSE:?}");
        thread::sleep(EXHAUSTED_PAUSE);
    } else {
        log::debug!("accept: {e} (counted, still accepting)");
    }
}

/// Unblocks a thread sitting in a blocking `accept` on `addr` by connecting to it.
pub(crate) fn wake_blocking_accept(addr: SocketAddr) {
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let _ = TcpStream::connect_timeout(&target, Duration::from_secs(1));
}

/// Readies an accepted socket for a readiness loop, the same way for every model:
/// nonblocking (a socket that cannot be is refused and counted as an accept error) and
/// `TCP_NODELAY`.
pub(crate) fn prepare_nonblocking(stream: &TcpStream, shared: &Shared) -> bool {
    if stream.set_nonblocking(true).is_err() {
        shared.accept_error();
        return false;
    }
    let _ = stream.set_nodelay(true);
    true
}

/// What a nonblocking accept round ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AcceptState {
    /// The backlog is empty; wait for readiness.
    Drained,
    /// Stop accepting until this instant (out of descriptors, or a run of errors): do not poll
    /// the listener until then, then call again even without a new readiness event.
    Paused(Instant),
}

/// Accepts from a nonblocking listener until it would block, handing each connection to
/// `adopt`. Per-connection failures (peer reset before accept) are counted and skipped.
pub(crate) fn accept_ready<T>(
    shared: &Shared,
    mut accept: impl FnMut() -> io::Result<T>,
    mut adopt: impl FnMut(T),
) -> AcceptState {
    let mut errors = 0;
    loop {
        match accept() {
            Ok(stream) => adopt(stream),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return AcceptState::Drained,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if sys::is_fd_exhaustion(&e) => {
                shared.accept_error();
                log::warn!("accept: {e}; pausing accepts for {EXHAUSTED_PAUSE:?}");
                return AcceptState::Paused(Instant::now() + EXHAUSTED_PAUSE);
            }
            Err(e) => {
                shared.accept_error();
                log::debug!("accept: {e} (counted, still accepting)");
                errors += 1;
                if errors == ERROR_RUN {
                    return AcceptState::Paused(Instant::now() + Duration::from_millis(10));
                }
            }
        }
    }
}

/// When a readiness loop calls `accept`: after the listener signalled, and again when a pause
/// ends, since an edge-triggered (or oneshot) listener will not signal again by itself.
pub(crate) struct Pacer {
    due: bool,
    paused: Option<Instant>,
}

impl Pacer {
    /// `due`: accept on the first turn (connections may already be waiting).
    pub(crate) fn new(due: bool) -> Self {
        Self { due, paused: None }
    }

    /// The listener signalled readiness.
    pub(crate) fn signalled(&mut self) {
        if self.paused.is_none() {
            self.due = true;
        }
    }

    /// Whether the listener should be watched now; level-triggered loops drop it while paused,
    /// or it would be reported ready on every turn.
    pub(crate) fn watching(&self) -> bool {
        self.paused.is_none()
    }

    /// How long the loop may sleep before a pause ends (`None`: no pause, wait for events).
    pub(crate) fn timeout(&self) -> Option<Duration> {
        self.paused
            .map(|until| until.saturating_duration_since(Instant::now()))
    }

    /// Accepts (see [`accept_ready`]) if the listener signalled or a pause just ended; returns
    /// how the round ended, or `None` if it was not due.
    pub(crate) fn accept_if_due<T>(
        &mut self,
        shared: &Shared,
        accept: impl FnMut() -> io::Result<T>,
        adopt: impl FnMut(T),
    ) -> Option<AcceptState> {
        if self.paused.is_some_and(|until| Instant::now() >= until) {
            self.paused = None;
            self.due = true;
        }
        if !std::mem::take(&mut self.due) {
            return None;
        }
        let state = accept_ready(shared, accept, adopt);
        if let AcceptState::Paused(until) = state {
            self.paused = Some(until);
        }
        Some(state)
    }
}

/// A loop's inbox of handed-off connections.
pub(crate) struct Inbox(Arc<std::sync::Mutex<Vec<TcpStream>>>);

impl Slot {
    /// Installs a deliver that pushes to a new inbox and calls `wake`; returns the inbox.
    pub(crate) fn install_inbox(&self, wake: impl Fn() + Send + Sync + 'static) -> Inbox {
        let queue = Arc::new(std::sync::Mutex::new(Vec::new()));
        let q = queue.clone();
        self.install(Box::new(move |stream| {
            q.lock().unwrap_or_else(|e| e.into_inner()).push(stream);
            wake();
        }));
        Inbox(queue)
    }
}

impl Inbox {
    /// Takes every connection delivered so far.
    pub(crate) fn take(&self) -> Vec<TcpStream> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
