//! The model registry, and the contract every model keeps.
//!
//! # The contract
//! Every model, without exception:
//! - echoes every byte, in order, on every connection (RFC 862);
//! - sets `TCP_NODELAY` on accepted sockets and reads with the configured buffer size;
//! - applies backpressure: while a connection has unwritten bytes it reads no more, so one
//!   connection never holds more than one buffer's worth of bytes. `uring-multishot` keeps it
//!   with the kernel's limit on a multishot receive (Linux 6.17+: each arm ends by itself
//!   within one buffer of bytes); on an older kernel a receive armed once keeps receiving
//!   until its cancel takes effect, and its bound is its loop's provided-buffer ring instead
//!   ([`Model::held_per_connection`] says which bound applies here);
//! - handles partial writes, `WouldBlock`, half-close (after the client's FIN it sends what is
//!   pending, then shuts its write side and closes) and reset by peer (the connection ends,
//!   the server goes on);
//! - treats accept errors as per-connection: counted in `accept_errors`, never fatal; running
//!   out of descriptors pauses accepting for [`EXHAUSTED_PAUSE`](crate::listen::EXHAUSTED_PAUSE)
//!   instead of spinning, and service resumes once descriptors free up;
//! - reports ready (`Ctx::ready`) only once it will accept, and on [`Stop`](crate::Stop) closes
//!   every connection, updates the counters and returns promptly.
//!
//! With `--proto udp` ([`Proto::Udp`]) the contract is the datagram one instead: every datagram
//! is sent back once to the address it came from, unchanged (zero-length included, up to
//! 65,507 B); an echo that cannot be sent at once is dropped and counted (`send_drops`),
//! never retried or waited for; what the kernel dropped on the receive side is counted where
//! the OS says (`rcvbuf_drops`); stop is as prompt as for TCP. The shared half is
//! [`datagram`](crate::datagram); each model keeps its UDP loop next to its TCP one.
//!
//! Readiness models share [`conn`](crate::conn)'s state machine; completion models (io_uring,
//! IOCP) share [`completion`](crate::completion)'s instead (a buffer lent to the kernel comes
//! back only with its completion; stop cancels and drains before anything is freed), and plug
//! in here the same way: a `run` per loop (or per server), an availability check, and the same
//! [`Ctx`].
//!
//! # The registry
//! One table, [`REGISTRY`], one row per model: name, description, availability, how it runs
//! and which protocols it serves. A new model is a variant of [`Model`] and a row, nothing
//! else; every question about a model (`name`, `availability`, how many loops, how to launch
//! it) reads its row.
//!
//! Platform code is chosen on `mod` lines: a model that cannot exist on a platform is replaced
//! there by a module whose `availability()` says why and whose `run` is never called.

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

use crate::config::{AcceptMode, Config, ConfigError, UringOptions};
use crate::ctx::{Ctx, Unsupported, spawn};
use crate::datagram::Endpoint;
use crate::listen::Incoming;

mod blocking;
mod edge;
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

#[cfg(target_os = "linux")]
mod uring;
#[cfg(not(target_os = "linux"))]
mod uring {
    crate::models::unsupported!("io_uring is Linux only");
    pub(crate) mod multishot {
        crate::models::unsupported!("io_uring is Linux only");

        pub(crate) fn receive_limit() -> bool {
            false
        }
    }
    pub(crate) mod udp {
        // The models themselves are unavailable here, with their reason; UDP adds none.
        pub(crate) fn oneshot_availability() -> Result<(), String> {
            Ok(())
        }
        pub(crate) use super::run_udp as run_oneshot;
        pub(crate) use super::run_udp as run_multishot;
        pub(crate) use oneshot_availability as multishot_availability;
    }
}

#[cfg(windows)]
mod iocp;
#[cfg(not(windows))]
mod iocp {
    crate::models::unsupported_server!("iocp is Windows only (I/O completion ports)");
}

#[cfg(unix)]
mod poll;
#[cfg(windows)]
#[path = "poll_wsapoll.rs"]
mod poll;

