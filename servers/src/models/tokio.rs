//! tokio: `tokio` runs one current-thread runtime per loop; `tokio-mt` one multi-thread runtime
//! with `--threads` workers.
//!
//! Written the way tokio users write an echo server: an accept task per listener, one task per
//! connection doing `read` then `write` with an owned buffer (backpressure comes free). Stop
//! cancels the accept tasks, which abort their connection tasks; a guard in each connection task
//! keeps the counters right when it is aborted. No `select!` on the data path: cancellation
//! costs nothing per read.
//!
//! UDP: one task per socket waits for `readable()`, then receives (through `try_io`, which
//! reads the kernel's drop count too) and answers with `try_send_to` until the socket would
//! block; a send that would block drops that echo (see `datagram`).

use std::io;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::{Builder, Runtime};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::ctx::Ctx;
use crate::datagram::{Echo, Endpoint};
use crate::listen::{EXHAUSTED_PAUSE, Incoming};
use crate::stats::{LoopCounters, Shared};
use crate::sys;

pub(crate) fn run_current_thread(incoming: Incoming, ctx: &Ctx) -> io::Result<()> {
    serve(current_thread()?, vec![incoming], ctx)
}

pub(crate) fn run_multi_thread(incoming: Vec<Incoming>, ctx: &Ctx) -> io::Result<()> {
    serve(multi_thread(ctx)?, incoming, ctx)
}

/// `tokio`'s runtime (TCP and UDP): a current-thread one with I/O and timers.
fn current_thread() -> io::Result<Runtime> {
    Builder::new_current_thread().enable_all().build()
}

/// `tokio-mt`'s runtime (TCP and UDP): `--threads` workers named `tokio-mt-worker`, with the
/// count recorded in the stats' settings.
fn multi_thread(ctx: &Ctx) -> io::Result<Runtime> {
    let rt = Builder::new_multi_thread()
        .worker_threads(ctx.config.threads)
        .thread_name("tokio-mt-worker")
        .enable_all()
        .build()?;
    ctx.shared.setting("worker_threads", ctx.config.threads);
    Ok(rt)
}

/// A token cancelled when the server is told to stop.
fn cancelled_on_stop(ctx: &Ctx) -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    ctx.stop.on_stop(move || t.cancel());
    token
}

fn serve(rt: Runtime, incoming: Vec<Incoming>, ctx: &Ctx) -> io::Result<()> {
    let token = cancelled_on_stop(ctx);
    // One set of byte counters per runtime: exact for `tokio`, shared by the workers of
    // `tokio-mt` (tasks move between workers, so per-worker counters would not be per-loop).
    let counters = ctx.shared.new_loop();
    let buffer = ctx.config.buffer_size;
    rt.block_on(async {
        let mut acceptors = JoinSet::new();
        for incoming in incoming {
            let source = match incoming {
                Incoming::Listener(l) => {
                    l.set_nonblocking(true)?;
                    Source::Listener(TcpListener::from_std(l)?)
                }
                Incoming::Handoff(slot) => {
                    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                    slot.install(Box::new(move |s| {
                        let _ = tx.send(s);
                    }));
                    Source::Inbox(rx)
                }
            };
            let (shared, counters, token) = (ctx.shared.clone(), counters.clone(), token.clone());
            acceptors.spawn(accept_loop(source, buffer, shared, counters, token));
        }
        ctx.ready();
        while acceptors.join_next().await.is_some() {}
        Ok(())
    })
}

/// Where an accept task's connections come from.
enum Source {
    Listener(TcpListener),
    /// Handed over by the acceptor thread (`--accept handoff`).
    Inbox(tokio::sync::mpsc::UnboundedReceiver<std::net::TcpStream>),
}

