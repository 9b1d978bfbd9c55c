//! The typed record of a sweep (`iomodels sweep rate|idle|connections`): its `summary.json`
//! (`iomodels.sweep/1`), one [`Step`] per model × step with the figures a curve plots, and the
//! rate sweep's knee.
//!
//! The figures are taken from each step's [`PointResult`] here, once, and the knee is computed
//! here, once; the exporters (`export/sweep.rs`) only format them. The on-disk shape is a
//! contract described key by key in `results/README.md`. This module deliberately does no I/O
//! beyond reading and writing the summary, and knows nothing about how a step is measured.

use std::collections::BTreeMap;
use std::path::Path;

use loadgen::Host;
use serde::{Deserialize, Serialize};

use super::PointResult;

/// The schema of a sweep's `summary.json`; bump it (and `results/README.md`) when a key changes
/// meaning.
pub const SWEEP_SCHEMA: &str = "iomodels.sweep/1.1";

/// Every sweep schema [`SweepSummary::read`] reads: 1.1 only adds `idle_held` to a step.
pub const SWEEP_SCHEMAS_READ: [&str; 2] = ["iomodels.sweep/1", SWEEP_SCHEMA];

/// A rate step counts towards the knee only if the generator achieved at least this fraction
/// of its target rate (the same 95 % as the generator's saturation rule 1).
pub const KNEE_MIN_ACHIEVED: f64 = 0.95;

/// Which curve a sweep draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SweepKind {
    /// Latency against throughput: open-loop steps as fractions of the closed-loop maximum.
    Rate,
    /// Cost against idle connections: 50 active connections plus a growing number of idle ones.
    Idle,
    /// Throughput and latency against active connections (closed loop).
    Connections,
}

impl SweepKind {
    /// The name on the command line, in `summary.json` and in step names.
    pub fn name(self) -> &'static str {
        match self {
            SweepKind::Rate => "rate",
            SweepKind::Idle => "idle",
            SweepKind::Connections => "connections",
        }
    }
}

/// Three percentiles of a step, in µs (corrected for open-loop steps).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepLatency {
    pub p50: f64,
    pub p99: f64,
    pub p99_9: f64,
}

/// One model × step: what was asked, what was measured, or why nothing was.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The step's name, also its file's stem: `rate-max`, `rate-03`, `idle-1000`,
    /// `connections-50`.
    pub step: String,
    /// `<model>/<step>.json`, relative to the sweep folder; null when nothing was written.
    pub file: Option<String>,
    /// Rate sweep: the step's rate as a fraction of the model's closed-loop maximum; null for
    /// `rate-max` and in other sweeps.
    pub fraction: Option<f64>,
    /// Rate sweep: the open-loop rate asked for (req/s); null for `rate-max` and other sweeps.
    pub target_rps: Option<f64>,
    /// Idle sweep: idle connections asked for besides the active ones; null in other sweeps.
    pub idle: Option<usize>,
    /// Idle sweep: idle connections the server actually held (its peak of open connections
    /// less the active ones, at most `idle`); fewer than `idle` when connects failed or the
    /// server's accept queue overflowed (see `notes`). The curve is drawn at this count. Null
    /// in other sweeps, when not measured, or in a summary written before `sweep/1.1`.
    #[serde(default)]
    pub idle_held: Option<usize>,
    /// Active (loaded) connections.
    pub connections: usize,
    /// Requests per second completed in the measured window; null when not measured.
    pub achieved_rps: Option<f64>,
    /// Latency percentiles in µs; null when not measured.
    pub latency_us: Option<StepLatency>,
    /// Server CPU µs per request over the measured window (whole server process, OS
    /// accounting); null when not measured or unknown.
    pub server_cpu: Option<f64>,
    /// Generator CPU µs per request; null when not measured.
    pub client_cpu: Option<f64>,
    /// The generator could not keep the schedule (open loop; see `notes` for why).
    pub saturated: bool,
    /// Null, or why the step was not measured (a descriptor limit, the model's own ceiling, no
    /// closed-loop maximum to scale from).
    pub skipped: Option<String>,
    /// Null, or why the measurement failed (the server did not start or died, errors, nothing
    /// completed); figures measured before the failure are kept.
    pub failed: Option<String>,
    /// Ctrl-C cut this step short.
    pub interrupted: bool,
    /// The generator's warnings (saturation reasons, idle connections not opened) and the
    /// sweep's own (the server held fewer connections than asked).
    pub notes: Vec<String>,
}

