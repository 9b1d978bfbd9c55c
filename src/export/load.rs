//! Reading what `compare` and the exporters are given: a run folder, its `summary.json`, or a
//! single result document (`iomodels load --json`), each turned into one [`LoadedRun`].
//!
//! A single result becomes a one-model, one-point [`Summary`] built with the same
//! [`PointSummary::from_rounds`] that `run` uses, so exporters never need a second code path.
//! Deliberately no formatting and no aggregation beyond that: the figures come from
//! [`crate::record`]. Every error names the path and says what would have been accepted.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use serde::Deserialize;

use super::LoadedRun;
use crate::record::{
    Histograms, ModelSummary, PointResult, PointSpec, PointSummary, SUMMARY_SCHEMA, Summary,
};

/// What every "this is not something I can read" error ends with: the fix.
const ACCEPTED: &str =
    "give a run folder, its summary.json, or a result file written by `iomodels load --json`";

/// Point names `run` writes; a result file named after one is taken to sit in a run layout.
/// The library cannot read `run`'s plan (it is the binary's), so the plan's tests check that
/// this list names every one of its points.
pub const RUN_POINTS: &[&str] = &[
    "latency",
    "latency-spin",
    "throughput",
    "heavy",
    "open",
    "udp-latency",
    "udp-open",
];

/// Load a run folder, a `summary.json`, or a single result JSON (see the module doc).
///
/// Histograms of a run are read from each point's `<model>/<point>.json`; a point file that is
/// missing or unreadable leaves its histogram out rather than failing the load.
pub fn load(path: &Path) -> anyhow::Result<LoadedRun> {
    if !path.exists() {
        return Err(anyhow!("{} does not exist: {ACCEPTED}", path.display()));
    }
    if path.is_dir() {
        let summary = path.join("summary.json");
        if !summary.is_file() {
            return Err(anyhow!(
                "{} has no summary.json, so it is not a run folder: {ACCEPTED}",
                path.display()
            ));
        }
        return load_summary(&summary, path);
    }
    #[derive(Deserialize)]
    struct Schema {
        schema: Option<String>,
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let schema = serde_json::from_str::<Schema>(&text)
        .map_err(|e| {
            anyhow!(
                "{} is not an iomodels result (not a JSON object: {e}): {ACCEPTED}",
                path.display()
            )
        })?
        .schema;
    match schema.as_deref() {
        Some(SUMMARY_SCHEMA) => load_summary(path, path.parent().unwrap_or(Path::new("."))),
        Some(s) if loadgen::SCHEMAS_READ.contains(&s) => load_result(path),
        Some(other) => Err(anyhow!(
            "{} has schema {other:?}, which this iomodels does not read ({SUMMARY_SCHEMA:?} or \
             one of {:?}): {ACCEPTED}",
            path.display(),
            loadgen::SCHEMAS_READ
        )),
        None => Err(anyhow!(
            "{} is not an iomodels result (no \"schema\" key): {ACCEPTED}",
            path.display()
        )),
    }
}

/// What `compare` reads: a run (a run folder, summary or result file) or a sweep.
#[derive(Clone, Debug)]
pub enum Loaded {
    Run(LoadedRun),
    Sweep(super::sweep::LoadedSweep),
    /// One `iomodels fanout --json` record.
    Fanout(crate::record::fanout::FanoutRecord),
}

/// Load a sweep folder (or its `summary.json`) as a sweep, anything else as [`load`] does.
pub fn load_any(path: &Path) -> anyhow::Result<Loaded> {
    if super::sweep::summary_path(path).is_some() {
        return super::sweep::load(path).map(Loaded::Sweep);
    }
    if is_fanout(path) {
        return crate::record::fanout::FanoutRecord::read(path).map(Loaded::Fanout);
    }
    load(path).map(Loaded::Run)
}

/// `path` is a file whose `schema` is `iomodels.fanout/1` (anything unreadable is not).
fn is_fanout(path: &Path) -> bool {
    #[derive(serde::Deserialize)]
    struct Schema {
        schema: Option<String>,
    }
    path.is_file()
        && std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_json::from_str::<Schema>(&t).ok())
            .and_then(|s| s.schema)
            .is_some_and(|s| s == crate::record::fanout::FANOUT_SCHEMA)
}

