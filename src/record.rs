//! The typed records `run` writes and `compare` reads: one point's result (the generator's
//! [`Report`] plus the server half), and a run's `summary.json` (every model × point aggregated
//! over rounds).
//!
//! The numbers are computed here, once; exporters (`export/`) only format them. The on-disk
//! shapes are contracts (`iomodels.result/1.3`, `iomodels.summary/1`), described key by key in
//! `results/README.md`. This module deliberately does no I/O beyond reading and writing these
//! documents.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, anyhow};
use loadgen::{Cpu, Host, LatencySummary, Report};
use serde::{Deserialize, Serialize};
use servers::ServerStats;

pub mod fanout;
pub mod sweep;

/// A record as its JSON document: pretty-printed, with a final newline. Plain data with string
/// keys, so serialisation cannot fail.
fn pretty_json(value: &impl Serialize) -> String {
    let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
    s.push('\n');
    s
}

/// Read a JSON document of `kind` ("summary", "sweep summary") whose `schema` must be `schema`;
/// errors are one line naming the file and what is wrong with it.
fn read_with_schema<T: serde::de::DeserializeOwned>(
    path: &Path,
    kind: &str,
    schemas: &[&str],
    schema_of: impl Fn(&T) -> &str,
) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let doc: T = serde_json::from_str(&text)
        .with_context(|| format!("{} is not an iomodels {kind}", path.display()))?;
    if !schemas.contains(&schema_of(&doc)) {
        return Err(anyhow!(
            "{} has schema {:?}; this iomodels reads {}",
            path.display(),
            schema_of(&doc),
            schemas.join(", ")
        ));
    }
    Ok(doc)
}

/// The schema of `summary.json`; bump it (and `results/README.md`) when a key changes meaning.
pub const SUMMARY_SCHEMA: &str = "iomodels.summary/1";

/// How `run` started the server: the flags it passed to `serve`, every one explicit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServeConfig {
    /// Event loops (`--threads`).
    pub threads: usize,
    /// Per-connection buffer in bytes (`--buffer`).
    pub buffer_size: usize,
    /// Listen backlog (`--backlog`).
    pub backlog: i32,
    /// `reuse-port` or `handoff` (`--accept`).
    pub accept: String,
    /// CPUs every server thread was pinned to (`--cpus`), or null.
    pub cpus: Option<Vec<usize>>,
}

impl ServeConfig {
    /// The settings `run` gives every model: one loop, the library's default buffer and backlog,
    /// the platform's accept mode, pinned to `cpus`.
    pub fn defaults(cpus: Option<Vec<usize>>) -> Self {
        let d = servers::Config::default();
        Self {
            threads: 1,
            buffer_size: d.buffer_size,
            backlog: d.backlog,
            accept: servers::AcceptMode::platform_default().name().to_owned(),
            cpus,
        }
    }
}

/// The server half of a result: what the generator cannot know.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerSide {
    /// The model's registry name.
    pub model: String,
    /// How it was started.
    pub config: ServeConfig,
    /// Its final `ServerStats` line; null when it never printed one (it crashed or was killed).
    pub stats: Option<ServerStats>,
}

/// One result document (`iomodels.result/1.3`; 1.2, 1.1 and 1 read the same, `udp` and `explain` null): the
/// generator's report, flattened, plus `server_cpu` and `server`, which are null from `load` and
/// filled by `run`, and `explain` (filled by `run`, and by `load --explain`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PointResult {
    #[serde(flatten)]
    pub report: Report,
    /// The server process's CPU over exactly the measured window (OS accounting of the child).
    pub server_cpu: Option<Cpu>,
    pub server: Option<ServerSide>,
    /// Kernel counts per request (`iomodels.result/1.2`): null when not measured or refused
    /// (the reason is in `warnings`); absent in 1 and 1.1 files, read as null.
    #[serde(default)]
    pub explain: Option<crate::explain::Explain>,
}

impl PointResult {
    /// A generator-only result, as `load` writes it.
    pub fn client_only(report: Report) -> Self {
        Self {
            report,
            server_cpu: None,
            server: None,
            explain: None,
        }
    }