impl Step {
    /// A step as planned, before it is measured.
    pub fn planned(name: String, connections: usize) -> Self {
        Self {
            step: name,
            connections,
            ..Self::default()
        }
    }

    /// Fill in the figures of `result`, written to `file`.
    pub fn measured(mut self, file: String, result: &PointResult) -> Self {
        let r = &result.report;
        self.file = Some(file);
        self.achieved_rps = Some(r.throughput_rps);
        self.latency_us = Some(StepLatency {
            p50: r.latency_us.p50,
            p99: r.latency_us.p99,
            p99_9: r.latency_us.p99_9,
        });
        self.server_cpu = result.server_cpu.map(|c| c.us_per_request);
        self.client_cpu = Some(r.client_cpu.us_per_request);
        self.saturated = r.saturated;
        self.interrupted = r.interrupted;
        if let (Some(idle), Some(stats)) = (
            self.idle,
            result.server.as_ref().and_then(|s| s.stats.as_ref()),
        ) {
            let held = stats.peak_open.saturating_sub(self.connections as u64);
            self.idle_held = Some(held.min(idle as u64) as usize);
        }
        self.notes.extend(r.warnings.iter().cloned());
        self
    }

    /// Measured and usable on a curve: figures present, not failed, not cut short.
    pub fn is_measured(&self) -> bool {
        self.achieved_rps.is_some() && self.failed.is_none() && !self.interrupted
    }

    /// The x value of this step on its sweep's curve: idle connections, active connections, or
    /// (rate) the achieved rate.
    pub fn x(&self, kind: SweepKind) -> Option<f64> {
        match kind {
            SweepKind::Rate => self.achieved_rps,
            SweepKind::Idle => self.idle_held.or(self.idle).map(|i| i as f64),
            SweepKind::Connections => Some(self.connections as f64),
        }
    }
}

/// One model's steps in a sweep.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SweepModel {
    /// The model's one-line description from the registry.
    pub description: String,
    /// Rate sweep: the closed-loop maximum (`rate-max`, 50 × 512 B) the steps are fractions of;
    /// null in other sweeps or while not yet measured.
    pub max: Option<Step>,
    /// The steps in the sweep's order (rising rate, idle count or connections).
    pub steps: Vec<Step>,
    /// Rate sweep: the knee (see [`knee`]), req/s; null when no step qualifies or in other
    /// sweeps.
    pub knee_rps: Option<f64>,
    /// The step the knee is, null with `knee_rps`.
    pub knee_step: Option<String>,
}

impl SweepModel {
    /// Recompute the knee from the steps (rate sweeps; a no-op without a target).
    pub fn update_knee(&mut self, p99_target_us: Option<f64>) {
        let k = p99_target_us.and_then(|t| knee(&self.steps, t));
        self.knee_rps = k.and_then(|s| s.achieved_rps);
        self.knee_step = k.map(|s| s.step.clone());
    }

    /// A step by name.
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.step == name)
    }
}