/// A `summary.json` and the histograms of its points, files relative to `folder`.
fn load_summary(summary_path: &Path, folder: &Path) -> anyhow::Result<LoadedRun> {
    let summary = Summary::read(summary_path)?;
    let mut histograms = Histograms::new();
    let mut explains = super::explain::Explains::new();
    for m in &summary.models {
        for p in &m.points {
            let file = if p.file.is_empty() {
                folder.join(&m.model).join(format!("{}.json", p.point))
            } else {
                folder.join(&p.file)
            };
            // Tolerated: a missing or damaged point file only costs its histogram (the
            // summary already has the figures); the exporters show the gap.
            let Ok(result) = PointResult::read(&file) else {
                log::debug!(
                    "{}: no histogram for {}/{}",
                    file.display(),
                    m.model,
                    p.point
                );
                continue;
            };
            if let Ok(h) = result.report.latency_histogram() {
                histograms.insert((m.model.clone(), p.point.clone()), h);
            }
            if let Some(e) = result.explain {
                explains.insert((m.model.clone(), p.point.clone()), e);
            }
        }
    }
    Ok(LoadedRun {
        label: label_of(folder),
        source: summary_path.to_path_buf(),
        summary,
        histograms,
        explains,
    })
}

/// `<point>.rK` → (`<point>`, K); anything else → (stem, 1).
fn split_round(stem: &str) -> (&str, usize) {
    if let Some((point, k)) = stem.rsplit_once(".r")
        && let Ok(k) = k.parse::<usize>()
        && k >= 1
    {
        return (point, k);
    }
    (stem, 1)
}

/// One result document as a one-model, one-point run.
fn load_result(path: &Path) -> anyhow::Result<LoadedRun> {
    let result = PointResult::read(path)?;
    let file_name = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = path
        .file_stem()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "load".to_owned());
    let (point_stem, round) = split_round(&stem);
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    let parent_name = parent
        .and_then(Path::file_name)
        .map(|f| f.to_string_lossy().into_owned());
    // `<run>/<model>/<point>.json`: the run folder has a summary.json, or (a run cut short
    // before writing one, a copied folder) the file is named after one of run's points.
    let in_run = parent_name.is_some()
        && (parent
            .and_then(Path::parent)
            .is_some_and(|run| run.join("summary.json").is_file())
            || RUN_POINTS.contains(&point_stem));
    let model = match (&result.server, &parent_name) {
        (Some(s), _) => s.model.clone(),
        (None, Some(dir)) if in_run => dir.clone(),
        _ => stem.clone(),
    };
    let (point, file) = if in_run {
        (point_stem.to_owned(), format!("{model}/{file_name}"))
    } else {
        (shape_name(&result.report.workload), file_name)
    };
    let r = &result.report;
    let w = &r.workload;
    let point_summary = PointSummary::from_rounds(&point, file, &[(round, &result)])
        .ok_or_else(|| anyhow!("{}: no round to summarise", path.display()))?;
    let summary = Summary {
        schema: SUMMARY_SCHEMA.to_owned(),
        tool_version: r.tool_version.clone(),
        git_commit: None,
        command: format!("iomodels load (single result {})", path.display()),
        // A result file does not carry its wall-clock start.
        started: String::new(),
        finished: None,
        host: r.host.clone(),
        server_cpus: result.server.as_ref().and_then(|s| s.config.cpus.clone()),
        client_cpus: r.pinning.clone(),
        rounds: 1,
        duration_s: r.duration_s,
        warmup_s: w.warmup.as_secs_f64(),
        points: vec![PointSpec {
            name: point.clone(),
            connections: w.connections,
            size: w.size,
            depth: w.depth,
            rate_of_throughput: None,
            proto: w.proto,
            rate_rps: w.rate,
        }],
        models: vec![ModelSummary {
            description: servers::Model::from_name(&model)
                .map(|m| m.description().to_owned())
                .unwrap_or_default(),
            model: model.clone(),
            points: vec![point_summary],
            failures: vec![],
        }],
        interrupted: r.interrupted,
        warnings: r.warnings.clone(),
    };
    let mut histograms = Histograms::new();
    if let Ok(h) = r.latency_histogram() {
        histograms.insert((model.clone(), point.clone()), h);
    }
    let mut explains = super::explain::Explains::new();
    if let Some(e) = result.explain.clone() {
        explains.insert((model, point), e);
    }
    Ok(LoadedRun {
        label: stem,
        source: path.to_path_buf(),
        summary,
        histograms,
        explains,
    })
}

