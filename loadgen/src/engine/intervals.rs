//! One worker's side of the 1 s intervals (progress and the `.hlog`): what it recorded since the
//! last boundary of the grid, handed to the coordinator when the interval closes.
//!
//! Every count goes through a method that first closes the intervals that ended before the
//! event's time, so a completion or an error lands in the interval that contains it whatever
//! the caller last did. The worker's run totals are deliberately not here: they are the
//! worker's, and a count here is only the live view.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::msg::{Msg, Tx};
use super::new_hist;
use super::schedule::{SECOND, grid};

pub(super) struct Intervals {
    warm_end: Instant,
    /// Open loop: keep the uncorrected histogram too.
    open: bool,
    corrected: Histogram<u64>,
    uncorrected: Histogram<u64>,
    errors: u64,
    /// The current interval: negative while warming up.
    index: i64,
    /// Its end.
    next_boundary: Instant,
    tx: Tx,
    id: usize,
}

impl Intervals {
    /// Intervals of worker `id`, their histograms allocated; [`Intervals::start`] anchors them on
    /// the grid once the timeline is known (allocation belongs before the timeline's start).
    pub(super) fn new(open: bool, tx: Tx, id: usize) -> Self {
        let now = Instant::now();
        Self {
            warm_end: now,
            open,
            corrected: new_hist(),
            uncorrected: new_hist(),
            errors: 0,
            index: 0,
            next_boundary: now,
            tx,
            id,
        }
    }

    /// Anchor the intervals on the grid of `warm_end`, starting with the first warm-up interval.
    pub(super) fn start(&mut self, warm_end: Instant, warmup: Duration) {
        self.warm_end = warm_end;
        self.index = -(warmup.as_nanos().div_ceil(SECOND.as_nanos()) as i64);
        self.next_boundary = grid(warm_end, self.index + 1);
    }

    /// When the current interval ends: the worker wakes for it.
    pub(super) fn next_boundary(&self) -> Instant {
        self.next_boundary
    }

    /// A completion at `t` with its latency (and, open loop, its uncorrected latency), in ns.
    pub(super) fn record(&mut self, t: Instant, corrected: u64, uncorrected: Option<u64>) {
        self.roll(t);
        self.corrected.saturating_record(corrected);
        if let Some(u) = uncorrected {
            self.uncorrected.saturating_record(u);
        }
    }

    /// An error at `t`. Rolling first matters: an error just after a boundary belongs to the new
    /// interval, and one just after warm-up to the measured window's live count.
    pub(super) fn error(&mut self, t: Instant) {
        self.roll(t);
        self.errors += 1;
    }

    /// Close and hand over every interval that ended at or before `t`.
    pub(super) fn roll(&mut self, t: Instant) {
        while t >= self.next_boundary {
            self.send();
            self.index += 1;
            self.next_boundary = grid(self.warm_end, self.index + 1);
        }
    }

    /// The run ended at `t`: close what ended before it and hand over the partial interval too.
    pub(super) fn finish(&mut self, t: Instant) {
        self.roll(t);
        self.send();
    }

    fn send(&mut self) {
        let corrected = std::mem::replace(&mut self.corrected, new_hist());
        let uncorrected = self
            .open
            .then(|| std::mem::replace(&mut self.uncorrected, new_hist()));
        let errors = std::mem::take(&mut self.errors);
        let _ = self.tx.send((
            self.id,
            Msg::Interval {
                index: self.index,
                corrected,
                uncorrected,
                errors,
            },
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (index, completions, errors) of every interval handed over.
    fn received(rx: &std::sync::mpsc::Receiver<(usize, Msg)>) -> Vec<(i64, u64, u64)> {
        rx.try_iter()
            .filter_map(|(_, m)| match m {
                Msg::Interval {
                    index,
                    corrected,
                    errors,
                    ..
                } => Some((index, corrected.len(), errors)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn counts_land_in_the_interval_that_contains_them() {
        let (tx, rx) = std::sync::mpsc::channel();
        let warm_end = Instant::now();
        let ms = |m: u64| warm_end + Duration::from_millis(m);
        let mut iv = Intervals::new(false, tx, 0);
        iv.start(warm_end, Duration::from_millis(500));
        // Nothing rolled since the start: each count must close what ended before it.
        iv.error(ms(1)); // just after warm-up: interval 0, in the live count
        iv.record(ms(999), 1_000, None);
        iv.error(ms(1_001)); // just after a boundary: interval 1
        iv.record(ms(1_002), 1_000, None);
        iv.finish(ms(1_500));
        assert_eq!(received(&rx), [(-1, 0, 0), (0, 1, 1), (1, 1, 1)]);
    }
}
