//! Server settings shared by every model, validated once.
//!
//! Models are comparable only if they do the same work, so the knobs here are the ones every
//! model honours (buffer size, loop count, backlog, how loops share the port). Model-specific
//! settings are recorded in [`ServerStats::settings`](crate::ServerStats::settings) instead.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::models::Proto;

/// Default per-connection buffer: 16 KiB, the same for every model.
pub const DEFAULT_BUFFER: usize = 16 * 1024;
/// Default accept backlog, the same for every model.
pub const DEFAULT_BACKLOG: i32 = 1024;

/// How several loops (`threads > 1`) share one listening port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AcceptMode {
    /// One listening socket per loop with `SO_REUSEPORT`; the kernel balances connections.
    /// Linux only: on macOS and the BSDs `SO_REUSEPORT` does not balance.
    ReusePort,
    /// One listening socket; an acceptor thread hands connections to the loops round-robin.
    Handoff,
}

impl AcceptMode {
    /// The mode used when none is asked for: `reuse-port` where the kernel balances it.
    pub fn platform_default() -> Self {
        if Self::ReusePort.is_supported() {
            Self::ReusePort
        } else {
            Self::Handoff
        }
    }

    /// Whether this platform offers the mode.
    pub fn is_supported(self) -> bool {
        match self {
            Self::ReusePort => cfg!(any(target_os = "linux", target_os = "android")),
            Self::Handoff => true,
        }
    }

    /// The name used on the command line and in stats.
    pub fn name(self) -> &'static str {
        match self {
            Self::ReusePort => "reuse-port",
            Self::Handoff => "handoff",
        }
    }
}

impl fmt::Display for AcceptMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses the command-line name ([`AcceptMode::name`]); the error lists the names.
impl std::str::FromStr for AcceptMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::ReusePort, Self::Handoff]
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("'{s}' is not an accept mode (reuse-port or handoff)"))
    }
}

/// Default submission-queue entries per io_uring ring.
pub const DEFAULT_RING_ENTRIES: u32 = 1024;

/// The io_uring models' own settings; other models ignore them (and `serve` refuses them for
/// other models). What a model used is recorded in the stats' settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UringOptions {
    /// Submission queue entries per ring; the kernel rounds up to a power of two and gives the
    /// completion queue twice as many. A turn that queues more submissions than this submits
    /// the full queue and goes on, so this trades memory for fewer `io_uring_enter` calls.
    pub ring_entries: u32,
    /// `uring-multishot`: buffers in each loop's provided-buffer ring (a power of two up to
    /// 32768), each `buffer_size` bytes. All of a loop's connections receive into them, so this
    /// bounds what a loop holds, and a loop whose buffers are all held pauses its receives.
    #[serde(default = "default_ring_buffers")]
    pub ring_buffers: u16,
    /// Both io_uring models: `IORING_SETUP_SQPOLL` with this idle time in milliseconds (a
    /// kernel thread per ring polls the submission queue and sleeps after this long without
    /// work); `None` submits with `io_uring_enter` as usual. Incompatible with `DEFER_TASKRUN`,
    /// which `uring-multishot` then does without. 1 to 60,000 ms.
    #[serde(default)]
    pub sqpoll_idle_ms: Option<u32>,
    /// `uring-multishot`: register each accepted socket in the ring's fixed-file table and name
    /// it by its slot in every operation (saves a file lookup per operation, costs an
    /// `io_uring_register` call when a connection opens and one when it closes).
    #[serde(default)]
    pub fixed_files: bool,
    /// `uring-multishot`: ask for `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN`
    /// (the default); `false` sets the ring up without them, for the ablation.
    #[serde(default = "default_true")]
    pub defer_taskrun: bool,
}

fn default_true() -> bool {
    true
}

/// Default buffers in a `uring-multishot` loop's ring: 256 × 16 KiB = 4 MiB per loop.
pub const DEFAULT_RING_BUFFERS: u16 = 256;

fn default_ring_buffers() -> u16 {
    DEFAULT_RING_BUFFERS
}

impl Default for UringOptions {
    fn default() -> Self {
        Self {
            ring_entries: DEFAULT_RING_ENTRIES,
            ring_buffers: DEFAULT_RING_BUFFERS,
            sqpoll_idle_ms: None,
            fixed_files: false,
            defer_taskrun: true,
        }
    }
}