#[cfg(unix)]
mod select;
#[cfg(windows)]
#[path = "select_winsock.rs"]
mod select;

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

        #[allow(dead_code)]
        pub(crate) fn run_udp(
            _endpoint: crate::datagram::Endpoint,
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

/// [`unsupported!`] for a model that runs as one server thread ([`Run::Workers`],
/// [`Udp::Workers`]).
#[allow(unused_macros)]
macro_rules! unsupported_server {
    ($reason:literal) => {
        pub(crate) fn availability() -> Result<(), String> {
            Err($reason.to_string())
        }

        pub(crate) fn run(
            _incoming: Vec<crate::listen::Incoming>,
            _ctx: &crate::ctx::Ctx,
        ) -> std::io::Result<()> {
            Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                $reason,
            ))
        }

        pub(crate) fn run_udp(
            _endpoints: Vec<crate::datagram::Endpoint>,
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
pub(crate) use unsupported_server;

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
    /// io_uring, one-shot operations (one ring per loop).
    Uring,
    /// io_uring, multishot accept and receive into a provided-buffer ring.
    UringMultishot,
    /// Overlapped sockets on one I/O completion port (Windows).
    Iocp,
}

/// A transport a model serves.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Proto {
    /// TCP echo (RFC 862, TCP part): a byte stream per connection.
    #[default]
    Tcp,
    /// UDP echo (RFC 862, UDP part): every datagram sent back to its sender unchanged, or
    /// dropped (and counted) when the send buffer is full.
    Udp,
}

impl Proto {
    /// Every transport, in display order.
    pub const ALL: &'static [Proto] = &[Proto::Tcp, Proto::Udp];

    /// The name used on the command line (`--proto`) and in results.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses `tcp` or `udp`; the error lists both.
impl std::str::FromStr for Proto {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Proto::ALL
            .iter()
            .copied()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("'{s}' is not a protocol (tcp or udp)"))
    }
}

/// One loop's body: serves the connections of its `Incoming` until stop.
type LoopFn = fn(Incoming, &Ctx) -> io::Result<()>;
/// A whole server's body on one thread: takes every `Incoming` and runs until stop.
type ServerFn = fn(Vec<Incoming>, &Ctx) -> io::Result<()>;

