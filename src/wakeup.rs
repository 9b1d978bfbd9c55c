//! The wake-up cost per round trip: how much of a model's `latency` is the generator's own
//! wake-up, measured as the difference between the `latency` point (sleeping generator) and
//! `latency-spin` (the same 1 × 64 B workload with a busy-polling generator), per model.
//!
//! One subtraction of two figures the record already has (each point's median-over-rounds
//! p50), kept here so the table and the HTML report show the same number. Deliberately not a
//! measurement of its own, and not the server's wake-up: `run` keeps the server sleeping in
//! both points, so the difference is the client's side alone.

use crate::record::{ModelSummary, Stat};

/// The point measured with the sleeping generator.
pub const SLEEPING: &str = "latency";
/// The same point with a busy-polling generator (`load --busy-poll`).
pub const SPINNING: &str = "latency-spin";

/// One model's two latencies and their difference.
#[derive(Clone, Debug, PartialEq)]
pub struct WakeUpCost {
    /// `latency`'s p50, µs (median over rounds, each round's spread kept).
    pub sleeping_p50: Stat,
    /// `latency-spin`'s p50, µs.
    pub spinning_p50: Stat,
}

impl WakeUpCost {
    /// The model's two latency points, when both were measured.
    pub fn of(model: &ModelSummary) -> Option<Self> {
        Some(Self {
            sleeping_p50: model.point(SLEEPING)?.latency_us.p50.clone(),
            spinning_p50: model.point(SPINNING)?.latency_us.p50.clone(),
        })
    }

    /// µs per round trip the sleeping generator pays for waking up: `latency` p50 −
    /// `latency-spin` p50. Negative only when noise exceeds the difference.
    pub fn per_round_trip_us(&self) -> f64 {
        self.sleeping_p50.value - self.spinning_p50.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Percentiles, PointSummary};

    fn point(name: &str, p50: f64) -> PointSummary {
        let stat = |v: f64| Stat {
            value: v,
            min: v,
            max: v,
            rounds: vec![v],
        };
        PointSummary {
            point: name.to_owned(),
            rounds: 1,
            median_round: 1,
            file: format!("m/{name}.json"),
            target_rps: None,
            throughput_rps: stat(1.0),
            latency_us: Percentiles {
                p50: stat(p50),
                p90: stat(p50),
                p99: stat(p50),
                p99_9: stat(p50),
                p99_99: stat(p50),
                max: stat(p50),
            },
            server_cpu_us: None,
            client_cpu_us: stat(1.0),
            errors: 0,
            saturated_rounds: 0,
            saturation: vec![],
            interrupted: false,
            udp_loss_ratio: None,
        }
    }

    #[test]
    fn the_cost_is_latency_minus_latency_spin_and_needs_both() {
        let mut m = ModelSummary {
            model: "epoll".into(),
            description: String::new(),
            points: vec![point("latency", 62.0), point("throughput", 9.0)],
            failures: vec![],
        };
        assert_eq!(WakeUpCost::of(&m), None, "no latency-spin point");
        m.points.push(point("latency-spin", 24.5));
        let c = WakeUpCost::of(&m).unwrap();
        assert_eq!(c.per_round_trip_us(), 37.5);
        assert_eq!(c.sleeping_p50.value, 62.0);
    }
}