/// Settings every model honours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Event loops (one per thread); for `tokio-mt`, runtime worker threads. Must be 1 for
    /// `blocking` over TCP, which has one thread per client instead (over UDP it is the number
    /// of threads blocking in `recvfrom`).
    pub threads: usize,
    /// Bytes each connection reads at a time; also the most a connection holds unsent. TCP
    /// only: UDP receives into a buffer sized for the largest datagram (64 KiB).
    pub buffer_size: usize,
    /// The listen backlog.
    pub backlog: i32,
    /// How loops share the port when `threads > 1`.
    pub accept: AcceptMode,
    /// io_uring models only (`uring`).
    #[serde(default)]
    pub uring: UringOptions,
    /// Busy-poll: the loops never sleep, every wait is a zero-timeout poll, so a request does
    /// not pay the server thread's wake-up (at the price of a whole CPU per loop). Only models
    /// whose registry row supports it accept it ([`Model::busy_poll`](crate::Model::busy_poll)).
    #[serde(default)]
    pub busy_poll: bool,
    /// The transport served: TCP echo, or UDP datagram echo (`serve --proto udp`; only models
    /// that list [`Proto::Udp`] in [`Model::protocols`](crate::Model::protocols) take it).
    #[serde(default)]
    pub proto: Proto,
    /// UDP only: `SO_RCVBUF` to ask for on the server's sockets, in bytes (the kernel may
    /// grant another value, Linux doubles it; the stats' settings record what it granted).
    /// `None` keeps the system default.
    #[serde(default)]
    pub rcvbuf: Option<usize>,
    /// UDP only: `SO_SNDBUF` to ask for, as for [`rcvbuf`](Self::rcvbuf).
    #[serde(default)]
    pub sndbuf: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            threads: 1,
            buffer_size: DEFAULT_BUFFER,
            backlog: DEFAULT_BACKLOG,
            accept: AcceptMode::platform_default(),
            uring: UringOptions::default(),
            busy_poll: false,
            proto: Proto::Tcp,
            rcvbuf: None,
            sndbuf: None,
        }
    }
}

/// The largest socket buffer `--rcvbuf`/`--sndbuf` may ask for: 1 GiB.
pub const MAX_SOCKET_BUFFER: usize = 1 << 30;

/// A setting that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// `threads` was 0 or absurd.
    #[error("--threads must be between 1 and 1024 (got {0})")]
    Threads(usize),
    /// The buffer is too small to be useful or too large to be honest about memory.
    #[error("--buffer must be between 1 and 16777216 bytes (got {0})")]
    Buffer(usize),
    /// Backlog out of range.
    #[error("--backlog must be between 1 and 65535 (got {0})")]
    Backlog(i32),
    /// The model has no loops to multiply.
    #[error("{0} runs one thread per client: --threads does not apply (leave it at 1)")]
    ThreadsNotApplicable(&'static str),
    /// The ring size is out of what io_uring takes.
    #[error("--ring-entries must be between 1 and 32768 (got {0})")]
    RingEntries(u32),
    /// The buffer ring's size is not one io_uring takes.
    #[error("--ring-buffers must be a power of two between 1 and 32768 (got {0})")]
    RingBuffers(u16),
    /// The SQ poll thread's idle time is out of range.
    #[error("--sqpoll idle time must be between 1 ms and 60 s (got {0} ms)")]
    SqpollIdle(u32),
    /// An option of other models was given.
    #[error("{option} applies to {models} only, not {model}")]
    NotThisModel {
        /// The option, as a flag.
        option: &'static str,
        /// The models that take it.
        models: &'static str,
        /// The model asked for.
        model: &'static str,
    },
    /// Busy-polling was asked of a model that cannot do it.
    #[error("{model} cannot busy-poll ({reason}): leave out --busy-poll for it")]
    BusyPoll {
        /// The model asked for.
        model: &'static str,
        /// Why it cannot (its registry row's reason).
        reason: &'static str,
    },
    /// A socket buffer size out of range.
    #[error("{option} must be between 1 and 1073741824 bytes (got {size})")]
    SocketBuffer {
        /// The flag.
        option: &'static str,
        /// What was asked.
        size: usize,
    },
    /// A UDP-only option with TCP.
    #[error("{0} applies to --proto udp only (TCP sockets keep the system's buffers)")]
    UdpOnly(&'static str),
    /// The model does not serve this transport.
    #[error("{model} does not serve {proto}: {reason}")]
    ProtoNotServed {
        /// The model asked for.
        model: &'static str,
        /// The transport asked for.
        proto: &'static str,
        /// Why not (its registry row's reason, or what its kernel probe found missing).
        reason: String,
    },
    /// The accept mode does not exist on this OS.
    #[error(
        "--accept {0} is not available on this OS (SO_REUSEPORT does not balance here): use --accept handoff"
    )]
    AcceptMode(AcceptMode),
}

