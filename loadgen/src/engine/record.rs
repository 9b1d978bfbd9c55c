//! What a worker records for one measured completed request: its latency into the run's total
//! histogram and into the live 1 s interval ([`completion`]), plus [`Recorder`], a stand-alone
//! handle on that same path so the cost of recording can be benchmarked (`loadgen/record`).
//!
//! Deliberately not here: taking the timestamps (the worker's timestamp contract), the
//! open-loop-only histograms (uncorrected latency, send lag), and handing intervals over or
//! merging them (`intervals.rs`, the coordinator).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::intervals::Intervals;
use super::new_hist;

/// One measured completion at `t` with `latency` ns (and, open loop, its `uncorrected` latency
/// for the live interval): the run's total, then the live interval. This is the only way a
/// worker records a measured completion, so [`Recorder`] measures the real thing.
#[inline]
pub(super) fn completion(
    total: &mut Histogram<u64>,
    live: &mut Intervals,
    t: Instant,
    latency: u64,
    uncorrected: Option<u64>,
) {
    total.saturating_record(latency);
    live.record(t, latency, uncorrected);
}

/// A closed-loop worker's per-completion recording, detached from any run: a total histogram
/// and a live interval with the worker's histogram shape (ns, 3 significant digits, values
/// above one hour clamped), recorded through the same code a worker calls.
///
/// Not an API for measuring latency: it exists so `cargo bench -p loadgen` can time the
/// generator's own per-request bookkeeping. Closed intervals are dropped, not reported.
#[doc(hidden)]
pub struct Recorder {
    total: Histogram<u64>,
    live: Intervals,
}

impl Recorder {
    /// A recorder whose measured window (and first 1 s interval) starts at `start`.
    pub fn new(start: Instant) -> Self {
        // Nobody receives: a closed interval is handed over and dropped, as cheaply as a
        // worker's hand-over to a live coordinator.
        let (tx, _) = mpsc::channel();
        let mut live = Intervals::new(false, tx, 0);
        live.start(start, Duration::ZERO);
        Self {
            total: new_hist(),
            live,
        }
    }

    /// A completion at `t` that took `latency_ns`, recorded as a closed-loop worker does.
    pub fn record(&mut self, t: Instant, latency_ns: u64) {
        completion(&mut self.total, &mut self.live, t, latency_ns, None);
    }

    /// How many completions the total histogram holds.
    pub fn recorded(&self) -> u64 {
        self.total.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_into_the_total_and_survives_interval_handover_without_a_receiver() {
        let start = Instant::now();
        let mut r = Recorder::new(start);
        r.record(start, 1_000);
        r.record(start + Duration::from_millis(2_500), u64::MAX); // clamps, rolls twice
        assert_eq!(r.recorded(), 2);
    }
}
