//! Open-loop arrival times and the 1 s interval grid: the time arithmetic of a run.
//!
//! Deliberately pure: nothing here sleeps, polls or reads the clock. How to wait for the next
//! intended send (precise timer, or spinning through the last millisecond) is the worker's
//! business, and when an interval is closed and reported is the worker's and the coordinator's.

use std::time::{Duration, Instant};

use crate::rng::Rng;
use crate::workload::Arrival;

pub(super) const SECOND: Duration = Duration::from_secs(1);

/// The 1 s grid of intervals, aligned on the start of the measured window: interval `k` ends at
/// `grid(warm_end, k + 1)`. Negative `k` are warm-up intervals (progress only).
pub(super) fn grid(warm_end: Instant, k: i64) -> Instant {
    if k >= 0 {
        warm_end + SECOND * k as u32
    } else {
        warm_end
            .checked_sub(SECOND * k.unsigned_abs() as u32)
            .unwrap_or(warm_end)
    }
}

/// Open-loop arrival times for one worker: intended times are computed from `t0` in f64 seconds
/// so rounding never accumulates into drift.
pub(super) struct Schedule {
    t0: Instant,
    at: f64,
    pub(super) next: Instant,
    mean: f64,
    arrival: Arrival,
    rng: Rng,
}

impl Schedule {
    pub(super) fn new(t0: Instant, rate: f64, phase: f64, arrival: Arrival, seed: u64) -> Self {
        let mut s = Self {
            t0,
            at: phase,
            next: t0,
            mean: 1.0 / rate,
            arrival,
            rng: Rng::new(seed),
        };
        if arrival == Arrival::Poisson {
            s.at = s.rng.exp(s.mean);
        }
        s.next = t0 + Duration::from_secs_f64(s.at);
        s
    }

    pub(super) fn advance(&mut self) {
        self.at += match self.arrival {
            Arrival::Uniform => self.mean,
            Arrival::Poisson => self.rng.exp(self.mean),
        };
        self.next = self.t0 + Duration::from_secs_f64(self.at);
    }
}