impl Config {
    /// Checks every field; the models assume a validated config.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=1024).contains(&self.threads) {
            return Err(ConfigError::Threads(self.threads));
        }
        if !(1..=16 * 1024 * 1024).contains(&self.buffer_size) {
            return Err(ConfigError::Buffer(self.buffer_size));
        }
        if !(1..=65535).contains(&self.backlog) {
            return Err(ConfigError::Backlog(self.backlog));
        }
        if !(1..=32768).contains(&self.uring.ring_entries) {
            return Err(ConfigError::RingEntries(self.uring.ring_entries));
        }
        if !self.uring.ring_buffers.is_power_of_two() || self.uring.ring_buffers > 32768 {
            return Err(ConfigError::RingBuffers(self.uring.ring_buffers));
        }
        if let Some(idle) = self.uring.sqpoll_idle_ms {
            if !(1..=60_000).contains(&idle) {
                return Err(ConfigError::SqpollIdle(idle));
            }
        }
        if !self.accept.is_supported() {
            return Err(ConfigError::AcceptMode(self.accept));
        }
        for (option, size) in [("--rcvbuf", self.rcvbuf), ("--sndbuf", self.sndbuf)] {
            let Some(size) = size else { continue };
            if self.proto != Proto::Udp {
                return Err(ConfigError::UdpOnly(option));
            }
            if !(1..=MAX_SOCKET_BUFFER).contains(&size) {
                return Err(ConfigError::SocketBuffer { option, size });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_rejects_nonsense() {
        assert_eq!(Config::default().validate(), Ok(()));
        let bad = Config {
            threads: 0,
            ..Config::default()
        };
        assert_eq!(bad.validate(), Err(ConfigError::Threads(0)));
        let bad = Config {
            buffer_size: 0,
            ..Config::default()
        };
        assert_eq!(bad.validate(), Err(ConfigError::Buffer(0)));
        let bad = Config {
            backlog: 0,
            ..Config::default()
        };
        assert_eq!(bad.validate(), Err(ConfigError::Backlog(0)));
        let bad = Config {
            uring: UringOptions {
                ring_entries: 65536,
                ..UringOptions::default()
            },
            ..Config::default()
        };
        assert_eq!(bad.validate(), Err(ConfigError::RingEntries(65536)));
        let bad = Config {
            uring: UringOptions {
                ring_buffers: 100,
                ..UringOptions::default()
            },
            ..Config::default()
        };
        assert_eq!(bad.validate(), Err(ConfigError::RingBuffers(100)));
        for idle in [0, 60_001] {
            let bad = Config {
                uring: UringOptions {
                    sqpoll_idle_ms: Some(idle),
                    ..UringOptions::default()
                },
                ..Config::default()
            };
            assert_eq!(bad.validate(), Err(ConfigError::SqpollIdle(idle)));
        }
    }

    #[test]
    fn socket_buffers_are_udp_only_and_bounded() {
        let udp = |rcvbuf| Config {
            proto: Proto::Udp,
            rcvbuf,
            ..Config::default()
        };
        assert_eq!(udp(Some(4 << 20)).validate(), Ok(()));
        assert_eq!(
            udp(Some(0)).validate(),
            Err(ConfigError::SocketBuffer {
                option: "--rcvbuf",
                size: 0
            })
        );
        let tcp = Config {
            sndbuf: Some(1 << 20),
            ..Config::default()
        };
        assert_eq!(tcp.validate(), Err(ConfigError::UdpOnly("--sndbuf")));
    }

    #[test]
    fn accept_mode_parses_its_own_name() {
        for m in [AcceptMode::ReusePort, AcceptMode::Handoff] {
            assert_eq!(m.name().parse(), Ok(m));
        }
        assert!("reuseport".parse::<AcceptMode>().is_err());
    }
}