    /// The JSON document, pretty-printed, with a final newline.
    pub fn to_json(&self) -> String {
        pretty_json(self)
    }

    /// Write the JSON atomically.
    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        loadgen::write_atomically(path, self.to_json().as_bytes())
    }

    /// Read one result document.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not an iomodels result", path.display()))
    }
}

/// One figure over rounds: the aggregate `value` (best, least or median, as each field says),
/// its `min` and `max`, and every round's value in round order, so a reader sees the spread.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    pub value: f64,
    pub min: f64,
    pub max: f64,
    pub rounds: Vec<f64>,
}

/// How a [`Stat`]'s `value` is chosen from its rounds (the design notes' measuring rule).
#[derive(Clone, Copy, Debug)]
pub enum Pick {
    /// The highest (throughput: the run least disturbed by the machine's noise).
    Best,
    /// The lowest (CPU per request).
    Least,
    /// The middle value (latency percentiles); the mean of the two middle ones for an even count.
    Median,
}

impl Stat {
    /// Aggregate `values` (one per round, in round order); `None` for no rounds.
    pub fn of(values: &[f64], pick: Pick) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let (min, max) = (sorted[0], sorted[sorted.len() - 1]);
        let n = sorted.len();
        let value = match pick {
            Pick::Best => max,
            Pick::Least => min,
            Pick::Median if n % 2 == 1 => sorted[n / 2],
            Pick::Median => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Some(Self {
            value,
            min,
            max,
            rounds: values.to_vec(),
        })
    }

    /// max / min − 1: how far apart the rounds were (0 for one round).
    pub fn spread(&self) -> f64 {
        if self.min > 0.0 {
            self.max / self.min - 1.0
        } else {
            0.0
        }
    }
}

/// Latency percentiles over rounds, each the median of the rounds' values, in µs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: Stat,
    pub p90: Stat,
    pub p99: Stat,
    pub p99_9: Stat,
    pub p99_99: Stat,
    pub max: Stat,
}

impl Percentiles {
    fn of(summaries: &[&LatencySummary]) -> Self {
        let f = |get: fn(&LatencySummary) -> f64| {
            let v: Vec<f64> = summaries.iter().map(|s| get(s)).collect();
            Stat::of(&v, Pick::Median).unwrap_or_default()
        };
        Self {
            p50: f(|s| s.p50),
            p90: f(|s| s.p90),
            p99: f(|s| s.p99),
            p99_9: f(|s| s.p99_9),
            p99_99: f(|s| s.p99_99),
            max: f(|s| s.max),
        }
    }
}

/// The shape of a point (contract names: `latency`, `latency-spin`, `throughput`, `heavy`,
/// `open`, `udp-latency`, `udp-open`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PointSpec {
    pub name: String,
    pub connections: usize,
    /// Message size in bytes.
    pub size: usize,
    pub depth: usize,
    /// Open loop at this fraction of the same model's `throughput` rate in the same round;
    /// null for closed loop.
    pub rate_of_throughput: Option<f64>,
    /// The transport (`tcp` when absent: a summary written before UDP points existed).
    #[serde(default)]
    pub proto: loadgen::Proto,
    /// Open loop at this fixed rate, requests (datagrams) per second, the same for every
    /// model (`udp-open`); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_rps: Option<f64>,
}

impl PointSpec {
    /// Open loop: at a share of the throughput rate, or at a fixed rate (`udp-open`).
    pub fn is_open_loop(&self) -> bool {
        self.rate_of_throughput.is_some() || self.rate_rps.is_some()
    }

    /// What one of its `connections` is: a TCP connection, or a connected UDP socket.
    pub fn carrier(&self) -> &'static str {
        match (self.proto, self.connections == 1) {
            (loadgen::Proto::Udp, true) => "UDP socket",
            (loadgen::Proto::Udp, false) => "UDP sockets",
            (loadgen::Proto::Tcp, true) => "connection",
            (loadgen::Proto::Tcp, false) => "connections",
        }
    }
}

