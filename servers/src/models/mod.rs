//! The model registry, and the contract every model keeps.
//!
//! # The contract
//! Every model, without exception:
//! - echoes every byte, in order, on every connection (RFC 862);
//! - sets `TCP_NODELAY` on accepted sockets and reads with the configured buffer size;
//! - applies backpressure: while a connection has unwritten bytes it reads no more, so one
//!   connection never holds more than one buffer;
//! - handles partial writes, `WouldBlock`, half-close (after the client's FIN it sends what is
//!   pending, then shuts its write side and closes) and reset by peer (the connection ends,
//!   the server goes on);
//! - treats accept errors as per-connection: counted in `accept_errors`, never fatal; running
//!   out of descriptors pauses accepting for [`EXHAUSTED_PAUSE`](crate::listen::EXHAUSTED_PAUSE)
//!   instead of spinning, and service resumes once descriptors free up;
//! - reports ready (`Ctx::ready`) only once it will accept, and on [`Stop`](crate::Stop) closes
//!   every connection, updates the counters and returns promptly.
//!
//! Readiness models share [`conn`](crate::conn)'s state machine; completion models (io_uring,
//! IOCP) share buffer-ownership rules instead, and plug in here the same way: a `run` per loop
//! (or per server), an availability check, and the same [`Ctx`].
//!
//! Platform code is chosen on `mod` lines: a model that cannot exist on a platform is replaced
//! there by a module whose `availability()` says why and whose `run` is never called.

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

use crate::config::{AcceptMode, Config, ConfigError};
use crate::ctx::{Ctx, Unsupported, spawn};
use crate::listen::Incoming;

mod blocking;
#[cfg_attr(not(unix), allow(dead_code))]
mod level;
mod mio;
mod polling;
mod tokio;

#[cfg(target_os = "linux")]
mod epoll;
#[cfg(not(target_os = "linux"))]
mod epoll {
    crate::models::unsupported!("epoll is Linux only (mio and polling use kqueue/IOCP elsewhere)");
}

#[cfg(unix)]
mod poll;
#[cfg(not(unix))]
mod poll {
    crate::models::unsupported!("poll: the Windows port (WSAPoll) is not built yet");
}

#[cfg(unix)]
mod select;
#[cfg(not(unix))]
mod select {
    crate::models::unsupported!(
        "select: the Windows port (Winsock select with a larger fd_set) is not built yet"
    );
}

/// Declares a stand-in module for a model that does not exist on this platform.
#[allow(unused_macros)]
macro_rules! unsupported {
    ($reason:literal) => {
        pub(crate) fn availability() -> Result<(), String> {
            Err($reason.to_string())
        }

        pub(crate) fn run(
            _incoming: crate::listen::Incoming,
            _ctx: &crate::ctx::Ctx,
        ) -> std::io::Result<()> {
            Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                $reason,
            ))
        }
    };
}
#[allow(unused_imports)]
pub(crate) use unsupported;

/// An I/O model: one echo server implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Model {
    /// One OS thread per client, blocking `std::net` I/O.
    Blocking,
    /// `select(2)`.
    Select,
    /// `poll(2)`.
    Poll,
    /// Raw edge-triggered `epoll`.
    Epoll,
    /// The `mio` crate.
    Mio,
    /// The `polling` crate.
    Polling,
    /// tokio, current-thread runtime (one per loop).
    Tokio,
    /// tokio, multi-thread runtime.
    TokioMt,
}

