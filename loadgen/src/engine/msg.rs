//! What the coordinator and the worker threads exchange: the messages on their one channel, the
//! shared timeline, each worker's plan, and the outcome a worker hands back through `join`.
//!
//! Plain data only: nothing here does I/O or reads the clock. Who sends what and when is in
//! [`super::startup`] (the hand-shake), [`super::intervals`] (the 1 s intervals) and
//! [`mod@super::worker`] (done).

use std::io;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::new_hist;
use crate::report::Errors;

/// What a worker tells the coordinator. Before the run each worker sends exactly one of
/// `Ready` or `SetupFailed`, so the coordinator can account for every thread.
pub(super) enum Msg {
    /// Its connections are up (or not): everything it needs is allocated and it waits for
    /// [`Go`].
    Ready {
        connected: usize,
        refused: usize,
        error: Option<io::Error>,
    },
    /// An interval of the 1 s grid closed; its histograms are moved, not copied.
    Interval {
        index: i64,
        corrected: Histogram<u64>,
        uncorrected: Option<Histogram<u64>>,
        errors: u64,
    },
    /// The worker left its loop; its outcome comes through `join`.
    Done,
    /// The worker could not set itself up (its poller) and will not run.
    SetupFailed(io::Error),
    /// The worker panicked; it sends nothing more (see [`PanicNotice`]).
    Panicked,
}

/// The sending half every worker holds: its id and a message.
pub(super) type Tx = mpsc::Sender<(usize, Msg)>;

/// Tells the coordinator when a worker panics, so it neither waits for that worker's `Ready`
/// nor for its `Done`; the panic itself is reported when the thread is joined.
pub(super) struct PanicNotice {
    pub(super) id: usize,
    pub(super) tx: Tx,
}

impl Drop for PanicNotice {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.tx.send((self.id, Msg::Panicked));
        }
    }
}

/// The shared timeline, fixed by the coordinator once every worker is ready.
#[derive(Clone, Copy, Debug)]
pub(super) struct Go {
    /// Load starts; the open-loop schedules count from here.
    pub(super) t0: Instant,
    /// The measured window opens.
    pub(super) warm_end: Instant,
    /// The measured window closes (a duration run), or `None` (a request-count run).
    pub(super) end: Option<Instant>,
}

/// What one worker is responsible for.
#[derive(Clone, Debug)]
pub(super) struct Plan {
    pub(super) id: usize,
    pub(super) conns: usize,
    pub(super) idle: usize,
    /// Its share of a request-count run.
    pub(super) share: Option<u64>,
    /// Its share of the open-loop rate.
    pub(super) rate: Option<f64>,
    /// Its uniform schedule's offset, so the threads' sends interleave evenly.
    pub(super) phase: Duration,
    pub(super) cpu: Option<usize>,
}

/// What a worker hands back through `join`.
pub(super) struct Outcome {
    pub(super) corrected: Histogram<u64>,
    pub(super) uncorrected: Histogram<u64>,
    pub(super) lag: Histogram<u64>,
    /// Send lag of requests that found a free connection: the generator's own lateness.
    pub(super) gen_lag: Histogram<u64>,
    pub(super) connect: Histogram<u64>,
    pub(super) requests: u64,
    pub(super) errors: Errors,
    pub(super) last_completion: Option<Instant>,
    pub(super) stopped_at: Instant,
    pub(super) interrupted: bool,
    /// Open loop: measured requests sent.
    pub(super) sent: u64,
    /// Open loop: of those, the ones that had found every connection busy and waited.
    pub(super) queued: u64,
    /// Open loop, duration run: measured arrivals still owed at the deadline, never sent.
    pub(super) unsent: u64,
    pub(super) warnings: Vec<String>,
    /// UDP runs: what became of the measured datagrams (`kernel` not filled here).
    pub(super) udp: Option<crate::report::Udp>,
    /// UDP runs: datagrams this worker's sockets' receive queues dropped over the window
    /// (`SO_RXQ_OVFL`), if the kernel reports it.
    pub(super) own_rcvbuf_drops: Option<u64>,
}

impl Outcome {
    /// Empty totals, allocated before the run (their histograms are the bulk of a worker's
    /// memory, and nothing is allocated after the timeline's start if it can be helped).
    pub(super) fn new(warnings: Vec<String>) -> Self {
        Self {
            corrected: new_hist(),
            uncorrected: new_hist(),
            lag: new_hist(),
            gen_lag: new_hist(),
            connect: new_hist(),
            requests: 0,
            errors: Errors::default(),
            last_completion: None,
            stopped_at: Instant::now(),
            interrupted: false,
            sent: 0,
            queued: 0,
            unsent: 0,
            warnings,
            udp: None,
            own_rcvbuf_drops: None,
        }
    }
}