/// One model × point, aggregated over the rounds that measured it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PointSummary {
    pub point: String,
    /// Rounds that produced a result (failed rounds are in the model's `failures`).
    pub rounds: usize,
    /// The round (from 1) whose files were copied to `<model>/<point>.json` and `.hlog`: the
    /// one with the median throughput (the lower middle for an even count).
    pub median_round: usize,
    /// `<model>/<point>.json`, relative to the run folder.
    pub file: String,
    /// Open loop only: the rate asked for, per round.
    pub target_rps: Option<Stat>,
    /// Requests per second; value = best round.
    pub throughput_rps: Stat,
    /// Latency in µs (corrected in open loop); each value = median over rounds.
    pub latency_us: Percentiles,
    /// Server CPU µs per request (whole server process, OS accounting); value = least.
    pub server_cpu_us: Option<Stat>,
    /// Generator CPU µs per request; value = least.
    pub client_cpu_us: Stat,
    /// Errors over all rounds (all kinds).
    pub errors: u64,
    /// Rounds in which the generator could not keep the schedule (see each round's warnings).
    pub saturated_rounds: usize,
    /// Why, for each saturated round: `round K: ` and the generator's reason (the round's
    /// warnings that start with `saturated:`), so a reader needs no round file to see it.
    #[serde(default)]
    pub saturation: Vec<String>,
    /// A round of this point was cut short by Ctrl-C.
    pub interrupted: bool,
    /// UDP points only: `udp.loss_ratio` per round; value = median. Absent for TCP points and
    /// in summaries written before UDP existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_loss_ratio: Option<Stat>,
}

impl PointSummary {
    /// Aggregate the rounds of one point: `(round, result)` in round order. `None` when empty.
    pub fn from_rounds(
        point: &str,
        file: String,
        rounds: &[(usize, &PointResult)],
    ) -> Option<Self> {
        if rounds.is_empty() {
            return None;
        }
        let reports: Vec<&Report> = rounds.iter().map(|(_, r)| &r.report).collect();
        let col = |get: fn(&PointResult) -> f64| -> Vec<f64> {
            rounds.iter().map(|(_, r)| get(r)).collect()
        };
        let throughput = col(|r| r.report.throughput_rps);
        let server: Vec<f64> = rounds
            .iter()
            .filter_map(|(_, r)| r.server_cpu.map(|c| c.us_per_request))
            .collect();
        let targets: Vec<f64> = reports.iter().filter_map(|r| r.target_rps).collect();
        Some(Self {
            point: point.to_owned(),
            rounds: rounds.len(),
            median_round: rounds[median_index(&throughput)].0,
            file,
            target_rps: Stat::of(&targets, Pick::Median),
            throughput_rps: Stat::of(&throughput, Pick::Best)?,
            latency_us: Percentiles::of(&reports.iter().map(|r| &r.latency_us).collect::<Vec<_>>()),
            server_cpu_us: Stat::of(&server, Pick::Least),
            client_cpu_us: Stat::of(&col(|r| r.report.client_cpu.us_per_request), Pick::Least)?,
            errors: reports.iter().map(|r| r.errors.total).sum(),
            saturated_rounds: reports.iter().filter(|r| r.saturated).count(),
            saturation: rounds
                .iter()
                .flat_map(|(k, r)| {
                    r.report
                        .warnings
                        .iter()
                        .filter(|w| r.report.saturated && w.starts_with("saturated"))
                        .map(move |w| format!("round {k}: {w}"))
                })
                .collect(),
            interrupted: reports.iter().any(|r| r.interrupted),
            udp_loss_ratio: Stat::of(
                &reports
                    .iter()
                    .filter_map(|r| r.udp.as_ref().map(|u| u.loss_ratio))
                    .collect::<Vec<_>>(),
                Pick::Median,
            ),
        })
    }
}

/// The index of the median of `values` (the lower middle for an even count).
pub fn median_index(values: &[f64]) -> usize {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    idx[(idx.len().saturating_sub(1)) / 2]
}

/// A model × point × round that produced no result, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub point: String,
    pub round: usize,
    /// One line: what went wrong (the server's last stderr line when it died).
    pub error: String,
}