impl Model {
    /// Every model this build knows, available here or not, in display order.
    pub const ALL: &'static [Model] = &[
        Model::Blocking,
        Model::Select,
        Model::Poll,
        Model::Epoll,
        Model::Mio,
        Model::Polling,
        Model::Tokio,
        Model::TokioMt,
    ];

    /// The registry name (used on the command line and in results).
    pub fn name(self) -> &'static str {
        match self {
            Model::Blocking => "blocking",
            Model::Select => "select",
            Model::Poll => "poll",
            Model::Epoll => "epoll",
            Model::Mio => "mio",
            Model::Polling => "polling",
            Model::Tokio => "tokio",
            Model::TokioMt => "tokio-mt",
        }
    }

    /// One line on what it is.
    pub fn description(self) -> &'static str {
        match self {
            Model::Blocking => "one OS thread per client, blocking std::net read/write",
            Model::Select => {
                "select(2), level-triggered; refuses descriptors >= FD_SETSIZE (1024) per connection"
            }
            Model::Poll => "poll(2), level-triggered, pollfd array rebuilt each turn",
            Model::Epoll => "raw epoll, edge-triggered, one epoll_ctl per connection lifetime",
            Model::Mio => "mio crate (epoll/kqueue/IOCP-AFD), edge-triggered",
            Model::Polling => "polling crate (smol's reactor), oneshot: re-armed after every event",
            Model::Tokio => "tokio current-thread runtime, one task per connection",
            Model::TokioMt => "tokio multi-thread runtime (--threads workers), work-stealing",
        }
    }

    /// Looks a model up by its registry name.
    pub fn from_name(name: &str) -> Option<Model> {
        Self::ALL.iter().copied().find(|m| m.name() == name)
    }

    /// Every model that runs here.
    pub fn available() -> impl Iterator<Item = Model> {
        Self::ALL
            .iter()
            .copied()
            .filter(|m| m.availability().is_ok())
    }

    /// Whether the model runs here, and if not, why.
    pub fn availability(self) -> Result<(), Unsupported> {
        let result = match self {
            Model::Blocking | Model::Mio | Model::Polling | Model::Tokio | Model::TokioMt => Ok(()),
            Model::Select => select::availability(),
            Model::Poll => poll::availability(),
            Model::Epoll => epoll::availability(),
        };
        result.map_err(|reason| Unsupported {
            model: self.name(),
            reason,
        })
    }

    /// Model-specific limits on the shared config.
    pub(crate) fn check_config(self, config: &Config) -> Result<(), ConfigError> {
        if self == Model::Blocking && config.threads != 1 {
            return Err(ConfigError::ThreadsNotApplicable(self.name()));
        }
        Ok(())
    }

    /// How many `Incoming`s the model takes: one per event loop; `tokio-mt` shares listeners
    /// among its workers and `blocking` has only its accept thread.
    pub(crate) fn loops(self, config: &Config) -> usize {
        match self {
            Model::Blocking => 1,
            Model::TokioMt if config.accept == AcceptMode::Handoff => 1,
            _ => config.threads,
        }
    }
}

impl std::fmt::Display for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Model {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Model::from_name(s).ok_or_else(|| {
            let names: Vec<&str> = Model::ALL.iter().map(|m| m.name()).collect();
            format!(
                "unknown model '{s}' (known: {}; `iomodels models` shows which run here)",
                names.join(", ")
            )
        })
    }
}

/// Starts the model's threads into `threads`; each reports ready through `ctx`.
pub(crate) fn launch(
    model: Model,
    incoming: Vec<Incoming>,
    ctx: &Arc<Ctx>,
    threads: &mut Vec<JoinHandle<io::Result<()>>>,
) -> io::Result<()> {
    let per_loop: fn(Incoming, &Ctx) -> io::Result<()> = match model {
        Model::Blocking => {
            threads.push(spawn("blocking-accept".into(), ctx, move |ctx| {
                blocking::run(incoming, ctx)
            })?);
            return Ok(());
        }
        Model::TokioMt => {
            threads.push(spawn("tokio-mt".into(), ctx, move |ctx| {
                tokio::run_multi_thread(incoming, ctx)
            })?);
            return Ok(());
        }
        Model::Select => select::run,
        Model::Poll => poll::run,
        Model::Epoll => epoll::run,
        Model::Mio => mio::run,
        Model::Polling => polling::run,
        Model::Tokio => tokio::run_current_thread,
    };
    for (i, incoming) in incoming.into_iter().enumerate() {
        threads.push(spawn(format!("{}-{i}", model.name()), ctx, move |ctx| {
            per_loop(incoming, ctx)
        })?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        for &m in Model::ALL {
            assert_eq!(Model::from_name(m.name()), Some(m));
            assert_eq!(m.name().parse::<Model>(), Ok(m));
        }
        let mut names: Vec<_> = Model::ALL.iter().map(|m| m.name()).collect();
        names.dedup();
        assert_eq!(names.len(), Model::ALL.len());
        assert!(
            "nope"
                .parse::<Model>()
                .unwrap_err()
                .contains("unknown model 'nope'")
        );
    }
}
