//! `loadgen`: the echo load generator of iomodels, as a library.
//!
//! A validated [`Workload`] goes in, a plain [`Report`] comes out. In between, [`run`] drives one
//! `mio` event loop per thread (closed loop, open loop, connect-per-request), records latency in
//! per-thread HdrHistograms and merges them once at the end.
//!
//! This crate deliberately does not print, exit, parse flags or decide exit codes: that is the
//! binary's job. The only output it writes is on request, through [`Report::write_json`] and
//! [`Report::write_hlog`], atomically.
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod atomic_file;
mod cpu;
mod engine;
mod host;
mod netstat;
mod report;
mod rng;
mod timer;
mod workload;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[doc(hidden)]
pub use engine::Recorder;
pub use engine::{Schedule, probe_udp, run, run_with_hooks};
pub use host::host;
pub use report::{
    Cpu, Errors, Host, Interval, LatencySummary, Report, SCHEMA, SCHEMAS_READ, Udp, UdpKernel,
    decode_histogram, encode_histogram,
};
pub use workload::{
    Arrival, Limit, Options, Proto, SizeRange, UDP_HEADER, UDP_MAX_SIZE, UnknownArrival,
    UnknownProto, Workload, WorkloadError,
};

/// User and system CPU time this process has used so far (all threads), from the OS.
///
/// Public so that comparison clients (`examples/blocking_client.rs`) measure CPU exactly the way
/// `client_cpu` does.
pub fn process_cpu_times() -> std::io::Result<(Duration, Duration)> {
    cpu::process_times().map(|t| (t.user, t.system))
}

/// User and system CPU time a child process has used so far (the whole process, all its
/// threads, including threads that already ended), from the OS's accounting: `/proc/PID/stat`
/// on Linux, `proc_pidinfo` on macOS, `GetProcessTimes` on Windows. Resolution is the OS's
/// (10 ms ticks on a typical Linux).
///
/// Read it while the child runs, or after it exited but before it was reaped: on Linux an
/// unreaped (zombie) child still reports its totals, and on Windows the handle `child` holds
/// keeps them; once `wait`/`try_wait` reaped it, a Unix PID may be gone or reused.
///
/// # Errors
/// `NotFound` if the process is gone (reaped), `PermissionDenied` if the OS refuses to tell,
/// `Unsupported` on Unix systems other than Linux and macOS.
pub fn child_cpu_times(child: &std::process::Child) -> std::io::Result<(Duration, Duration)> {
    cpu::child_times(child).map(|t| (t.user, t.system))
}

/// A cheap, cloneable "please stop" flag; the CLI sets it on Ctrl-C.
///
/// Workers read it once per event-loop turn (at least every few milliseconds), so a stop is
/// honoured promptly without any lock on the hot path.
#[derive(Clone, Debug, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// A flag not yet set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask the run to end early; its report will say `interrupted: true`.
    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`Stop::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A live view of the run, handed to the progress callback about once a second.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    /// Time since the connections were up and load started (warm-up included).
    pub elapsed: Duration,
    /// False while warming up: nothing seen so far is in the report.
    pub measuring: bool,
    /// Requests completed in the measured window so far.
    pub requests: u64,
    /// Errors counted in the measured window so far.
    pub errors: u64,
    /// Completions per second over the last interval.
    pub interval_rps: f64,
    /// p99 latency (corrected in open loop) of the last interval, in microseconds.
    pub interval_p99_us: f64,
}

/// An edge of the measured window (after warm-up), reported through [`Hooks::window`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// Warm-up just ended; the generator samples its own CPU time right after this call.
    Opened,
    /// Every worker has finished; the generator sampled its own CPU time just before this call.
    Closed,
}

/// Callbacks into a run, all called on the thread that called [`run_with_hooks`].
#[derive(Clone, Copy, Default)]
pub struct Hooks<'a> {
    /// A live view about once a second (see [`Progress`]).
    pub progress: Option<&'a dyn Fn(&Progress)>,
    /// The measured window's two edges, each exactly once and in order, even when the run ends
    /// before its warm-up does (then the window is empty). Keep it short: it runs between the
    /// generator's own CPU samples.
    pub window: Option<&'a dyn Fn(Window)>,
}

/// Write `bytes` to `path` atomically: a temporary file in the same directory, then a rename, so
/// a reader sees the old file or the whole new one, never half of it.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    atomic_file::write(path, bytes)
}

/// Why a run could not produce a report at all. Errors *during* a run are counted in
/// [`Errors`] instead; only a run that cannot start is an error.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Every first connection attempt was refused: nothing is listening.
    #[error("connection refused by {addr}")]
    Refused {
        /// The address that was asked.
        addr: std::net::SocketAddr,
    },
    /// No connection could be made at start, for another reason (timeout, unreachable, ...).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address that was asked.
        addr: std::net::SocketAddr,
        /// The first connect error.
        #[source]
        source: std::io::Error,
    },
    /// The machinery itself failed (poller creation, thread spawn).
    #[error("load generator setup failed: {0}")]
    Io(#[from] std::io::Error),
}
