//! Starting a model, watching it, and stopping it: the one public entry.
//!
//! [`Server::start`] checks the model and config, binds (see `listen`), launches the model's
//! threads and returns only once every loop has reported ready, so a `listening` line printed
//! after it is true. It is not a supervisor: a loop that fails stops the whole server, and the
//! error comes back from [`Server::wait`].

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, mpsc};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::config::{Config, ConfigError};
use crate::listen::{self, Incoming, Slot};
use crate::models::{self, Model, Unsupported};
use crate::stats::{ServerStats, Shared};
use crate::stop::Stop;

/// How long [`Server::start`] waits for every loop to report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a server could not start. Every variant but [`StartError::Io`] is something the user can
/// fix with a different flag.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The model does not run here.
    #[error(transparent)]
    Unavailable(#[from] Unsupported),
    /// A setting cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Another socket holds the port.
    #[error(
        "{0} is already in use: stop the other server or pick another port (--listen 127.0.0.1:0 picks a free one)"
    )]
    AddrInUse(SocketAddr),
    /// The address cannot be bound here (not local, no permission).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
    /// Anything else the OS refused while setting up.
    #[error("server setup failed: {0}")]
    Io(#[from] io::Error),
}

impl StartError {
    pub(crate) fn bind(addr: SocketAddr, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::AddrInUse {
            Self::AddrInUse(addr)
        } else {
            Self::Bind { addr, source }
        }
    }
}

/// What every thread of one server shares.
pub(crate) struct Ctx {
    pub(crate) config: Config,
    pub(crate) stop: Stop,
    pub(crate) shared: Arc<Shared>,
    ready: mpsc::Sender<io::Result<()>>,
}

impl Ctx {
    /// A loop calls this once it is set up and will accept (or receive) connections.
    pub(crate) fn ready(&self) {
        let _ = self.ready.send(Ok(()));
    }
}

/// A running server.
pub struct Server {
    model: Model,
    addr: SocketAddr,
    ctx: Arc<Ctx>,
    threads: Vec<JoinHandle<io::Result<()>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `addr`, starts `model` with `config`, and returns once every loop is ready.
    pub fn start(model: Model, addr: SocketAddr, config: &Config) -> Result<Self, StartError> {
        model.availability()?;
        config.validate()?;
        model.check_config(config)?;
        let bound = listen::bind(addr, config)?;
        let (ready_tx, ready_rx) = mpsc::channel();
        let shared = Arc::new(Shared::default());
        let ctx = Arc::new(Ctx {
            config: config.clone(),
            stop: Stop::new(),
            shared,
            ready: ready_tx,
        });

        // One `Incoming` per loop: its own listener, or a hand-off slot fed by the acceptor.
        let loops = model.loops(config);
        let mut handoff = None;
        let incoming: Vec<Incoming> = if bound.listeners.len() >= loops {
            bound
                .listeners
                .into_iter()
                .map(Incoming::Listener)
                .collect()
        } else {
            let slots: Vec<Slot> = (0..loops).map(|_| Slot::default()).collect();
            let listener = bound
                .listeners
                .into_iter()
                .next()
                .expect("bind returns a listener");
            handoff = Some((listener, slots.clone()));
            slots.into_iter().map(Incoming::Handoff).collect()
        };

        let mut server = Self {
            model,
            addr: bound.addr,
            ctx,
            threads: Vec::new(),
            acceptor: None,
        };
        if let Err(e) = models::launch(model, incoming, &server.ctx, &mut server.threads) {
            server.shutdown();
            return Err(StartError::Io(e));
        }
        for _ in 0..server.threads.len() {
            match ready_rx.recv_timeout(READY_TIMEOUT) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    server.shutdown();
                    return Err(StartError::Io(e));
                }
                Err(_) => {
                    server.shutdown();
                    return Err(StartError::Io(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "{}: a loop did not become ready within {READY_TIMEOUT:?}",
                            model.name()
                        ),
                    )));
                }
            }
        }
        if let Some((listener, slots)) = handoff {
            let ctx = server.ctx.clone();
            server.acceptor = Some(
                thread::Builder::new()
                    .name(format!("{}-acceptor", model.name()))
                    .spawn(move || listen::run_acceptor(listener, slots, &ctx))?,
            );
        }
        Ok(server)
    }

    /// The address actually bound (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The model this server runs.
    pub fn model(&self) -> Model {
        self.model
    }

    /// A handle that stops this server from anywhere (a signal handler thread, a test).
    pub fn stop_handle(&self) -> Stop {
        self.ctx.stop.clone()
    }

    /// The counters now, while it runs.
    pub fn stats(&self) -> ServerStats {
        self.ctx
            .shared
            .snapshot(self.model.name(), &self.ctx.config)
    }

    /// Stops the server and returns its final stats.
    pub fn stop(mut self) -> io::Result<ServerStats> {
        self.ctx.stop.stop();
        self.join()
    }

    /// Waits until something stops the server (its [`Stop`] handle, or a failing loop), then
    /// returns its final stats, or the first error a loop hit.
    pub fn wait(mut self) -> io::Result<ServerStats> {
        self.join()
    }

    fn join(&mut self) -> io::Result<ServerStats> {
        let mut first_error = None;
        for handle in self.threads.drain(..) {
            let result = handle
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a server thread panicked")));
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(self.stats()),
        }
    }

    fn shutdown(&mut self) {
        self.ctx.stop.stop();
        let _ = self.join();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.threads.is_empty() || self.acceptor.is_some() {
            self.shutdown();
        }
    }
}

/// Spawns one server thread running `body`; a failure stops the whole server and, if it comes
/// before the thread reported ready, fails [`Server::start`].
pub(crate) fn spawn(
    name: String,
    ctx: &Arc<Ctx>,
    body: impl FnOnce(&Ctx) -> io::Result<()> + Send + 'static,
) -> io::Result<JoinHandle<io::Result<()>>> {
    let ctx = ctx.clone();
    thread::Builder::new().name(name).spawn(move || {
        let result = body(&ctx);
        if let Err(e) = &result {
            // Unblocks start() if setup failed; harmless after ready.
            let _ = ctx.ready.send(Err(io::Error::new(e.kind(), e.to_string())));
            ctx.stop.stop();
        }
        result
    })
}