/// One model's results in a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    pub model: String,
    pub description: String,
    /// Points in the run's point order; a point with no successful round is absent.
    pub points: Vec<PointSummary>,
    /// Every model × point × round that failed; empty for a model that ran cleanly.
    pub failures: Vec<Failure>,
}

impl ModelSummary {
    /// This model's summary of `point`, if any round of it succeeded.
    pub fn point(&self, point: &str) -> Option<&PointSummary> {
        self.points.iter().find(|p| p.point == point)
    }
}

/// `summary.json`: what a run measured, aggregated, with the metadata needed to trust it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// `"iomodels.summary/1"`.
    pub schema: String,
    pub tool_version: String,
    /// The commit the binary was built from, when known.
    pub git_commit: Option<String>,
    /// The command line, for repeating the run.
    pub command: String,
    /// RFC 3339 UTC, when the run started and (null while it runs) when it ended.
    pub started: String,
    pub finished: Option<String>,
    pub host: Host,
    /// CPUs the servers were pinned to, and the generator's; null when unpinned.
    pub server_cpus: Option<Vec<usize>>,
    pub client_cpus: Option<Vec<usize>>,
    /// Rounds asked for; each point says how many it got.
    pub rounds: usize,
    /// Measured seconds per point and round, and warm-up seconds before each.
    pub duration_s: f64,
    pub warmup_s: f64,
    /// Points in run order.
    pub points: Vec<PointSpec>,
    /// Models in the order given (round 1's order).
    pub models: Vec<ModelSummary>,
    /// The run was stopped early (Ctrl-C); the figures cover what ran.
    pub interrupted: bool,
    pub warnings: Vec<String>,
}

impl Summary {
    /// Read a `summary.json`.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        read_with_schema(path, "summary", &[SUMMARY_SCHEMA], |s: &Self| &s.schema)
    }

    /// The JSON document, pretty-printed, with a final newline.
    pub fn to_json(&self) -> String {
        pretty_json(self)
    }

    /// Write the JSON atomically.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        loadgen::write_atomically(path, self.to_json().as_bytes())
    }

    /// Models with at least one failure.
    pub fn failed_models(&self) -> impl Iterator<Item = &ModelSummary> {
        self.models.iter().filter(|m| !m.failures.is_empty())
    }
}

