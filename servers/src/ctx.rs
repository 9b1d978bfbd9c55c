//! What every thread of one server shares ([`Ctx`]), how a server thread is started, and why a
//! server could not start ([`StartError`], [`Unsupported`]).
//!
//! This module sits below `server`, `listen` and `models`, which all use it and none of which it
//! uses: data flows one way, from `server` (which builds the `Ctx` and starts the models) down to
//! the loops that read it. It deliberately knows nothing of binding, of models or of how loops
//! are laid out.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, mpsc};
use std::thread::{self, JoinHandle};

use crate::config::{Config, ConfigError};
use crate::stats::Shared;
use crate::stop::Stop;

/// Why a model does not run here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("model {model} is not available here: {reason}")]
pub struct Unsupported {
    /// The model's name.
    pub model: &'static str,
    /// The reason, e.g. "epoll is Linux only".
    pub reason: String,
}

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
    /// A failed `bind`: "in use" is its own variant, since the user fixes it differently.
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
    /// The validated settings.
    pub(crate) config: Config,
    /// The server's stop request; loops register their wakers with it.
    pub(crate) stop: Stop,
    /// Server-wide counters.
    pub(crate) shared: Arc<Shared>,
    ready: mpsc::Sender<io::Result<()>>,
}

impl Ctx {
    /// A context whose loops report ready (or a set-up failure) on `ready`.
    pub(crate) fn new(config: Config, ready: mpsc::Sender<io::Result<()>>) -> Self {
        Self {
            config,
            stop: Stop::new(),
            shared: Arc::new(Shared::default()),
            ready,
        }
    }

    /// A loop calls this once it is set up and will accept (or receive) connections.
    pub(crate) fn ready(&self) {
        let _ = self.ready.send(Ok(()));
    }
}

/// Spawns one server thread running `body`; a failure stops the whole server and, if it comes
/// before the thread reported ready, fails `Server::start`.
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
