//! What a sweep measures and in which order: its steps (names, rates as fractions, idle and
//! connection counts), the durations, the descriptors each step needs and which steps a model
//! or this process cannot serve, and the time estimate.
//!
//! Pure data and arithmetic, unit-tested; nothing here starts a process or measures.

use std::time::Duration;

use iomodels::record::sweep::SweepKind;

/// Message size of every step (the `throughput` point's).
pub const SIZE: usize = 512;
/// Active connections of the rate and idle sweeps (the `throughput` point's).
pub const ACTIVE: usize = 50;
/// Default idle counts of `sweep idle`.
pub const IDLE_STEPS: &[usize] = &[0, 100, 1_000, 5_000, 10_000];
/// Default active connection counts of `sweep connections`.
pub const CONNECTION_STEPS: &[usize] = &[1, 10, 50, 100, 500, 1_000];
/// Default rate steps (`--steps`): 10, or 6 with `--quick`.
pub const RATE_STEPS: usize = 10;
pub const RATE_STEPS_QUICK: usize = 6;
/// Default first and last rate step, in % of the closed-loop maximum.
pub const RATE_FROM_PCT: f64 = 10.0;
pub const RATE_TO_PCT: f64 = 120.0;

/// Descriptors a process holds besides its connections, with room to spare: the generator's
/// pollers, timers and the children's pipes; a server's standard streams, listener and wake-up.
/// Measured: `serve` holds 6 before its first connection, this process about 15 while it
/// measures; the margin covers what a library may open meanwhile.
pub const RESERVED_DESCRIPTORS: usize = 64;
/// Descriptors a `serve` child holds before its first connection (standard streams, listener,
/// poller, wake-up), for a model with a ceiling on descriptor numbers (`select`).
pub const SERVER_OWN_DESCRIPTORS: usize = 8;

/// One step of a sweep, before any model is measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// `rate-03`, `idle-1000`, `connections-50`.
    pub name: String,
    /// Active connections.
    pub connections: usize,
    /// Idle connections (idle sweep), 0 otherwise.
    pub idle: usize,
    /// Rate sweep: the fraction of the model's closed-loop maximum; `None`: closed loop.
    pub fraction: Option<f64>,
}

/// The closed-loop maximum every rate step is a fraction of.
pub fn rate_max() -> Step {
    Step {
        name: "rate-max".into(),
        connections: ACTIVE,
        idle: 0,
        fraction: None,
    }
}

/// `steps` rate steps from `from_pct` to `to_pct` % of the maximum, evenly spaced (one step:
/// `from_pct` alone). Errors are one line naming the flag.
pub fn rate_steps(steps: usize, from_pct: f64, to_pct: f64) -> Result<Vec<Step>, String> {
    if steps == 0 {
        return Err("--steps must be at least 1".into());
    }
    for (flag, v) in [("--from", from_pct), ("--to", to_pct)] {
        if !(v.is_finite() && v > 0.0) {
            return Err(format!(
                "{flag} {v}: give a positive percentage of the closed-loop maximum (e.g. 10)"
            ));
        }
    }
    if to_pct < from_pct {
        return Err(format!(
            "--to {to_pct} is under --from {from_pct}: the rate sweep's upper bound must be at or above its lower one"
        ));
    }
    let width = steps.to_string().len().max(2);
    Ok((0..steps)
        .map(|i| {
            let pct = if steps == 1 {
                from_pct
            } else {
                from_pct + (to_pct - from_pct) * i as f64 / (steps - 1) as f64
            };
            Step {
                name: format!("rate-{:0width$}", i + 1),
                connections: ACTIVE,
                idle: 0,
                fraction: Some(pct / 100.0),
            }
        })
        .collect())
}

/// One step per idle count, with [`ACTIVE`] active connections.
pub fn idle_steps(counts: &[usize]) -> Result<Vec<Step>, String> {
    steps_of(counts, "--idle-steps", |n| Step {
        name: format!("idle-{n}"),
        connections: ACTIVE,
        idle: n,
        fraction: None,
    })
}

/// One step per active connection count (closed loop).
pub fn connection_steps(counts: &[usize]) -> Result<Vec<Step>, String> {
    if counts.contains(&0) {
        return Err(
            "--connection-steps: 0 connections measure nothing; give counts of 1 or more".into(),
        );
    }
    steps_of(counts, "--connection-steps", |n| Step {
        name: format!("connections-{n}"),
        connections: n,
        idle: 0,
        fraction: None,
    })
}