/// How a model is started, and what `--threads` means to it.
enum Run {
    /// `--threads` event loops, one thread and one `Incoming` each.
    PerLoop(LoopFn),
    /// `--threads` runtime workers inside one server thread (named `thread`) that owns every
    /// `Incoming`: one listener per worker with `SO_REUSEPORT`, one in all with the hand-off.
    Workers { thread: &'static str, run: ServerFn },
    /// One thread (named `thread`) that starts a thread per client: `--threads` must be 1.
    PerClient { thread: &'static str, run: ServerFn },
}

/// One UDP loop's body: echoes the datagrams of its socket until stop.
type UdpLoopFn = fn(Endpoint, &Ctx) -> io::Result<()>;
/// A whole UDP server's body on one thread: takes every socket and runs until stop.
type UdpServerFn = fn(Vec<Endpoint>, &Ctx) -> io::Result<()>;

/// How a model serves UDP (`--proto udp`), if it does. UDP has no accept and no connections:
/// a loop owns one socket (its own with `SO_REUSEPORT`, or a clone of the one socket).
enum Udp {
    /// `--threads` loops, one thread and one socket each.
    PerSocket(UdpLoopFn),
    /// As [`Udp::PerSocket`], where `probe` says the kernel has what the loop needs (the model
    /// may run TCP on a kernel that lacks it); refused with the probe's reason otherwise. The
    /// probe answers for a model that runs here: where the model itself is unavailable it says
    /// `Ok`, and the model's own refusal gives the reason, once.
    Probed {
        probe: fn() -> Result<(), String>,
        run: UdpLoopFn,
    },
    /// `--threads` runtime workers inside one server thread (named `thread`) owning every socket.
    Workers {
        thread: &'static str,
        run: UdpServerFn,
    },
    /// It does not serve UDP; `serve --proto udp` refuses it with this reason. No row uses it
    /// today (every model serves UDP); it stays so a model without a datagram loop is one row.
    #[allow(dead_code)]
    Refused(&'static str),
}

impl Udp {
    /// Whether a row with this UDP entry serves `proto`, and if not, the row's reason.
    fn serves(&self, proto: Proto) -> Result<(), String> {
        match (proto, self) {
            (Proto::Udp, Udp::Refused(reason)) => Err(reason.to_string()),
            (Proto::Udp, Udp::Probed { probe, .. }) => probe(),
            _ => Ok(()),
        }
    }
}

/// Whether a model can busy-poll ([`Config::busy_poll`]): wait with a zero timeout instead of
/// sleeping. One value per registry row, so enabling it for a model is changing its row.
enum BusyPoll {
    /// Its waits take a timeout, and with busy-poll that timeout is zero.
    Supported,
    /// It cannot; `serve --busy-poll` refuses it with this reason.
    Refused(&'static str),
}

/// One row of the registry.
struct Entry {
    model: Model,
    name: &'static str,
    description: &'static str,
    availability: fn() -> Result<(), String>,
    run: Run,
    udp: Udp,
    busy_poll: BusyPoll,
}

/// The readiness loops (`level.rs`, `edge.rs`) pass a zero timeout to every wait.
const ZERO_TIMEOUT: BusyPoll = BusyPoll::Supported;
/// The io_uring loops peek the completion queue and enter the kernel only with work for it
/// (`uring::poll_once`).
const PEEK_COMPLETIONS: BusyPoll = BusyPoll::Supported;

/// For models that run wherever this crate builds.
fn everywhere() -> Result<(), String> {
    Ok(())
}

/// What a model that serves only TCP lists.
const TCP: &[Proto] = &[Proto::Tcp];
/// What a model that also serves UDP lists.
const TCP_UDP: &[Proto] = &[Proto::Tcp, Proto::Udp];

/// Every model, in [`Model`]'s order (checked when this compiles), which is display order.
const REGISTRY: &[Entry] = &[
    Entry {
        model: Model::Blocking,
        name: "blocking",
        description: "one OS thread per client, blocking std::net read/write",
        availability: everywhere,
        run: Run::PerClient {
            thread: "blocking-accept",
            run: blocking::run,
        },
        udp: Udp::PerSocket(blocking::run_udp),
        busy_poll: BusyPoll::Refused(
            "each client thread blocks in read(2): there is no wait to give a zero timeout",
        ),
    },
    Entry {
        model: Model::Select,
        name: "select",
        description: "select, level-triggered; refuses connections past FD_SETSIZE (1024: descriptor numbers on Unix, sockets per loop on Windows)",
        availability: select::availability,
        run: Run::PerLoop(select::run),
        udp: Udp::PerSocket(select::run_udp),
        busy_poll: ZERO_TIMEOUT,
    },
    Entry {
        model: Model::Poll,
        name: "poll",
        description: "poll(2) (WSAPoll on Windows), level-triggered, pollfd array rebuilt each turn",
        availability: poll::availability,
        run: Run::PerLoop(poll::run),
        udp: Udp::PerSocket(poll::run_udp),
        busy_poll: ZERO_TIMEOUT,
    },
    Entry {
        model: Model::Epoll,
        name: "epoll",
        description: "raw epoll, edge-triggered, one epoll_ctl per connection lifetime",
        availability: epoll::availability,
        run: Run::PerLoop(epoll::run),
        udp: Udp::PerSocket(epoll::run_udp),
        busy_poll: ZERO_TIMEOUT,
    },
    Entry {
        model: Model::Mio,
        name: "mio",
        description: "mio crate (epoll/kqueue/IOCP-AFD), edge-triggered",
        availability: everywhere,
        run: Run::PerLoop(mio::run),
        udp: Udp::PerSocket(mio::run_udp),
        busy_poll: ZERO_TIMEOUT,
    },
    Entry {
        model: Model::Polling,
        name: "polling",
        description: "polling crate (smol's reactor), oneshot: re-armed after every event",
        availability: everywhere,
        run: Run::PerLoop(polling::run),
        udp: Udp::PerSocket(polling::run_udp),
        busy_poll: ZERO_TIMEOUT,
    },
    Entry {
        model: Model::Tokio,
        name: "tokio",
        description: "tokio current-thread runtime, one task per connection",
        availability: everywhere,
        run: Run::PerLoop(tokio::run_current_thread),
        udp: Udp::PerSocket(tokio::run_udp_current_thread),
        busy_poll: BusyPoll::Refused(
            "tokio's runtime chooses its own epoll_wait timeout and has no busy-poll setting",
        ),
    },
    Entry {
        model: Model::TokioMt,
        name: "tokio-mt",
        description: "tokio multi-thread runtime (--threads workers), work-stealing",
        availability: everywhere,
        run: Run::Workers {
            thread: "tokio-mt",
            run: tokio::run_multi_thread,
        },
        udp: Udp::Workers {
            thread: "tokio-mt",
            run: tokio::run_udp_multi_thread,
        },
        busy_poll: BusyPoll::Refused(
            "tokio's runtime chooses its own epoll_wait timeout and has no busy-poll setting",
        ),
    },
    Entry {
        model: Model::Uring,
        name: "uring",
        description: "io_uring completions, one-shot accept/recv/send, one ring per loop",
        availability: uring::availability,
        run: Run::PerLoop(uring::run),
        udp: Udp::Probed {
            probe: uring::udp::oneshot_availability,
            run: uring::udp::run_oneshot,
        },
        busy_poll: PEEK_COMPLETIONS,
    },
    Entry {
        model: Model::UringMultishot,
        name: "uring-multishot",
        description: "io_uring, multishot accept/recv into a shared provided-buffer ring, DEFER_TASKRUN",
        availability: uring::multishot::availability,
        run: Run::PerLoop(uring::multishot::run),
        udp: Udp::Probed {
            probe: uring::udp::multishot_availability,
            run: uring::udp::run_multishot,
        },
        busy_poll: PEEK_COMPLETIONS,
    },
    Entry {
        model: Model::Iocp,
        name: "iocp",
        description: "I/O completion port: AcceptEx posted ahead, WSARecv/WSASend (UDP: WSARecvFrom/WSASendTo), --threads workers on one port",
        availability: iocp::availability,
        run: Run::Workers {
            thread: "iocp",
            run: iocp::run,
        },
        udp: Udp::Workers {
            thread: "iocp",
            run: iocp::run_udp,
        },
        // Its workers dequeue with GetQueuedCompletionStatusEx, whose timeout can be zero.
        busy_poll: BusyPoll::Supported,
    },
];

// Row i describes the model whose discriminant is i, so `Model::entry` can index.
const _: () = {
    let mut i = 0;
    while i < REGISTRY.len() {
        assert!(
            REGISTRY[i].model as usize == i,
            "REGISTRY rows must follow Model's order"
        );
        i += 1;
    }
};

/// Every model of the registry, in its order.
const ALL: [Model; REGISTRY.len()] = {
    let mut all = [Model::Blocking; REGISTRY.len()];
    let mut i = 0;
    while i < REGISTRY.len() {
        all[i] = REGISTRY[i].model;
        i += 1;
    }
    all
};

impl Model {
    /// Every model this build knows, available here or not, in display order.
    pub const ALL: &'static [Model] = &ALL;

    fn entry(self) -> &'static Entry {
        &REGISTRY[self as usize]
    }

    /// The registry name (used on the command line and in results).
    pub fn name(self) -> &'static str {
        self.entry().name
    }

    /// One line on what it is.
    pub fn description(self) -> &'static str {
        self.entry().description
    }

    /// The transports it serves here: TCP always, UDP where its registry row has a UDP loop
    /// (and, for a probed one, the kernel has what it needs).
    pub fn protocols(self) -> &'static [Proto] {
        match self.serves(Proto::Udp) {
            Err(_) => TCP,
            Ok(()) => TCP_UDP,
        }
    }