/// The point name of a result outside a run folder: `load-` and its workload's shape
/// (`load-c50-s512`, `-d4` for depth, `-R20000` for open loop, `-crr` for connect per request,
/// `load-udp-` for UDP), so results of different workloads are never put in one table as if
/// comparable.
fn shape_name(w: &loadgen::Options) -> String {
    let proto = match w.proto {
        loadgen::Proto::Tcp => "",
        loadgen::Proto::Udp => "udp-",
    };
    let mut n = format!("load-{proto}c{}", w.connections);
    match w.size_range {
        Some(r) => n.push_str(&format!("-s{}..{}", r.min, r.max)),
        None => n.push_str(&format!("-s{}", w.size)),
    }
    if w.depth > 1 {
        n.push_str(&format!("-d{}", w.depth));
    }
    if let Some(rate) = w.rate {
        n.push_str(&format!("-R{rate}"));
    }
    if w.connect_per_request {
        n.push_str("-crr");
    }
    if w.idle > 0 {
        n.push_str(&format!("-idle{}", w.idle));
    }
    n
}

/// A folder's own name (`.` and `..` resolved when possible).
fn label_of(folder: &Path) -> String {
    let named = folder.file_name().map(|f| f.to_string_lossy().into_owned());
    named
        .or_else(|| {
            std::fs::canonicalize(folder)
                .ok()
                .and_then(|p: PathBuf| p.file_name().map(|f| f.to_string_lossy().into_owned()))
        })
        .unwrap_or_else(|| folder.display().to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::record::tests::fixture;

    /// A fresh, empty folder under the system temp dir, removed by the caller.
    pub(crate) fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "iomodels-export-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A run summary over `models` × one `throughput` point (rounds as given), with no files.
    pub(crate) fn summary(models: &[(&str, &[PointResult])]) -> Summary {
        let r0 = fixture("x", 1.0, 1.0);
        Summary {
            schema: SUMMARY_SCHEMA.into(),
            tool_version: "0.1.0".into(),
            git_commit: None,
            command: "iomodels run".into(),
            started: "2025-01-01T00:00:00Z".into(),
            finished: Some("2025-01-01T00:01:00Z".into()),
            host: r0.report.host.clone(),
            server_cpus: Some(vec![0]),
            client_cpus: Some(vec![1]),
            rounds: 3,
            duration_s: 3.0,
            warmup_s: 1.0,
            points: vec![PointSpec {
                name: "throughput".into(),
                connections: 50,
                size: 512,
                depth: 1,
                rate_of_throughput: None,
                ..Default::default()
            }],
            models: models
                .iter()
                .map(|(name, rounds)| {
                    let indexed: Vec<(usize, &PointResult)> =
                        rounds.iter().enumerate().map(|(i, r)| (i + 1, r)).collect();
                    ModelSummary {
                        model: (*name).into(),
                        description: String::new(),
                        points: PointSummary::from_rounds(
                            "throughput",
                            format!("{name}/throughput.json"),
                            &indexed,
                        )
                        .into_iter()
                        .collect(),
                        failures: vec![],
                    }
                })
                .collect(),
            interrupted: false,
            warnings: vec![],
        }
    }

    #[test]
    fn a_run_folder_with_its_histograms_and_a_missing_point_file() {
        let dir = temp_dir("folder");
        let s = summary(&[
            ("epoll", &[fixture("epoll", 2000.0, 40.0)]),
            ("mio", &[fixture("mio", 1500.0, 50.0)]),
        ]);
        s.write(&dir.join("summary.json")).unwrap();
        std::fs::create_dir_all(dir.join("epoll")).unwrap();
        fixture("epoll", 2000.0, 40.0)
            .write_json(&dir.join("epoll/throughput.json"))
            .unwrap();
        // mio/throughput.json is missing: tolerated.
        for p in [dir.clone(), dir.join("summary.json")] {
            let run = load(&p).unwrap();
            // Floats as the JSON carries them, not as computed.
            assert_eq!(
                run.summary,
                Summary::read(&dir.join("summary.json")).unwrap()
            );
            assert_eq!(run.summary.models.len(), s.models.len());
            assert_eq!(
                run.label,
                dir.file_name().unwrap().to_string_lossy(),
                "{p:?}"
            );
            assert_eq!(run.histograms.len(), 1);
            assert_eq!(
                run.histograms[&("epoll".into(), "throughput".into())].len(),
                1000
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_single_load_result_is_a_one_point_run() {
        let dir = temp_dir("single");
        let mut r = fixture("epoll", 1234.0, 30.0);
        r.server = None;
        r.server_cpu = None;
        let path = dir.join("before.json");
        r.write_json(&path).unwrap();
        let run = load(&path).unwrap();
        assert_eq!(run.label, "before");
        let m = &run.summary.models[0];
        assert_eq!(m.model, "before");
        // Named after its workload's shape, so different workloads never share a table.
        assert_eq!(m.points[0].point, "load-c50-s64");
        assert_eq!(m.points[0].throughput_rps.value, 1234.0);
        assert_eq!(m.points[0].rounds, 1);
        assert!(m.points[0].server_cpu_us.is_none());
        assert_eq!(run.summary.points[0].connections, 50);
        assert_eq!(run.summary.points[0].size, 64);
        assert!(
            run.histograms
                .contains_key(&("before".into(), "load-c50-s64".into()))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_result_inside_a_run_layout_takes_its_names_from_the_layout() {
        let dir = temp_dir("layout");
        std::fs::create_dir_all(dir.join("mio")).unwrap();
        // With a server half, the model comes from it; the round from `.r2`.
        let path = dir.join("mio/heavy.r2.json");
        fixture("epoll", 900.0, 80.0).write_json(&path).unwrap();
        let run = load(&path).unwrap();
        let m = &run.summary.models[0];
        assert_eq!(
            (m.model.as_str(), m.points[0].point.as_str()),
            ("epoll", "heavy")
        );
        assert_eq!(m.points[0].median_round, 2);
        assert_eq!(m.points[0].file, "epoll/heavy.r2.json");
        assert_eq!(m.description, servers::Model::Epoll.description());
        // Without one, from the folder (a run point name marks the layout).
        let mut r = fixture("epoll", 900.0, 80.0);
        r.server = None;
        let path = dir.join("mio/throughput.json");
        r.write_json(&path).unwrap();
        let m = &load(&path).unwrap().summary.models[0];
        assert_eq!(
            (m.model.as_str(), m.points[0].point.as_str()),
            ("mio", "throughput")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn user_errors_name_the_path_and_the_fix() {
        let dir = temp_dir("errors");
        let missing = dir.join("nope");
        let e = format!("{:#}", load(&missing).unwrap_err());
        assert!(
            e.contains("does not exist") && e.contains("load --json"),
            "{e}"
        );
        let e = format!("{:#}", load(&dir).unwrap_err());
        assert!(e.contains("no summary.json"), "{e}");
        let other = dir.join("other.json");
        std::fs::write(&other, "{\"name\": 1}").unwrap();
        let e = format!("{:#}", load(&other).unwrap_err());
        assert!(e.contains("not an iomodels result"), "{e}");
        std::fs::write(&other, "not json at all").unwrap();
        assert!(load(&other).is_err());
        std::fs::write(&other, "{\"schema\": \"iomodels.summary/9\"}").unwrap();
        let e = format!("{:#}", load(&other).unwrap_err());
        assert!(e.contains("iomodels.summary/9"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn result_files_of_schema_1_and_1_1_both_load() {
        // 1.1 tightened the saturation rule and kept every key: a 1 file still reads.
        let dir = temp_dir("schema-versions");
        let r = crate::record::tests::fixture("epoll", 1000.0, 100.0);
        for schema in ["iomodels.result/1", "iomodels.result/1.1"] {
            let mut v = serde_json::to_value(&r).unwrap();
            v["schema"] = schema.into();
            let f = dir.join("point.json");
            std::fs::write(&f, serde_json::to_string(&v).unwrap()).unwrap();
            if let Err(e) = load(&f) {
                panic!("{schema}: {e:#}");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn round_suffixes() {
        assert_eq!(split_round("throughput.r3"), ("throughput", 3));
        assert_eq!(split_round("throughput"), ("throughput", 1));
        assert_eq!(split_round("a.rx"), ("a.rx", 1));
        assert_eq!(split_round("a.r0"), ("a.r0", 1));
    }

    #[test]
    fn results_of_different_workloads_get_different_points() {
        let base = fixture("epoll", 1000.0, 30.0).report.workload;
        let mut open = base.clone();
        open.rate = Some(20000.0);
        let mut deep = base.clone();
        deep.depth = 4;
        let mut udp = open.clone();
        udp.proto = loadgen::Proto::Udp;
        let names = [
            shape_name(&base),
            shape_name(&open),
            shape_name(&deep),
            shape_name(&udp),
        ];
        assert_eq!(names[0], "load-c50-s64");
        assert_eq!(names[1], "load-c50-s64-R20000");
        assert_eq!(names[2], "load-c50-s64-d4");
        assert_eq!(names[3], "load-udp-c50-s64-R20000");
    }
}