/// Sorted, without repeats; an empty list is an error.
fn steps_of(
    counts: &[usize],
    flag: &str,
    make: impl Fn(usize) -> Step,
) -> Result<Vec<Step>, String> {
    let mut c = counts.to_vec();
    c.sort_unstable();
    c.dedup();
    if c.is_empty() {
        return Err(format!("{flag}: give at least one count"));
    }
    Ok(c.into_iter().map(make).collect())
}

/// Descriptors one process needs for `step`: every connection (each end of one lives in a
/// different process, the generator's and the server's), plus [`RESERVED_DESCRIPTORS`].
pub fn descriptors_needed(step: &Step) -> usize {
    step.connections + step.idle + RESERVED_DESCRIPTORS
}

/// Why `step` cannot run under an open-file limit of `limit` (soft, already raised to the hard
/// limit `hard`), or `None` if it can.
pub fn over_limit(step: &Step, limit: Option<u64>, hard: Option<u64>) -> Option<String> {
    let need = descriptors_needed(step);
    let limit = limit?;
    if need as u64 <= limit {
        return None;
    }
    Some(format!(
        "needs {need} descriptors in each process ({} connections + {} reserved) but the open-file \
         limit is {limit}{}: raise it (ulimit -Hn, limits.conf) to measure this step",
        step.connections + step.idle,
        RESERVED_DESCRIPTORS,
        match hard {
            Some(h) if h == limit => " (the hard limit)".to_owned(),
            Some(h) => format!(" (hard limit {h})"),
            None => String::new(),
        }
    ))
}

/// Why `step` cannot run from one client address (every connection to the one server address
/// needs a client port of its own), or `None` if it can or the ports are not known.
pub fn over_ports(step: &Step, ports: Option<&crate::limits::Ports>) -> Option<String> {
    let ports = ports?;
    let need = step.connections + step.idle;
    (need as u64 > ports.count).then(|| {
        format!(
            "needs {need} connections to one server address but there are {} client ports ({})",
            ports.count, ports.source
        )
    })
}

/// Why `model` cannot serve `step` (its own ceiling on descriptor numbers: `select`'s
/// `FD_SETSIZE`), or `None`.
pub fn over_model_limit(model: servers::Model, step: &Step) -> Option<String> {
    let ceiling = model.descriptor_limit()?;
    let need = step.connections + step.idle + SERVER_OWN_DESCRIPTORS;
    (need > ceiling).then(|| {
        format!(
            "{model} watches only descriptors below FD_SETSIZE ({ceiling}); {} connections need \
             about {need}",
            step.connections + step.idle
        )
    })
}

/// The model order of step `index` (from 0): as given, then reversed, alternating, so slow
/// drift of the machine touches every model alike.
pub fn order<T: Clone>(models: &[T], index: usize) -> Vec<T> {
    let mut v = models.to_vec();
    if index % 2 == 1 {
        v.reverse();
    }
    v
}

/// Measured time and warm-up of every step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    pub duration: Duration,
    pub warmup: Duration,
}

impl Timing {
    /// Defaults: the rate sweep 5 s per step (about 10⁵ requests even at its lowest rate, so the
    /// p99.9 rests on a hundred samples), the others 3 s, each after 1 s of warm-up; `--quick`:
    /// 1 s after 250 ms. Overridden by whatever was given.
    pub fn new(
        kind: SweepKind,
        quick: bool,
        duration: Option<Duration>,
        warmup: Option<Duration>,
    ) -> Self {
        let (d, w) = match (quick, kind) {
            (true, _) => (Duration::from_secs(1), Duration::from_millis(250)),
            (false, SweepKind::Rate) => (Duration::from_secs(5), Duration::from_secs(1)),
            (false, _) => (Duration::from_secs(3), Duration::from_secs(1)),
        };
        Self {
            duration: duration.unwrap_or(d),
            warmup: warmup.unwrap_or(w),
        }
    }