    /// Whether the model serves `proto` here, and if not, why (its registry row's reason, or
    /// what its kernel probe found missing).
    pub fn serves(self, proto: Proto) -> Result<(), String> {
        self.entry().udp.serves(proto)
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
        (self.entry().availability)().map_err(|reason| Unsupported {
            model: self.name(),
            reason,
        })
    }

    /// The most bytes one connection can hold read-but-unsent under `config`: one buffer
    /// (`buffer_size`). The one exception is `uring-multishot` on a kernel without the
    /// multishot receive limit (before Linux 6.17), where it is the loop's whole buffer ring:
    /// its connections share it, and a receive armed once keeps delivering until its cancel
    /// takes effect.
    pub fn held_per_connection(self, config: &Config) -> usize {
        match self {
            Model::UringMultishot if !uring::multishot::receive_limit() => {
                config.buffer_size * config.uring.ring_buffers as usize
            }
            _ => config.buffer_size,
        }
    }

    /// Whether the model can busy-poll ([`Config::busy_poll`]), and if not, why: read from its
    /// registry row, the one place that decides it.
    pub fn busy_poll(self) -> Result<(), &'static str> {
        match self.entry().busy_poll {
            BusyPoll::Supported => Ok(()),
            BusyPoll::Refused(reason) => Err(reason),
        }
    }

    /// The model's own ceiling on descriptor numbers, if it has one: `select` cannot watch a
    /// descriptor at or above `FD_SETSIZE` (1024 on Linux and macOS; on Windows a loop watches
    /// at most 1,024 sockets, whatever their handles), so a server process that
    /// needs that many descriptors (its connections plus the few it holds itself: standard
    /// streams, listener, wake-up) refuses the connections past it. `None`: only the process's
    /// open-file limit applies. A sweep reads this to skip a step the model cannot serve.
    pub fn descriptor_limit(self) -> Option<usize> {
        match self {
            Model::Select => select::DESCRIPTOR_LIMIT,
            _ => None,
        }
    }

    /// Model-specific limits on the shared config.
    pub(crate) fn check_config(self, config: &Config) -> Result<(), ConfigError> {
        if let Err(reason) = self.serves(config.proto) {
            return Err(ConfigError::ProtoNotServed {
                model: self.name(),
                proto: config.proto.name(),
                reason,
            });
        }
        // UDP has no client threads: `blocking` runs `--threads` threads blocking in recvfrom.
        if matches!(self.entry().run, Run::PerClient { .. })
            && config.proto == Proto::Tcp
            && config.threads != 1
        {
            return Err(ConfigError::ThreadsNotApplicable(self.name()));
        }
        if config.busy_poll
            && let Err(reason) = self.busy_poll()
        {
            return Err(ConfigError::BusyPoll {
                model: self.name(),
                reason,
            });
        }
        let uring = matches!(self, Model::Uring | Model::UringMultishot);
        let multishot = self == Model::UringMultishot;
        let (given, default) = (&config.uring, UringOptions::default());
        const BOTH: &str = "uring and uring-multishot";
        const MULTISHOT: &str = "uring-multishot";
        for (applies, set, option, models) in [
            (
                uring,
                given.ring_entries != default.ring_entries,
                "--ring-entries",
                BOTH,
            ),
            (uring, given.sqpoll_idle_ms.is_some(), "--sqpoll", BOTH),
            (
                multishot,
                given.ring_buffers != default.ring_buffers,
                "--ring-buffers",
                MULTISHOT,
            ),
            (multishot, given.fixed_files, "--fixed-files", MULTISHOT),
            (
                multishot,
                !given.defer_taskrun,
                "--no-defer-taskrun",
                MULTISHOT,
            ),
        ] {
            if set && !applies {
                return Err(ConfigError::NotThisModel {
                    option,
                    models,
                    model: self.name(),
                });
            }
        }
        Ok(())
    }

    /// How many `Incoming`s the model takes: one per event loop; `tokio-mt` shares listeners
    /// among its workers and `blocking` has only its accept thread.
    pub(crate) fn loops(self, config: &Config) -> usize {
        match self.entry().run {
            Run::PerLoop(_) => config.threads,
            Run::Workers { .. } if config.accept == AcceptMode::Handoff => 1,
            Run::Workers { .. } => config.threads,
            Run::PerClient { .. } => 1,
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

/// Starts the model's UDP threads into `threads`, one socket per loop (`endpoints` has
/// `--threads` entries); each reports ready through `ctx`.
pub(crate) fn launch_udp(
    model: Model,
    endpoints: Vec<Endpoint>,
    ctx: &Arc<Ctx>,
    threads: &mut Vec<JoinHandle<io::Result<()>>>,
) -> io::Result<()> {
    match model.entry().udp {
        Udp::PerSocket(per_socket)
        | Udp::Probed {
            run: per_socket, ..
        } => {
            for (i, endpoint) in endpoints.into_iter().enumerate() {
                threads.push(spawn(
                    format!("{}-udp-{i}", model.name()),
                    ctx,
                    move |ctx| per_socket(endpoint, ctx),
                )?);
            }
        }
        Udp::Workers { thread, run } => {
            threads.push(spawn(thread.into(), ctx, move |ctx| run(endpoints, ctx))?);
        }
        Udp::Refused(reason) => return Err(io::Error::new(io::ErrorKind::Unsupported, reason)),
    }
    Ok(())
}

/// Starts the model's threads into `threads`; each reports ready through `ctx`.
pub(crate) fn launch(
    model: Model,
    incoming: Vec<Incoming>,
    ctx: &Arc<Ctx>,
    threads: &mut Vec<JoinHandle<io::Result<()>>>,
) -> io::Result<()> {
    match model.entry().run {
        Run::PerLoop(per_loop) => {
            for (i, incoming) in incoming.into_iter().enumerate() {
                threads.push(spawn(format!("{}-{i}", model.name()), ctx, move |ctx| {
                    per_loop(incoming, ctx)
                })?);
            }
        }
        Run::Workers { thread, run } | Run::PerClient { thread, run } => {
            threads.push(spawn(thread.into(), ctx, move |ctx| run(incoming, ctx))?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first value that occurs twice in `items`, wherever the two stand.
    fn first_duplicate<T: Ord + Copy>(items: &[T]) -> Option<T> {
        let mut sorted = items.to_vec();
        sorted.sort();
        sorted.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
    }

    #[test]
    fn names_round_trip_and_are_unique() {
        for &m in Model::ALL {
            assert_eq!(Model::from_name(m.name()), Some(m));
            assert_eq!(m.name().parse::<Model>(), Ok(m));
        }
        let names: Vec<_> = Model::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(first_duplicate(&names), None, "two models share a name");
        assert!(
            "nope"
                .parse::<Model>()
                .unwrap_err()
                .contains("unknown model 'nope'")
        );
    }

    #[test]
    fn a_duplicate_is_found_wherever_it_stands() {
        // `dedup` alone would miss the first case: the two "a"s are not adjacent.
        assert_eq!(first_duplicate(&["a", "b", "a"]), Some("a"));
        assert_eq!(first_duplicate(&["a", "a", "b"]), Some("a"));
        assert_eq!(first_duplicate(&["c", "b", "a"]), None);
    }

    #[test]
    fn every_row_is_complete() {
        assert_eq!(Model::ALL.len(), REGISTRY.len());
        for &m in Model::ALL {
            assert_eq!(m.entry().model, m);
            assert!(!m.description().is_empty(), "{m}: no description");
            assert!(
                m.protocols().contains(&Proto::Tcp),
                "{m}: every model serves TCP"
            );
            assert_eq!(
                m.protocols().contains(&Proto::Udp),
                m.serves(Proto::Udp).is_ok(),
                "{m}: protocols and serves disagree"
            );
            assert_eq!(
                first_duplicate(m.protocols()),
                None,
                "{m}: a protocol listed twice"
            );
        }
    }

    /// Every model serves UDP (`iocp`, the last one refused, through `WSARecvFrom`/`WSASendTo`
    /// workers like its TCP ones), so the refusal is checked on a row entry of its own: it
    /// refuses UDP with its reason, never TCP, and the error is one line naming both.
    #[test]
    fn a_row_without_udp_refuses_it_with_its_reason() {
        for &m in Model::ALL {
            assert_eq!(m.serves(Proto::Udp), Ok(()), "{m}");
            assert_eq!(m.protocols(), TCP_UDP, "{m}");
        }
        assert!(matches!(
            Model::Iocp.entry().udp,
            Udp::Workers { thread: "iocp", .. }
        ));
        let refused = Udp::Refused("no datagram loop here");
        assert_eq!(
            refused.serves(Proto::Udp),
            Err("no datagram loop here".to_string())
        );
        assert_eq!(refused.serves(Proto::Tcp), Ok(()));
        assert_eq!(Udp::PerSocket(epoll::run_udp).serves(Proto::Udp), Ok(()));
        // A probed loop serves UDP only where its probe passes; TCP never depends on it.
        let lacking = Udp::Probed {
            probe: || Err("the kernel lacks it".to_string()),
            run: epoll::run_udp,
        };
        assert_eq!(
            lacking.serves(Proto::Udp),
            Err("the kernel lacks it".to_string())
        );
        assert_eq!(lacking.serves(Proto::Tcp), Ok(()));
        let having = Udp::Probed {
            probe: || Ok(()),
            run: epoll::run_udp,
        };
        assert_eq!(having.serves(Proto::Udp), Ok(()));
        let line = ConfigError::ProtoNotServed {
            model: "x",
            proto: "udp",
            reason: "no datagram loop here".to_string(),
        }
        .to_string();
        assert_eq!(line, "x does not serve udp: no datagram loop here");
        let udp = Config {
            proto: Proto::Udp,
            threads: 3,
            ..Config::default()
        };
        assert!(
            Model::Blocking.check_config(&udp).is_ok(),
            "UDP gives blocking --threads receiving threads"
        );
    }

    #[test]
    fn threads_mean_what_the_row_says() {
        let config = |threads, accept| Config {
            threads,
            accept,
            ..Config::default()
        };
        let four = config(4, AcceptMode::Handoff);
        assert_eq!(Model::Epoll.loops(&four), 4);
        assert_eq!(
            Model::TokioMt.loops(&four),
            1,
            "one listener shared by the workers"
        );
        assert_eq!(Model::TokioMt.loops(&config(4, AcceptMode::ReusePort)), 4);
        assert_eq!(Model::Blocking.loops(&config(1, AcceptMode::Handoff)), 1);
        assert!(Model::Blocking.check_config(&four).is_err());
        assert!(Model::Epoll.check_config(&four).is_ok());
        let big_ring = Config {
            uring: UringOptions {
                ring_entries: 4096,
                ..UringOptions::default()
            },
            ..Config::default()
        };
        assert!(Model::Uring.check_config(&big_ring).is_ok());
        assert!(Model::Epoll.check_config(&big_ring).is_err());
        let with = |uring| Config {
            uring,
            ..Config::default()
        };
        let sqpoll = with(UringOptions {
            sqpoll_idle_ms: Some(100),
            ..UringOptions::default()
        });
        assert!(Model::Uring.check_config(&sqpoll).is_ok());
        assert!(Model::UringMultishot.check_config(&sqpoll).is_ok());
        assert!(Model::Epoll.check_config(&sqpoll).is_err());
        for multishot_only in [
            UringOptions {
                fixed_files: true,
                ..UringOptions::default()
            },
            UringOptions {
                defer_taskrun: false,
                ..UringOptions::default()
            },
        ] {
            let config = with(multishot_only);
            assert!(Model::UringMultishot.check_config(&config).is_ok());
            assert_eq!(
                Model::Uring.check_config(&config).unwrap_err().to_string(),
                format!(
                    "{} applies to uring-multishot only, not uring",
                    if config.uring.fixed_files {
                        "--fixed-files"
                    } else {
                        "--no-defer-taskrun"
                    }
                )
            );
        }
    }

    #[test]
    fn busy_poll_is_refused_exactly_where_the_row_says() {
        let spin = Config {
            busy_poll: true,
            ..Config::default()
        };
        for &m in Model::ALL {
            match (m.busy_poll(), m.check_config(&spin)) {
                (Ok(()), Ok(())) => {}
                (Err(reason), Err(e)) => {
                    let line = e.to_string();
                    assert!(line.contains(reason) && line.contains(m.name()), "{line}");
                    assert!(!line.contains('\n'), "one line: {line}");
                }
                (row, checked) => panic!("{m}: row says {row:?}, check_config says {checked:?}"),
            }
        }
        for m in [
            Model::Select,
            Model::Poll,
            Model::Epoll,
            Model::Mio,
            Model::Polling,
        ] {
            assert_eq!(
                m.busy_poll(),
                Ok(()),
                "{m} waits with a timeout it can zero"
            );
        }
        for m in [Model::Blocking, Model::Tokio, Model::TokioMt] {
            assert!(m.busy_poll().is_err(), "{m} has no zero-timeout wait");
        }
    }
}
