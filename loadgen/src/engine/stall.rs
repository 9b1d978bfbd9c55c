//! How long a worker has been stalled (wanting an answer and getting none): the clock behind
//! the "gave up" rule of a request-count run, which has no deadline and so must end by itself
//! when the server is gone for good.
//!
//! The clock runs only while the worker wants something. It starts when a request becomes
//! outstanding (handed to a connection, or queued for one) and stops at a completion. Idle time
//! between open-loop arrivals with nothing outstanding does not count, so a slow schedule
//! (`--rate 0.05 -n 3`) is not taken for a dead server. A failure does not stop the clock: the
//! span from the first unanswered attempt to the latest failed one counts, so a server that
//! fails every attempt at once (connect per request against a closed port, where nothing stays
//! outstanding for more than a moment) is still given up on. A failed connect is an attempt even
//! with nothing outstanding: a closed-loop thread whose connections closed between requests and
//! cannot reconnect wants answers all the same.
//!
//! Deliberately only bookkeeping: it reads no clock and decides nothing; the worker tells it what
//! happened and when, and compares the answer with its limit.

use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub(super) struct Stall {
    /// Requests outstanding: in a connection's pipe or waiting in the thread's queue.
    outstanding: usize,
    /// The oldest moment since which an answer has been wanted and none came: the first request
    /// that became outstanding after the last completion, or that completion if requests were
    /// still outstanding. `None` when nothing is wanted.
    since: Option<Instant>,
    /// Start of the current stretch with something outstanding (meaningful while
    /// `outstanding > 0`): after a failure and an idle gap, the gap must not count until another
    /// attempt fails.
    busy_since: Option<Instant>,
    /// The latest failed attempt since `since`.
    failed_at: Option<Instant>,
}

impl Stall {
    /// A request became outstanding (not one moving from the queue to a connection).
    pub(super) fn issued(&mut self, now: Instant) {
        if self.outstanding == 0 {
            self.busy_since = Some(now);
        }
        self.since.get_or_insert(now);
        self.outstanding += 1;
    }

    /// A request completed at `t`: the server answers, the clock starts again.
    pub(super) fn completed(&mut self, t: Instant) {
        self.outstanding = self.outstanding.saturating_sub(1);
        self.failed_at = None;
        self.since = (self.outstanding > 0).then_some(t);
        self.busy_since = self.since;
    }

    /// A connection failed at `now`, losing `lost` outstanding requests; `connecting`: it failed
    /// to connect. Both are attempts that got no answer. A connection the server closed while it
    /// carried nothing is not: it says nothing yet about whether answers will come.
    pub(super) fn failed(&mut self, now: Instant, lost: usize, connecting: bool) {
        self.outstanding = self.outstanding.saturating_sub(lost);
        if connecting || lost > 0 {
            self.since.get_or_insert(now);
            self.failed_at = Some(now);
        }
    }

    /// How long the worker has been stalled at `now`, counting nothing before `floor` (the end
    /// of warm-up: the rule judges the measured window only).
    pub(super) fn stalled_for(&self, now: Instant, floor: Instant) -> Duration {
        let Some(since) = self.since else {
            return Duration::ZERO;
        };
        let busy = match self.busy_since {
            Some(b) if self.outstanding > 0 => now.saturating_duration_since(b.max(floor)),
            _ => Duration::ZERO,
        };
        let failing = self.failed_at.map_or(Duration::ZERO, |f| {
            f.saturating_duration_since(since.max(floor))
        });
        busy.max(failing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn idle_time_between_sends_does_not_count() {
        let t = Instant::now();
        let mut s = Stall::default();
        s.issued(t);
        s.completed(at(t, 1));
        assert_eq!(s.stalled_for(at(t, 20_000), t), Duration::ZERO);
        s.issued(at(t, 20_000));
        assert_eq!(
            s.stalled_for(at(t, 20_005), t),
            Duration::from_millis(5),
            "only the time the new request has been out"
        );
    }

    #[test]
    fn outstanding_without_an_answer_counts_from_the_send_or_last_completion() {
        let t = Instant::now();
        let mut s = Stall::default();
        s.issued(t);
        s.issued(t);
        s.completed(at(t, 100));
        assert_eq!(s.stalled_for(at(t, 1_100), t), Duration::from_secs(1));
        // Nothing before the floor (the end of warm-up) counts.
        assert_eq!(
            s.stalled_for(at(t, 1_100), at(t, 600)),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn attempts_that_fail_at_once_keep_the_clock_running() {
        // Connect per request at 0.05/s against a closed port: each request fails at once.
        let t = Instant::now();
        let mut s = Stall::default();
        s.issued(t);
        s.failed(at(t, 1), 1, true);
        assert_eq!(s.stalled_for(at(t, 19_000), t), Duration::from_millis(1));
        s.issued(at(t, 20_000));
        s.failed(at(t, 20_001), 1, true);
        assert_eq!(
            s.stalled_for(at(t, 20_002), t),
            Duration::from_millis(20_001)
        );
        // Failed reconnects with nothing outstanding (closed loop, server gone) count too.
        s.failed(at(t, 21_000), 0, true);
        assert_eq!(s.stalled_for(at(t, 21_500), t), Duration::from_secs(21));
    }

    #[test]
    fn failed_connects_with_nothing_outstanding_start_the_clock() {
        // Closed loop: the server closed between requests (not an attempt), then is gone.
        let t = Instant::now();
        let mut s = Stall::default();
        s.failed(t, 0, false);
        assert_eq!(s.stalled_for(at(t, 5_000), t), Duration::ZERO);
        s.failed(at(t, 10), 0, true);
        s.failed(at(t, 1_010), 0, true);
        assert_eq!(s.stalled_for(at(t, 1_500), t), Duration::from_secs(1));
    }

    #[test]
    fn one_failure_then_an_answer_is_not_a_stall() {
        let t = Instant::now();
        let mut s = Stall::default();
        s.issued(t);
        s.failed(at(t, 1), 1, true);
        s.issued(at(t, 20_000));
        assert_eq!(s.stalled_for(at(t, 20_010), t), Duration::from_millis(10));
        s.completed(at(t, 20_010));
        assert_eq!(s.stalled_for(at(t, 60_000), t), Duration::ZERO);
    }

    #[test]
    fn an_idle_connection_closed_by_the_server_is_not_a_failed_attempt() {
        let t = Instant::now();
        let mut s = Stall::default();
        s.issued(t);
        s.failed(at(t, 1), 1, true);
        s.failed(at(t, 30_000), 0, false);
        assert_eq!(s.stalled_for(at(t, 30_000), t), Duration::from_millis(1));
    }
}