    /// Expected wall time of `measurements` measurements: each its warm-up and duration plus
    /// about 0.3 s to start and stop a server and connect (the reference VM), and 0.1 s per
    /// thousand idle connections to open and close them.
    pub fn estimate(&self, measurements: usize, idle_total: usize) -> Duration {
        let per = self.duration + self.warmup + Duration::from_millis(300);
        per * measurements as u32 + Duration::from_millis(idle_total as u64 / 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_steps_span_from_to_evenly() {
        let s = rate_steps(10, 10.0, 120.0).unwrap();
        assert_eq!(s.len(), 10);
        assert_eq!(s[0].name, "rate-01");
        assert_eq!(s[9].name, "rate-10");
        assert!((s[0].fraction.unwrap() - 0.1).abs() < 1e-12);
        assert!((s[9].fraction.unwrap() - 1.2).abs() < 1e-12);
        assert!(s.iter().all(|s| s.connections == 50 && s.idle == 0));
        let one = rate_steps(1, 50.0, 50.0).unwrap();
        assert_eq!(one.len(), 1);
        assert!((one[0].fraction.unwrap() - 0.5).abs() < 1e-12);
        assert_eq!(rate_steps(100, 1.0, 2.0).unwrap()[0].name, "rate-001");
    }

    #[test]
    fn rate_steps_refuse_nonsense_in_one_line() {
        for (n, a, b, says) in [
            (0, 10.0, 120.0, "--steps"),
            (5, 120.0, 10.0, "under --from"),
            (5, 0.0, 10.0, "--from"),
            (5, 10.0, f64::NAN, "--to"),
        ] {
            let e = rate_steps(n, a, b).unwrap_err();
            assert!(e.contains(says) && !e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn idle_and_connection_steps_are_sorted_named_and_checked() {
        let s = idle_steps(&[1000, 0, 100, 100]).unwrap();
        let names: Vec<_> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["idle-0", "idle-100", "idle-1000"]);
        assert!(s.iter().all(|s| s.connections == ACTIVE));
        assert!(idle_steps(&[]).is_err());
        let c = connection_steps(CONNECTION_STEPS).unwrap();
        assert_eq!(c[0].name, "connections-1");
        assert_eq!(c[5].connections, 1000);
        assert!(
            connection_steps(&[0, 5])
                .unwrap_err()
                .contains("0 connections")
        );
    }

    #[test]
    fn limits_skip_steps_with_the_reason() {
        let s = &idle_steps(&[10_000]).unwrap()[0];
        assert_eq!(descriptors_needed(s), 10_050 + RESERVED_DESCRIPTORS);
        assert!(over_limit(s, Some(20_000), Some(20_000)).is_none());
        assert!(over_limit(s, None, None).is_none());
        let why = over_limit(s, Some(4096), Some(4096)).unwrap();
        assert!(why.contains("4096") && why.contains("hard limit"), "{why}");
        let ports = crate::limits::Ports {
            count: 28_232,
            source: "net.ipv4.ip_local_port_range is 32768-60999".into(),
        };
        assert!(over_ports(s, Some(&ports)).is_none());
        assert!(over_ports(s, None).is_none());
        let huge = &idle_steps(&[30_000]).unwrap()[0];
        let why = over_ports(huge, Some(&ports)).unwrap();
        assert!(
            why.contains("30050 connections") && why.contains("28232 client ports"),
            "{why}"
        );
        let small = &idle_steps(&[100]).unwrap()[0];
        assert!(over_model_limit(servers::Model::Epoll, s).is_none());
        #[cfg(unix)]
        {
            assert!(over_model_limit(servers::Model::Select, small).is_none());
            let why = over_model_limit(servers::Model::Select, s).unwrap();
            assert!(why.contains("FD_SETSIZE"), "{why}");
        }
        let _ = small;
    }

    #[test]
    fn models_alternate_their_order_by_step() {
        let m = ["a", "b", "c"];
        assert_eq!(order(&m, 0), ["a", "b", "c"]);
        assert_eq!(order(&m, 1), ["c", "b", "a"]);
    }

    #[test]
    fn quick_sweeps_of_ten_models_take_about_two_minutes() {
        let t = Timing::new(SweepKind::Rate, true, None, None);
        let e = t.estimate(10 * (1 + RATE_STEPS_QUICK), 0).as_secs();
        assert!((60..=150).contains(&e), "{e}");
        let t = Timing::new(SweepKind::Idle, true, None, None);
        let e = t.estimate(10 * IDLE_STEPS.len(), 10 * 16_100).as_secs();
        assert!((40..=150).contains(&e), "{e}");
        assert_eq!(
            Timing::new(SweepKind::Rate, false, None, None).duration,
            Duration::from_secs(5)
        );
    }
}