impl Source {
    /// The next connection; `None` once the inbox is closed (the server is stopping).
    async fn next(&mut self) -> Option<io::Result<TcpStream>> {
        match self {
            Source::Listener(l) => Some(l.accept().await.map(|(s, _)| s)),
            Source::Inbox(rx) => {
                let s = rx.recv().await?;
                Some(
                    s.set_nonblocking(true)
                        .and_then(|()| TcpStream::from_std(s)),
                )
            }
        }
    }
}

async fn accept_loop(
    mut source: Source,
    buffer: usize,
    shared: Arc<Shared>,
    counters: Arc<LoopCounters>,
    token: CancellationToken,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = token.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = source.next() => match accepted {
                None => break,
                Some(Ok(stream)) => {
                    conns.spawn(echo(stream, buffer, shared.clone(), counters.clone()));
                }
                Some(Err(e)) if sys::is_fd_exhaustion(&e) => {
                    shared.accept_error();
                    log::warn!("accept: {e}; pausing accepts for {EXHAUSTED_PAUSE:?}");
                    tokio::select! {
                        _ = token.cancelled() => break,
                        _ = tokio::time::sleep(EXHAUSTED_PAUSE) => {}
                    }
                }
                Some(Err(e)) => {
                    shared.accept_error();
                    log::debug!("accept: {e} (counted, still accepting)");
                }
            }
        }
    }
    conns.shutdown().await;
}

/// Keeps the counters right however a connection task ends, aborted included.
struct Guard {
    shared: Arc<Shared>,
    counters: Arc<LoopCounters>,
    held: usize,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.counters.dropped(self.held);
        self.shared.closed();
    }
}

async fn echo(
    mut stream: TcpStream,
    buffer: usize,
    shared: Arc<Shared>,
    counters: Arc<LoopCounters>,
) {
    let _ = stream.set_nodelay(true);
    shared.opened();
    let mut guard = Guard {
        shared,
        counters,
        held: 0,
    };
    let mut buf = vec![0u8; buffer];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) => {
                // Half-close: all read bytes are written; answer with our FIN.
                let _ = stream.shutdown().await;
                return;
            }
            Ok(n) => n,
            Err(_) => return,
        };
        guard.counters.read(n);
        guard.held = n;
        let mut off = 0;
        while off < n {
            match stream.write(&buf[off..n]).await {
                Ok(0) | Err(_) => return,
                Ok(k) => {
                    guard.counters.wrote(k);
                    off += k;
                    guard.held = n - off;
                }
            }
        }
    }
}

/// UDP, `tokio`: one current-thread runtime per socket.
pub(crate) fn run_udp_current_thread(endpoint: Endpoint, ctx: &Ctx) -> io::Result<()> {
    serve_udp(current_thread()?, vec![endpoint], ctx)
}

/// UDP, `tokio-mt`: one multi-thread runtime, one task per socket.
pub(crate) fn run_udp_multi_thread(endpoints: Vec<Endpoint>, ctx: &Ctx) -> io::Result<()> {
    serve_udp(multi_thread(ctx)?, endpoints, ctx)
}

fn serve_udp(rt: Runtime, endpoints: Vec<Endpoint>, ctx: &Ctx) -> io::Result<()> {
    let token = cancelled_on_stop(ctx);
    let counters = ctx.shared.new_loop();
    rt.block_on(async {
        let mut tasks = JoinSet::new();
        for Endpoint { socket, drops } in endpoints {
            socket.set_nonblocking(true)?;
            let socket = tokio::net::UdpSocket::from_std(socket)?;
            let (counters, token) = (counters.clone(), token.clone());
            tasks.spawn(async move {
                let mut echo = Echo::new();
                loop {
                    tokio::select! {
                        _ = token.cancelled() => return Ok(()),
                        ready = socket.readable() => ready?,
                    }
                    echo.drain(&socket, &drops, &counters)?;
                }
            });
        }
        ctx.ready();
        while let Some(done) = tasks.join_next().await {
            let result: io::Result<()> = done.map_err(io::Error::other)?;
            result?;
        }
        Ok(())
    })
}