/// The knee of a rate sweep: among the measured steps (not skipped, failed or interrupted)
/// that reached at least [`KNEE_MIN_ACHIEVED`] of their target rate and whose corrected p99 is
/// at or under `p99_target_us`, the one with the highest achieved rate. `None` when no step
/// qualifies. Steps need not be monotonic: a noisy low step over the target does not hide a
/// higher one under it.
pub fn knee(steps: &[Step], p99_target_us: f64) -> Option<&Step> {
    steps
        .iter()
        .filter(|s| s.is_measured())
        .filter(|s| match (s.achieved_rps, s.target_rps) {
            (Some(a), Some(t)) => a >= KNEE_MIN_ACHIEVED * t,
            _ => false,
        })
        .filter(|s| s.latency_us.is_some_and(|l| l.p99 <= p99_target_us))
        .max_by(|a, b| {
            a.achieved_rps
                .unwrap_or(0.0)
                .total_cmp(&b.achieved_rps.unwrap_or(0.0))
        })
}

/// A sweep's `summary.json`: what it measured, per model and step, with the metadata needed to
/// trust it. Rewritten after every step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepSummary {
    /// `"iomodels.sweep/1"`.
    pub schema: String,
    /// `rate`, `idle` or `connections`.
    pub sweep: SweepKind,
    pub tool_version: String,
    /// The commit the binary was built from, when known.
    pub git_commit: Option<String>,
    /// The command line, for repeating the sweep.
    pub command: String,
    /// RFC 3339 UTC; `finished` is null while the sweep runs (or if it was killed).
    pub started: String,
    pub finished: Option<String>,
    pub host: Host,
    /// CPUs the servers and the generator were pinned to; null when unpinned.
    pub server_cpus: Option<Vec<usize>>,
    pub client_cpus: Option<Vec<usize>>,
    /// Measured seconds per step, and warm-up seconds before each.
    pub duration_s: f64,
    pub warmup_s: f64,
    /// Message size in bytes (every step).
    pub size: usize,
    /// Active connections of every step (rate and idle sweeps); null for the connections sweep,
    /// whose steps vary it.
    pub connections: Option<usize>,
    /// Rate sweep: the p99 (µs) a step must stay at or under to count for the knee.
    pub p99_target_us: Option<f64>,
    /// The open-file limit (soft) this process and its server children ran with, after raising
    /// it to the hard limit; null where there is none (Windows).
    pub descriptor_limit: Option<u64>,
    /// Model names in the order given (the first step's order; later steps alternate).
    pub order: Vec<String>,
    /// Every model's steps, by name.
    pub models: BTreeMap<String, SweepModel>,
    /// Ctrl-C ended the sweep early; the figures cover what ran.
    pub interrupted: bool,
    pub warnings: Vec<String>,
}