/// Histograms (ns) of a run's median rounds, keyed by (model, point): what the percentile
/// spectrum plots read. Loaded from `<model>/<point>.json` next to the summary.
pub type Histograms = BTreeMap<(String, String), hdrhistogram::Histogram<u64>>;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small but complete result, for exporter tests: `model` at `rps` with a latency
    /// histogram of `n` values around `us` µs.
    pub(crate) fn fixture(model: &str, rps: f64, us: f64) -> PointResult {
        let mut o = loadgen::Options::new("127.0.0.1:1".parse().unwrap());
        o.connections = 50;
        let mut h =
            hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
        for i in 0..1000u64 {
            h.record((us * 1000.0) as u64 + i * 10).unwrap();
        }
        let report = Report {
            schema: loadgen::SCHEMA.into(),
            tool_version: "0.1.0".into(),
            host: Host {
                os: "linux".into(),
                kernel: "6.18".into(),
                cpu: "test cpu".into(),
                cores: 2,
            },
            pinning: Some(vec![1]),
            workload: o,
            requests: (rps * 3.0) as u64,
            duration_s: 3.0,
            throughput_rps: rps,
            latency_us: LatencySummary::from_ns(&h),
            uncorrected_latency_us: None,
            send_lag_us: None,
            target_rps: None,
            achieved_rps: None,
            connect_us: None,
            errors: Default::default(),
            udp: None,
            client_cpu: Cpu::new(
                std::time::Duration::from_millis(300),
                std::time::Duration::from_millis(600),
                (rps * 3.0) as u64,
            ),
            saturated: false,
            interrupted: false,
            warnings: vec![],
            histogram: loadgen::encode_histogram(&h),
            uncorrected_histogram: None,
            intervals: vec![],
            measured_start: None,
        };
        PointResult {
            report,
            server_cpu: Some(Cpu::new(
                std::time::Duration::from_millis(400),
                std::time::Duration::from_millis(900),
                (rps * 3.0) as u64,
            )),
            server: Some(ServerSide {
                model: model.into(),
                config: ServeConfig::defaults(Some(vec![0])),
                stats: None,
            }),
            explain: None,
        }
    }

    #[test]
    fn stat_picks() {
        let v = [3.0, 1.0, 2.0, 10.0];
        assert_eq!(Stat::of(&v, Pick::Best).unwrap().value, 10.0);
        assert_eq!(Stat::of(&v, Pick::Least).unwrap().value, 1.0);
        assert_eq!(Stat::of(&v, Pick::Median).unwrap().value, 2.5);
        assert_eq!(Stat::of(&[5.0, 1.0, 3.0], Pick::Median).unwrap().value, 3.0);
        let s = Stat::of(&v, Pick::Best).unwrap();
        assert_eq!((s.min, s.max), (1.0, 10.0));
        assert_eq!(s.rounds, v.to_vec());
        assert!(Stat::of(&[], Pick::Best).is_none());
    }

    #[test]
    fn median_round_is_the_lower_middle_throughput() {
        assert_eq!(median_index(&[30.0, 10.0, 20.0]), 2);
        assert_eq!(median_index(&[30.0, 10.0, 20.0, 40.0]), 2);
        assert_eq!(median_index(&[7.0]), 0);
    }

    #[test]
    fn point_summary_aggregates_the_rules() {
        let a = fixture("epoll", 1000.0, 50.0);
        let b = fixture("epoll", 3000.0, 30.0);
        let c = fixture("epoll", 2000.0, 40.0);
        let s = PointSummary::from_rounds(
            "throughput",
            "epoll/throughput.json".into(),
            &[(1, &a), (2, &b), (3, &c)],
        )
        .unwrap();
        assert_eq!(s.rounds, 3);
        assert_eq!(s.median_round, 3);
        assert_eq!(s.throughput_rps.value, 3000.0);
        assert_eq!(s.throughput_rps.min, 1000.0);
        // CPU per request is lowest where the same CPU bought the most requests.
        assert_eq!(s.client_cpu_us.value, b.report.client_cpu.us_per_request);
        assert_eq!(
            s.server_cpu_us.unwrap().value,
            b.server_cpu.unwrap().us_per_request
        );
        assert_eq!(s.latency_us.p50.value, c.report.latency_us.p50);
        assert_eq!(s.errors, 0);
    }

    #[test]
    fn saturated_rounds_keep_their_reason_in_the_summary() {
        let a = fixture("epoll", 1000.0, 50.0);
        let mut b = fixture("epoll", 900.0, 50.0);
        b.report.saturated = true;
        b.report.warnings = vec![
            "saturated: the generator sent late".into(),
            "3 threads asked, 1 used".into(),
        ];
        let s = PointSummary::from_rounds("open", "epoll/open.json".into(), &[(1, &a), (2, &b)])
            .unwrap();
        assert_eq!(s.saturated_rounds, 1);
        assert_eq!(
            s.saturation,
            ["round 2: saturated: the generator sent late"]
        );
    }

    #[test]
    fn point_result_json_has_every_contract_key_and_round_trips() {
        let r = fixture("epoll", 1000.0, 50.0);
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        for k in [
            "schema",
            "tool_version",
            "host",
            "pinning",
            "workload",
            "requests",
            "duration_s",
            "throughput_rps",
            "latency_us",
            "errors",
            "client_cpu",
            "server_cpu",
            "server",
            "saturated",
            "interrupted",
            "warnings",
            "histogram",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        for k in ["model", "config", "stats"] {
            assert!(v["server"].get(k).is_some(), "missing server.{k}");
        }
        let back: PointResult = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), v);
        assert_eq!(back.report.latency_histogram().unwrap().len(), 1000);
        // From `load`, the server half is present and null.
        let v: serde_json::Value =
            serde_json::from_str(&PointResult::client_only(r.report).to_json()).unwrap();
        assert!(v["server"].is_null() && v["server_cpu"].is_null());
    }
}
