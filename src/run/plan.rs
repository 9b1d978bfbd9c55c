//! What `run` measures, in which order, for how long: the points (names and shapes from the
//! contract), the interleaved model order of each round, the durations, and the time estimate.
//!
//! Pure data and arithmetic, unit-tested; nothing here starts a process or measures.

use std::time::Duration;

use iomodels::record::PointSpec;
use loadgen::Proto;

/// One point of the matrix (contract names and shapes).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub name: &'static str,
    pub connections: usize,
    /// Message size in bytes.
    pub size: usize,
    /// Open loop at this fraction of the same model's `throughput` rate in the same round.
    pub rate_of_throughput: Option<f64>,
    /// The generator busy-polls (`load --busy-poll`): round trips without its wake-up.
    pub busy_poll: bool,
    /// The transport: `serve --proto` and `load --proto`.
    pub proto: Proto,
    /// Open loop at this fixed rate (req/s), the same for every model.
    pub fixed_rate: Option<f64>,
}

/// The rate of `udp-open`, datagrams per second in all (50 sockets): fixed, so every model is
/// offered the same load, and low enough that every model keeps up on the reference machine
/// (2 vCPUs, where UDP echo over loopback starts losing datagrams to full receive buffers
/// near 50,000 per second with default buffers: the loss column then shows the model's, not
/// the rate's). ARCHITECTURE.md, "UDP in run", has the measurement.
pub const UDP_OPEN_RATE: f64 = 20_000.0;

/// A TCP point's fields besides its shape.
const TCP: (Proto, Option<f64>) = (Proto::Tcp, None);

/// Every point, in the order a round runs them (`throughput` before `open`, which needs its
/// rate). `latency-spin` is `latency` with a busy-polling generator, right after it, so the
/// two differ only by the client's wake-up (the report's wake-up cost per round trip).
/// `udp-latency` and `udp-open` are `latency` and `open` over UDP (datagram echo, loss
/// counted), for the models that serve UDP; `udp-open` at a fixed rate ([`UDP_OPEN_RATE`]).
pub const POINTS: &[Point] = &[
    Point {
        name: "latency",
        connections: 1,
        size: 64,
        rate_of_throughput: None,
        busy_poll: false,
        proto: TCP.0,
        fixed_rate: TCP.1,
    },
    Point {
        name: "latency-spin",
        connections: 1,
        size: 64,
        rate_of_throughput: None,
        busy_poll: true,
        proto: TCP.0,
        fixed_rate: TCP.1,
    },
    Point {
        name: "throughput",
        connections: 50,
        size: 512,
        rate_of_throughput: None,
        busy_poll: false,
        proto: TCP.0,
        fixed_rate: TCP.1,
    },
    Point {
        name: "heavy",
        connections: 500,
        size: 512,
        rate_of_throughput: None,
        busy_poll: false,
        proto: TCP.0,
        fixed_rate: TCP.1,
    },
    Point {
        name: "open",
        connections: 50,
        size: 512,
        rate_of_throughput: Some(0.5),
        busy_poll: false,
        proto: TCP.0,
        fixed_rate: TCP.1,
    },
    Point {
        name: "udp-latency",
        connections: 1,
        size: 64,
        rate_of_throughput: None,
        busy_poll: false,
        proto: Proto::Udp,
        fixed_rate: None,
    },
    Point {
        name: "udp-open",
        connections: 50,
        size: 512,
        rate_of_throughput: None,
        busy_poll: false,
        proto: Proto::Udp,
        fixed_rate: Some(UDP_OPEN_RATE),
    },
];

impl Point {
    /// The point as the summary records it.
    pub fn spec(&self) -> PointSpec {
        PointSpec {
            name: self.name.to_owned(),
            connections: self.connections,
            size: self.size,
            depth: 1,
            rate_of_throughput: self.rate_of_throughput,
            proto: self.proto,
            rate_rps: self.fixed_rate,
        }
    }
}

