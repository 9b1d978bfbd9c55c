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

use crate::config::Config;
use crate::ctx::{Ctx, StartError};
use crate::listen::{self, Incoming, Slot};
use crate::models::{self, Model, Proto};
use crate::stats::ServerStats;
use crate::stop::Stop;

/// How long [`Server::start`] waits for every loop to report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

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
        let (ready_tx, ready_rx) = mpsc::channel();
        let ctx = Arc::new(Ctx::new(config.clone(), ready_tx));
        if config.proto == Proto::Udp {
            let (addr, endpoints) = listen::bind_udp(addr, config, &ctx.shared)?;
            let mut server = Self {
                model,
                addr,
                ctx,
                threads: Vec::new(),
                acceptor: None,
            };
            if let Err(e) = models::launch_udp(model, endpoints, &server.ctx, &mut server.threads) {
                server.shutdown();
                return Err(StartError::Io(e));
            }
            server.await_ready(&ready_rx)?;
            return Ok(server);
        }
        let bound = listen::bind(addr, config)?;

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
        server.await_ready(&ready_rx)?;
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

    /// Waits until every thread reported ready; on a failure (or none in time) stops the
    /// threads that did start and returns why.
    fn await_ready(&mut self, ready_rx: &mpsc::Receiver<io::Result<()>>) -> Result<(), StartError> {
        for _ in 0..self.threads.len() {
            let failed = match ready_rx.recv_timeout(READY_TIMEOUT) {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e,
                Err(_) => io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{}: a loop did not become ready within {READY_TIMEOUT:?}",
                        self.model.name()
                    ),
                ),
            };
            self.shutdown();
            return Err(StartError::Io(failed));
        }
        Ok(())
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