impl SweepSummary {
    /// Read a sweep's `summary.json`.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        super::read_with_schema(path, "sweep summary", &SWEEP_SCHEMAS_READ, |s: &Self| {
            &s.schema
        })
    }

    /// The JSON document, pretty-printed, with a final newline.
    pub fn to_json(&self) -> String {
        super::pretty_json(self)
    }

    /// Write the JSON atomically.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        loadgen::write_atomically(path, self.to_json().as_bytes())
    }

    /// Models in the order given, with their steps (models missing from `models` are left out).
    pub fn ordered(&self) -> impl Iterator<Item = (&str, &SweepModel)> {
        self.order
            .iter()
            .filter_map(|n| self.models.get(n).map(|m| (n.as_str(), m)))
    }

    /// Whether any step of any model failed.
    pub fn any_failed(&self) -> bool {
        self.models
            .values()
            .flat_map(|m| m.max.iter().chain(&m.steps))
            .any(|s| s.failed.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::fixture;

    fn rate_step(i: usize, target: f64, achieved: f64, p99: f64) -> Step {
        Step {
            step: format!("rate-{i:02}"),
            target_rps: Some(target),
            achieved_rps: Some(achieved),
            latency_us: Some(StepLatency {
                p50: p99 / 4.0,
                p99,
                p99_9: p99 * 2.0,
            }),
            connections: 50,
            ..Step::default()
        }
    }

    #[test]
    fn the_knee_is_the_highest_achieved_rate_under_the_target() {
        let steps = vec![
            rate_step(1, 10_000.0, 10_000.0, 200.0),
            // A noisy step over the target does not hide the higher ones.
            rate_step(2, 20_000.0, 20_000.0, 1_500.0),
            rate_step(3, 30_000.0, 29_900.0, 900.0),
            rate_step(4, 40_000.0, 39_000.0, 2_000.0),
            // Under the target, but the rate was not reached: not a candidate.
            rate_step(5, 50_000.0, 41_000.0, 800.0),
        ];
        let k = knee(&steps, 1_000.0).unwrap();
        assert_eq!(k.step, "rate-03");
        // At the boundary: at or under.
        assert_eq!(knee(&steps, 900.0).unwrap().step, "rate-03");
        assert_eq!(knee(&steps, 899.0).unwrap().step, "rate-01");
        assert!(knee(&steps, 100.0).is_none());
        let mut m = SweepModel {
            steps,
            ..SweepModel::default()
        };
        m.update_knee(Some(1_000.0));
        assert_eq!(m.knee_rps, Some(29_900.0));
        assert_eq!(m.knee_step.as_deref(), Some("rate-03"));
        m.update_knee(None);
        assert_eq!(m.knee_rps, None);
    }

    #[test]
    fn skipped_failed_and_interrupted_steps_are_never_the_knee() {
        let mut a = rate_step(1, 10_000.0, 10_000.0, 100.0);
        a.failed = Some("server died".into());
        let mut b = rate_step(2, 20_000.0, 20_000.0, 100.0);
        b.interrupted = true;
        let c = Step {
            skipped: Some("no maximum".into()),
            target_rps: Some(30_000.0),
            ..Step::default()
        };
        assert!(knee(&[a, b, c], 1_000.0).is_none());
    }

    #[test]
    fn a_measured_step_takes_its_figures_from_the_result() {
        let r = fixture("epoll", 2000.0, 40.0);
        let s = Step::planned("idle-100".into(), 50).measured("epoll/idle-100.json".into(), &r);
        assert_eq!(s.achieved_rps, Some(2000.0));
        assert_eq!(s.latency_us.unwrap().p99, r.report.latency_us.p99);
        assert_eq!(s.server_cpu, Some(r.server_cpu.unwrap().us_per_request));
        assert!(s.is_measured());
        assert_eq!(s.file.as_deref(), Some("epoll/idle-100.json"));
    }

    #[test]
    fn the_summary_round_trips_with_the_documented_keys() {
        let mut models = BTreeMap::new();
        models.insert(
            "epoll".to_owned(),
            SweepModel {
                description: "raw epoll".into(),
                steps: vec![rate_step(1, 10.0, 10.0, 5.0)],
                ..SweepModel::default()
            },
        );
        let s = SweepSummary {
            schema: SWEEP_SCHEMA.into(),
            sweep: SweepKind::Rate,
            tool_version: "0.1.0".into(),
            git_commit: None,
            command: "iomodels sweep rate".into(),
            started: "2026-01-01T00:00:00Z".into(),
            finished: None,
            host: fixture("x", 1.0, 1.0).report.host,
            server_cpus: Some(vec![0]),
            client_cpus: Some(vec![1]),
            duration_s: 1.0,
            warmup_s: 0.25,
            size: 512,
            connections: Some(50),
            p99_target_us: Some(1000.0),
            descriptor_limit: Some(1024),
            order: vec!["epoll".into()],
            models,
            interrupted: false,
            warnings: vec![],
        };
        let v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(v["sweep"], "rate");
        let step = &v["models"]["epoll"]["steps"][0];
        for k in [
            "step",
            "target_rps",
            "idle",
            "connections",
            "achieved_rps",
            "latency_us",
            "server_cpu",
            "saturated",
            "skipped",
        ] {
            assert!(step.get(k).is_some(), "missing {k}");
        }
        for k in ["p50", "p99", "p99_9"] {
            assert!(step["latency_us"].get(k).is_some(), "missing {k}");
        }
        assert!(v["models"]["epoll"].get("knee_rps").is_some());
        let back: SweepSummary = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }
}
