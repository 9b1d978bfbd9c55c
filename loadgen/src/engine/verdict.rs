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
    /// p99 of the corrected latency (ns), the figure the lag is part of; 0 if nothing completed.
    pub(super) corrected_p99_ns: f64,
    /// Measured requests sent.
    pub(super) sent: u64,
    /// Of those, the ones that had found every connection busy and waited for one.
    pub(super) queued: u64,
    /// Measured arrivals still owed at the deadline: due, never sent.
    pub(super) unsent: u64,
    pub(super) connections: usize,
    pub(super) depth: usize,
    /// Connects refused, connections reset and UDP sends refused in the window (`Errors`'
    /// `refused + reset`): a server that stopped answering, whose requests then go unsent for
    /// a reason that is not the generator's.
    pub(super) refused_or_reset: u64,
    /// A UDP run: `achieved_rps` is datagrams sent per second, and no send waits for an echo
    /// (depth does not bound an open loop), so what was never sent is the generator's own limit.
    pub(super) datagrams: bool,
}

/// Send lag below this is not judged, whatever the rate: the engine sends on time by waking
/// early and spinning, and what is left is a few µs of its own loop (see `engine/margin.rs`).
const LAG_FLOOR_NS: f64 = 25e3;
/// Nor lag below this share of the mean gap between sends (1 / rate).
const LAG_GAP_SHARE: f64 = 0.10;
/// Nor lag below this share of the corrected p99: too small a part of the latency to matter.
const LAG_LATENCY_SHARE: f64 = 0.05;

/// Every reason the run is saturated, one warning line each; empty when it kept its schedule.
pub(super) fn saturation(f: &Facts) -> Vec<String> {
    let mut why = Vec::new();
    // Rule 1: the achieved rate is below 95 % of the target.
    if !f.interrupted && f.achieved_rps < 0.95 * f.target_rps {
        let mut line = match f.datagrams {
            true => format!(
                "saturated: sent {:.0} datagrams/s, below 95% of the target {:.0}/s",
                f.achieved_rps, f.target_rps
            ),
            false => format!(
                "saturated: achieved {:.0} req/s, below 95% of the target {:.0} req/s",
                f.achieved_rps, f.target_rps
            ),
        };
        if f.unsent > 0 {
            let what = if f.datagrams { "datagrams" } else { "requests" };
            let why = if f.refused_or_reset > 0 {
                format!(
                    " while the server refused or reset {} times (see errors): it stopped \
                     answering, the generator did not run out",
                    f.refused_or_reset
                )
            } else if f.datagrams {
                format!(
                    ": this is the most this generator could send through {} sockets (an open \
                     loop's UDP sends wait for no echo: more sockets do not help, more --threads \
                     may)",
                    f.connections
                )
            } else {
                format!(
                    ": this is the most this generator could send with {} connections × depth {}",
                    f.connections, f.depth
                )
            };
            line.push_str(&format!(
                "; {} {what} due in the window were never sent{why}",
                f.unsent
            ));
        }
        why.push(line);
    }
    // Rule 2: the generator itself sent late, by enough to matter in the latency it reports.
    let gap_ns = 1e9 / f.target_rps;
    let limit_ns = LAG_FLOOR_NS
        .max(LAG_GAP_SHARE * gap_ns)
        .max(LAG_LATENCY_SHARE * f.corrected_p99_ns);
    if let Some(p99) = f.gen_lag_p99_ns
        && p99 > limit_ns
    {
        let mut line = format!(
            "saturated: the generator sent late: its p99 send lag is {:.1} µs (limit {:.1} µs, \
             the largest of 25 µs, 10% of the {:.1} µs gap between sends and 5% of the \
             corrected p99 {:.1} µs); that lateness is in every corrected latency, charged to \
             the server",
            p99 / 1e3,
            limit_ns / 1e3,
            gap_ns / 1e3,
            f.corrected_p99_ns / 1e3
        );
        if f.refused_or_reset > 0 {
            line.push_str(
                " (with the server refusing or resetting, much of it is connections and \
                 sockets resting after those errors, not the generator's speed)",
            );
        }
        why.push(line);
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
            gen_lag_p99_ns: Some(10_000.0),
            corrected_p99_ns: 200_000.0,
            sent: 1000,
            queued: 0,
            unsent: 0,
            connections: 10,
            depth: 1,
            datagrams: false,
            refused_or_reset: 0,
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
            gen_lag_p99_ns: Some(100e3),
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
        // UDP: the rate judged is what was sent, and depth is not the limit.
        let w = one(Facts {
            target_rps: 300_000.0,
            achieved_rps: 18_000.0,
            gen_lag_p99_ns: None,
            unsent: 282_000,
            datagrams: true,
            ..on_time()
        });
        assert!(
            w.contains("sent 18000 datagrams/s, below 95% of the target 300000/s")
                && w.contains("282000 datagrams due in the window were never sent")
                && w.contains("through 10 sockets")
                && !w.contains("depth 1"),
            "{w}"
        );
        // A server that stopped answering is named as the reason, not the generator.
        let w = one(Facts {
            target_rps: 2000.0,
            achieved_rps: 900.0,
            gen_lag_p99_ns: None,
            unsent: 3000,
            datagrams: true,
            refused_or_reset: 2973,
            ..on_time()
        });
        assert!(
            w.contains("refused or reset 2973 times")
                && w.contains("stopped answering")
                && !w.contains("the most this generator could send"),
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

    /// `on_time` at `rate` with this lag and corrected p99 (ns): its rule 2 warnings.
    fn lag(rate: f64, lag_ns: f64, corrected_p99_ns: f64) -> Vec<String> {
        saturation(&Facts {
            target_rps: rate,
            achieved_rps: rate,
            gen_lag_p99_ns: Some(lag_ns),
            corrected_p99_ns,
            ..on_time()
        })
    }

    #[test]
    fn rule_2_the_generator_sent_late() {
        // Limit max(25 µs, 10 % of 1/rate, 5 % of the corrected p99).
        let w = one(Facts {
            gen_lag_p99_ns: Some(150e3),
            ..on_time()
        });
        assert!(
            w.contains("the generator sent late: its p99 send lag is 150.0 µs (limit 100.0 µs")
                && w.contains("1000.0 µs gap between sends")
                && w.contains("corrected p99 200.0 µs"),
            "{w}"
        );
        // The 25 µs floor: at 50,000 req/s (gap 20 µs) against a 100 µs server.
        assert!(lag(50e3, 25e3, 100e3).is_empty());
        assert_eq!(lag(50e3, 25.1e3, 100e3).len(), 1);
        // 10 % of the gap: 1 ms at 100 req/s.
        assert!(lag(100.0, 1e6, 100e3).is_empty());
        assert_eq!(lag(100.0, 1.001e6, 100e3).len(), 1);
        // 5 % of the corrected p99: 100 µs against a 2 ms server at 20,000 req/s.
        assert!(lag(20e3, 100e3, 2e6).is_empty());
        assert_eq!(lag(20e3, 100.1e3, 2e6).len(), 1);
        // Before (issue 18): a 753 µs p99 lag at 2,000 req/s against a server whose corrected
        // p99 was 864 µs passed (the limit was 1 ms); most of that p99 was the generator's.
        let w = lag(2000.0, 753e3, 864e3);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("limit 50.0 µs"), "{}", w[0]);
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