/// The points named in `names` (comma-separated list already split), in run order.
pub fn select_points(names: &[String]) -> Result<Vec<Point>, String> {
    for n in names {
        if !POINTS.iter().any(|p| p.name == n.as_str()) {
            return Err(format!(
                "unknown point {n:?}: choose among {}",
                POINTS.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    Ok(POINTS
        .iter()
        .filter(|p| names.iter().any(|n| n == p.name))
        .copied()
        .collect())
}

/// The model order of `round` (from 1): as given in odd rounds, reversed in even ones
/// (A B C, C B A, A B C, ...), so slow drift of the machine touches every model alike.
pub fn order<T: Clone>(models: &[T], round: usize) -> Vec<T> {
    let mut v = models.to_vec();
    if round % 2 == 0 {
        v.reverse();
    }
    v
}

/// Rounds and durations of one run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    pub rounds: usize,
    /// Measured time per point and round.
    pub duration: Duration,
    /// Warm-up before each measurement, excluded from every figure.
    pub warmup: Duration,
}

impl Timing {
    /// The defaults (3 rounds of 3 s after 1 s warm-up; `--quick`: 1 round of 1 s after
    /// 250 ms), overridden by whatever was given.
    pub fn new(
        quick: bool,
        rounds: Option<usize>,
        duration: Option<Duration>,
        warmup: Option<Duration>,
    ) -> Self {
        let (r, d, w) = if quick {
            (1, Duration::from_secs(1), Duration::from_millis(250))
        } else {
            (3, Duration::from_secs(3), Duration::from_secs(1))
        };
        Self {
            rounds: rounds.unwrap_or(r),
            duration: duration.unwrap_or(d),
            warmup: warmup.unwrap_or(w),
        }
    }

    /// The kernel-count (`explain`) pass after the rounds: one measurement per model × point,
    /// at most 1 s after at most 250 ms warm-up (per-request counts settle within a second).
    pub fn explain_pass(&self) -> Self {
        Self {
            rounds: 1,
            duration: self.duration.min(Duration::from_secs(1)),
            warmup: self.warmup.min(Duration::from_millis(250)),
        }
    }

    /// Expected wall time: every model × point × round, each its warm-up and duration plus
    /// about 0.3 s to start and stop a server and connect (measured on the reference VM), and
    /// the `explain` pass when it runs.
    pub fn estimate(&self, models: usize, points: usize, explain: bool) -> Duration {
        let per = |t: &Timing| t.duration + t.warmup + Duration::from_millis(300);
        let mut total = per(self) * (models * points * self.rounds) as u32;
        if explain {
            total += per(&self.explain_pass()) * (models * points) as u32;
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_alternate_their_order() {
        let m = ["a", "b", "c"];
        assert_eq!(order(&m, 1), ["a", "b", "c"]);
        assert_eq!(order(&m, 2), ["c", "b", "a"]);
        assert_eq!(order(&m, 3), ["a", "b", "c"]);
    }

    #[test]
    fn points_are_selected_in_run_order_and_unknown_ones_named() {
        let p = select_points(&["open".into(), "latency".into()]).unwrap();
        assert_eq!(
            p.iter().map(|p| p.name).collect::<Vec<_>>(),
            ["latency", "open"]
        );
        let e = select_points(&["fast".into()]).unwrap_err();
        assert!(e.contains("\"fast\"") && e.contains("heavy"), "{e}");
    }

    #[test]
    fn open_follows_throughput_and_shapes_match_the_contract() {
        let names: Vec<_> = POINTS.iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            [
                "latency",
                "latency-spin",
                "throughput",
                "heavy",
                "open",
                "udp-latency",
                "udp-open"
            ]
        );
        // The loader tells a run's result files by these names: the same list.
        assert_eq!(names, iomodels::export::RUN_POINTS);
        let shape = |n: &str| {
            let p = POINTS.iter().find(|p| p.name == n).unwrap();
            (p.connections, p.size)
        };
        assert_eq!(shape("latency"), (1, 64));
        assert_eq!(shape("latency-spin"), (1, 64));
        let spins: Vec<_> = POINTS
            .iter()
            .filter(|p| p.busy_poll)
            .map(|p| p.name)
            .collect();
        assert_eq!(spins, ["latency-spin"], "only latency-spin busy-polls");
        assert_eq!(shape("throughput"), (50, 512));
        assert_eq!(shape("heavy"), (500, 512));
        assert_eq!(shape("open"), (50, 512));
        // The UDP points are latency's and open's shapes over UDP; udp-open at one fixed rate.
        assert_eq!(shape("udp-latency"), (1, 64));
        assert_eq!(shape("udp-open"), (50, 512));
        let udp: Vec<_> = POINTS
            .iter()
            .filter(|p| p.proto == Proto::Udp)
            .map(|p| (p.name, p.fixed_rate, p.rate_of_throughput))
            .collect();
        assert_eq!(
            udp,
            [
                ("udp-latency", None, None),
                ("udp-open", Some(UDP_OPEN_RATE), None)
            ]
        );
    }

    #[test]
    fn quick_is_about_a_minute_for_eight_models() {
        let t = Timing::new(true, None, None, None);
        assert_eq!(t.rounds, 1);
        let e = t.estimate(8, POINTS.len(), false).as_secs();
        assert!((40..=130).contains(&e), "{e}");
        // The explain pass doubles a quick run (same length per measurement), no more.
        let x = t.estimate(8, POINTS.len(), true).as_secs();
        assert!(x > e && x <= 2 * e + 1, "{x} vs {e}");
        let d = Timing::new(false, None, None, None);
        assert_eq!(d.explain_pass().duration, Duration::from_secs(1));
        assert_eq!(d.explain_pass().warmup, Duration::from_millis(250));
        let d = Timing::new(false, Some(5), None, None);
        assert_eq!(d.rounds, 5);
    }
}
