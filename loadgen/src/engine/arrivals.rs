//! A worker's owed open-loop arrivals: requests whose intended time has come and that no
//! connection has taken yet.
//!
//! They are not a queue of timestamps. The schedule is deterministic, so the owed requests are
//! exactly the schedule's arrivals from its cursor (the oldest one not yet sent) up to now, and
//! their intended times follow from it one by one as connections take them. Owing a thousand
//! requests or a billion costs the same few bytes, which is what keeps a run at a rate the
//! generator cannot reach from growing with rate × duration (it used to push one entry per
//! arrival and spend whole loop turns doing it). How many are owed is a count computed from the
//! cursor: exact for uniform arrivals, the expected value for Poisson ones (whose gaps are
//! random and not worth drawing just to be counted).
//!
//! Deliberately pure: no clock, no I/O. Which connection takes an owed request, and how many per
//! loop turn, is the worker's business.

use std::time::Instant;

use super::schedule::Schedule;
use crate::workload::Arrival;

/// The owed arrivals of one worker: the schedule's cursor.
#[derive(Clone, Debug)]
pub(super) struct Arrivals {
    schedule: Schedule,
    rate: f64,
    arrival: Arrival,
}

impl Arrivals {
    /// Arrivals at `rate` per second following `schedule` (built with the same rate and process).
    pub(super) fn new(schedule: Schedule, rate: f64, arrival: Arrival) -> Self {
        Self {
            schedule,
            rate,
            arrival,
        }
    }

    /// The intended time of the oldest arrival not yet taken (due or not).
    pub(super) fn next(&self) -> Instant {
        self.schedule.next_send()
    }

    /// The intended time of the oldest owed arrival, if one is due at `now`.
    pub(super) fn due(&self, now: Instant) -> Option<Instant> {
        let t = self.next();
        (t <= now).then_some(t)
    }

    /// A connection takes the oldest arrival: its intended time. O(1), allocates nothing.
    pub(super) fn take(&mut self) -> Instant {
        let t = self.next();
        self.schedule.advance();
        t
    }

    /// How many arrivals not taken yet are intended before `t`: exact for uniform arrivals (up to
    /// floating-point rounding), the expected count for Poisson ones.
    pub(super) fn before(&self, t: Instant) -> u64 {
        let next = self.next();
        if next >= t {
            return 0;
        }
        let span = (t - next).as_secs_f64() * self.rate;
        match self.arrival {
            // At next, next + 1/rate, ...: every one strictly before t.
            Arrival::Uniform => span.ceil().max(1.0) as u64,
            // The one at `next` plus the expected number in the rest of the span.
            Arrival::Poisson => 1 + span.round() as u64,
        }
    }

    /// How many arrivals not taken yet are intended in `[from, to)`.
    pub(super) fn between(&self, from: Instant, to: Instant) -> u64 {
        self.before(to).saturating_sub(self.before(from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn uniform(t0: Instant, rate: f64) -> Arrivals {
        Arrivals::new(
            Schedule::new(t0, rate, Duration::ZERO, Arrival::Uniform, 1),
            rate,
            Arrival::Uniform,
        )
    }

    #[test]
    fn owing_any_number_of_arrivals_costs_the_same_few_bytes() {
        // One hour behind at a billion requests per second: 3.6e12 owed. As a queue of 8-byte
        // timestamps that is 29 TB; here it is a count, computed at once, in a value whose size
        // does not depend on it.
        let t0 = Instant::now();
        let mut a = uniform(t0, 1e9);
        let size = std::mem::size_of_val(&a);
        let later = t0 + Duration::from_secs(3600);
        let owed = a.before(later);
        assert!(
            (3_599_999_000_000..=3_600_001_000_000).contains(&owed),
            "{owed}"
        );
        // The owed requests still come out in order, with their own intended times.
        assert_eq!(a.due(later), Some(t0));
        assert_eq!(a.take(), t0);
        assert_eq!(a.take(), t0 + Duration::from_nanos(1));
        assert_eq!(a.before(later), owed - 2);
        assert_eq!(std::mem::size_of_val(&a), size);
        // Not Vec-backed: nothing in it is heap memory that could grow.
        assert!(size <= 128, "{size} bytes");
    }

    #[test]
    fn counts_are_exact_for_uniform_arrivals() {
        let t0 = Instant::now();
        let a = uniform(t0, 1000.0);
        let ms = |m: u64| t0 + Duration::from_millis(m);
        assert_eq!(a.before(t0), 0, "nothing is before the first arrival");
        assert_eq!(a.before(ms(1)), 1, "the one at t0");
        assert_eq!(a.before(ms(10) + Duration::from_micros(1)), 11);
        assert_eq!(a.between(ms(5), ms(10)), 5);
        assert_eq!(a.due(ms(0)), Some(t0));
        assert_eq!(
            a.due(t0.checked_sub(Duration::from_micros(1)).unwrap()),
            None
        );
    }

    #[test]
    fn poisson_counts_are_the_expected_number() {
        let t0 = Instant::now();
        let a = Arrivals::new(
            Schedule::new(t0, 1000.0, Duration::ZERO, Arrival::Poisson, 7),
            1000.0,
            Arrival::Poisson,
        );
        let n = a.before(a.next() + Duration::from_secs(2));
        assert_eq!(n, 2001);
    }
}
