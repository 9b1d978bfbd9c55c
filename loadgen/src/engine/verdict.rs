//! The saturation verdict of an open-loop run (results/README.md, "Saturation rule"): whether
//! requests were sent at their intended times and, if not, every reason why.
//!
//! A pure function of the run's merged figures, so each of the three rules is unit-tested on
//! numbers rather than provoked on a machine. Deliberately not here: measuring those figures
//! (the workers), and what the report does with the verdict (the coordinator puts the reasons in
//! `warnings` and sets `saturated` when there is at least one).

/// The figures the rule judges, merged over every worker.
#[derive(Clone, Copy, Debug)]
pub(super) struct Facts {
    /// `--rate`, requests per second over all connections.
    pub(super) target_rps: f64,
    /// Completed requests per second of the measured window.
    pub(super) achieved_rps: f64,
    /// A stopped run's achieved rate says nothing about the generator.
    pub(super) interrupted: bool,
    /// p99 send lag (ns) of measured requests that found a free connection; `None` if none did.
    pub(super) gen_lag_p99_ns: Option<f64>,
    /// Measured requests sent.
    pub(super) sent: u64,
    /// Of those, the ones that had found every connection busy and waited for one.
    pub(super) queued: u64,
    /// Measured arrivals still owed at the deadline: due, never sent.
    pub(super) unsent: u64,
    pub(super) connections: usize,
    pub(super) depth: usize,
}

/// Lateness below this is the poll timer's granularity, not the generator falling behind.
const LAG_FLOOR_NS: f64 = 1e6;

/// Every reason the run is saturated, one warning line each; empty when it kept its schedule.
pub(super) fn saturation(f: &Facts) -> Vec<String> {
    let mut why = Vec::new();
    // Rule 1: the achieved rate is below 95 % of the target.
    if !f.interrupted && f.achieved_rps < 0.95 * f.target_rps {
        let mut line = format!(
            "saturated: achieved {:.0} req/s, below 95% of the target {:.0} req/s",
            f.achieved_rps, f.target_rps
        );
        if f.unsent > 0 {
            line.push_str(&format!(
                "; {} requests due in the window were never sent: this is the most this \
                 generator could send with {} connections × depth {}",
                f.unsent, f.connections, f.depth
            ));
        }
        why.push(line);
    }
    // Rule 2: the generator itself sent late.
    let limit_ns = LAG_FLOOR_NS.max(0.1e9 / f.target_rps);
    if let Some(p99) = f.gen_lag_p99_ns
        && p99 > limit_ns
    {
        why.push(format!(
            "saturated: p99 send lag of the generator is {:.0} µs (limit {:.0} µs): it could not keep the schedule",
            p99 / 1e3,
            limit_ns / 1e3
        ));
    }
    // Rule 3: more than 1 % of the requests sent waited for a free connection.
    if f.sent > 0 && f.queued * 100 > f.sent {
        why.push(format!(
            "saturated: {} of {} requests ({:.1}%) waited for a free connection (all {} × depth {} busy; \
             raise -c or --depth); the wait is in the corrected latency and send_lag_us",
            f.queued,
            f.sent,
            f.queued as f64 * 100.0 / f.sent as f64,
            f.connections,
            f.depth
        ));
    }
    why
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run at 1,000 req/s that kept its schedule.
    fn on_time() -> Facts {
        Facts {
            target_rps: 1000.0,
            achieved_rps: 1000.0,
            interrupted: false,
            gen_lag_p99_ns: Some(50_000.0),
            sent: 1000,
            queued: 0,
            unsent: 0,
            connections: 10,
            depth: 1,
        }
    }

    fn one(f: Facts) -> String {
        let why = saturation(&f);
        assert_eq!(why.len(), 1, "{why:?}");
        why.into_iter().next().unwrap()
    }

    #[test]
    fn a_run_on_schedule_is_not_saturated() {
        assert!(saturation(&on_time()).is_empty());
        // Exactly at the edges of each rule: still fine.
        let f = Facts {
            achieved_rps: 950.0,
            gen_lag_p99_ns: Some(1e6),
            queued: 10,
            ..on_time()
        };
        assert!(saturation(&f).is_empty(), "{:?}", saturation(&f));
    }

    #[test]
    fn rule_1_achieved_below_95_percent_and_what_was_never_sent() {
        let w = one(Facts {
            achieved_rps: 900.0,
            ..on_time()
        });
        assert!(
            w.contains("achieved 900 req/s, below 95% of the target 1000"),
            "{w}"
        );
        assert!(!w.contains("never sent"), "{w}");
        let w = one(Facts {
            target_rps: 5e7,
            achieved_rps: 18_000.0,
            gen_lag_p99_ns: None,
            unsent: 49_982_000,
            connections: 1,
            ..on_time()
        });
        assert!(
            w.contains("49982000 requests due in the window were never sent")
                && w.contains("1 connections × depth 1"),
            "{w}"
        );
        // A stopped run's rate is not judged.
        let f = Facts {
            achieved_rps: 10.0,
            interrupted: true,
            ..on_time()
        };
        assert!(saturation(&f).is_empty());
    }

    #[test]
    fn rule_2_the_generator_sent_late() {
        // Limit max(1 ms, 10 % of 1/rate): 1 ms at 1,000 req/s, 10 ms at 10 req/s.
        let w = one(Facts {
            gen_lag_p99_ns: Some(1.5e6),
            ..on_time()
        });
        assert!(
            w.contains("p99 send lag of the generator is 1500 µs (limit 1000 µs)"),
            "{w}"
        );
        let slow = Facts {
            target_rps: 10.0,
            achieved_rps: 10.0,
            gen_lag_p99_ns: Some(5e6),
            ..on_time()
        };
        assert!(saturation(&slow).is_empty());
        // No request found a free connection: nothing to judge the generator by.
        let f = Facts {
            gen_lag_p99_ns: None,
            ..on_time()
        };
        assert!(saturation(&f).is_empty());
    }

    #[test]
    fn rule_3_more_than_one_percent_waited_for_a_connection() {
        let w = one(Facts {
            queued: 11,
            ..on_time()
        });
        assert!(
            w.contains("11 of 1000 requests (1.1%) waited for a free connection (all 10 × depth 1"),
            "{w}"
        );
    }

    #[test]
    fn every_rule_that_applies_is_reported() {
        let why = saturation(&Facts {
            achieved_rps: 10.0,
            gen_lag_p99_ns: Some(9e6),
            queued: 900,
            ..on_time()
        });
        assert_eq!(why.len(), 3, "{why:?}");
    }
}
