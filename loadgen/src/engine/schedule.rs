//! Open-loop arrival times ([`Schedule`], public: the exact intended send times a worker uses)
//! and the 1 s interval grid: the time arithmetic of a run.
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

/// Open-loop intended send times, exactly as a generator worker computes them: uniform gaps of
/// `1 / rate`, or exponential gaps of that mean (Poisson arrivals), both counted from `t0` in
/// `f64` seconds so rounding never accumulates into drift.
///
/// It is public so that another client, or a benchmark, can follow the same schedule as
/// `iomodels load -R`. It is deliberately only arithmetic: it never reads the clock or sleeps;
/// waiting for [`Schedule::next_send`] is the caller's business.
///
/// ```
/// use std::time::{Duration, Instant};
/// use loadgen::{Arrival, Schedule};
///
/// let t0 = Instant::now();
/// let mut s = Schedule::new(t0, 1000.0, Duration::ZERO, Arrival::Uniform, 1);
/// assert_eq!(s.next_send(), t0);
/// s.advance();
/// assert_eq!(s.next_send(), t0 + Duration::from_millis(1));
/// ```
#[derive(Clone, Debug)]
pub struct Schedule {
    t0: Instant,
    at: f64,
    next: Instant,
    mean: f64,
    arrival: Arrival,
    rng: Rng,
}

impl Schedule {
    /// Arrivals at `rate` per second from `t0`. A uniform schedule's first send is at
    /// `t0 + phase` (workers are staggered by their phase so the aggregate stays evenly spaced);
    /// a Poisson schedule's first send is one random gap after `t0` and ignores `phase`. `seed`
    /// fixes the Poisson gaps.
    ///
    /// # Panics
    ///
    /// If `rate` is not positive and finite.
    pub fn new(t0: Instant, rate: f64, phase: Duration, arrival: Arrival, seed: u64) -> Self {
        assert!(
            rate.is_finite() && rate > 0.0,
            "open-loop rate must be positive and finite, got {rate}"
        );
        let mut s = Self {
            t0,
            at: phase.as_secs_f64(),
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

    /// The intended send time of the next request.
    pub fn next_send(&self) -> Instant {
        self.next
    }

    /// That request was issued: move on to the one after it.
    pub fn advance(&mut self) {
        self.at += match self.arrival {
            Arrival::Uniform => self.mean,
            Arrival::Poisson => self.rng.exp(self.mean),
        };
        self.next = self.t0 + Duration::from_secs_f64(self.at);
    }
}
