//! The run folder (`results/YYYYMMDDTHHMMSSZ-<host>/`): every round's files written the moment
//! the point ends, the median round copied to `<point>.json`/`.hlog`, and `summary.json`
//! rewritten after every point, all atomically, so an interrupted or failed run leaves valid
//! files behind.
//!
//! Deliberately not the exporters: `report.html` and the table are rendered from what this
//! writes.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use iomodels::record::{Failure, ModelSummary, PointResult, PointSummary, Summary};

/// The folder of one run and what has been measured into it.
pub struct Output {
    dir: PathBuf,
    summary: Summary,
    /// (model, point) → (round, result), in round order.
    results: BTreeMap<(String, String), Vec<(usize, PointResult)>>,
}

/// `results/20261130T123334Z-<host>`: the contract's folder name (no colons, for Windows).
pub fn default_dir(started: &str) -> PathBuf {
    let stamp: String = started.chars().filter(|c| *c != '-' && *c != ':').collect();
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Path::new("results").join(format!(
        "{stamp}-{}",
        if host.is_empty() { "host" } else { &host }
    ))
}

/// Make `dir` the new, empty folder of a run or a sweep: it must not be a file nor a folder
/// with anything in it, and it is created (with its parents) if missing. Errors are one line
/// with the fix.
pub fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.is_file() {
        return Err(anyhow!(
            "--out {} is a file: give a folder that does not exist yet",
            dir.display()
        ));
    }
    if let Ok(mut entries) = std::fs::read_dir(dir)
        && entries.next().is_some()
    {
        return Err(anyhow!(
            "--out {} is not empty: give a new folder (or remove this one)",
            dir.display()
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        anyhow!(
            "cannot create {}: {e}; give a writable --out folder",
            dir.display()
        )
    })?;
    Ok(())
}

impl Output {
    /// Create the folder (it must not exist or be empty) and write the first `summary.json`,
    /// which proves it writable before anything is measured. Errors are one line with the fix.
    pub fn create(dir: PathBuf, summary: Summary) -> anyhow::Result<Self> {
        prepare_dir(&dir)?;
        let out = Self {
            dir,
            summary,
            results: BTreeMap::new(),
        };
        out.write_summary().map_err(|e| {
            anyhow!(
                "cannot write in {}: {e}; give a writable --out folder",
                out.dir.display()
            )
        })?;
        Ok(out)
    }

    /// The run folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The summary as written so far.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// Add a warning to the summary (written with the next update).
    pub fn warn(&mut self, w: String) {
        if !self.summary.warnings.contains(&w) {
            self.summary.warnings.push(w);
        }
    }

    /// Store one round of one point: `<model>/<point>.r<K>.json` and `.hlog`, then the median
    /// round's copy and `summary.json`.
    pub fn record(
        &mut self,
        model: &str,
        point: &str,
        round: usize,
        mut result: PointResult,
    ) -> io::Result<()> {
        let dir = self.dir.join(model);
        std::fs::create_dir_all(&dir)?;
        let base = format!("{point}.r{round}");
        result.write_json(&dir.join(format!("{base}.json")))?;
        result
            .report
            .write_hlog(&dir.join(format!("{base}.hlog")))?;
        // The `.hlog` is written; its interval histograms are not needed again.
        result.report.intervals.clear();
        let key = (model.to_owned(), point.to_owned());
        let rounds = self.results.entry(key).or_default();
        rounds.push((round, result));
        let refs: Vec<(usize, &PointResult)> = rounds.iter().map(|(k, r)| (*k, r)).collect();
        let file = format!("{model}/{point}.json");
        if let Some(s) = PointSummary::from_rounds(point, file, &refs) {
            for ext in ["json", "hlog"] {
                let from = dir.join(format!("{point}.r{}.{ext}", s.median_round));
                let bytes = std::fs::read(&from)?;
                loadgen::write_atomically(&dir.join(format!("{point}.{ext}")), &bytes)?;
            }
            let m = self.model_mut(model);
            match m.points.iter_mut().find(|p| p.point == point) {
                Some(p) => *p = s,
                None => m.points.push(s),
            }
            let order: Vec<String> = self.summary.points.iter().map(|p| p.name.clone()).collect();
            let m = self.model_mut(model);
            m.points
                .sort_by_key(|p| order.iter().position(|n| *n == p.point));
        }
        self.write_summary()
    }

    /// Store the `explain` pass's result of one point: whole in `<model>/<point>.explain.json`
    /// (its own figures, measured with the counters on), and its `explain` copied into
    /// `<model>/<point>.json`, the point's median round. Counts that could not be taken become
    /// a summary warning with the reason.
    pub fn record_explain(
        &mut self,
        model: &str,
        point: &str,
        result: PointResult,
    ) -> io::Result<()> {
        let dir = self.dir.join(model);
        std::fs::create_dir_all(&dir)?;
        result.write_json(&dir.join(format!("{point}.explain.json")))?;
        match &result.explain {
            None => {
                if let Some(w) = result
                    .report
                    .warnings
                    .iter()
                    .find(|w| w.starts_with("kernel counts"))
                {
                    self.warn(w.clone());
                }
            }
            Some(e) => {
                let median = dir.join(format!("{point}.json"));
                if let Ok(mut m) = PointResult::read(&median) {
                    m.explain = Some(e.clone());
                    m.write_json(&median)?;
                }
            }
        }
        self.write_summary()
    }

    /// Record a failed model × point × round.
    pub fn fail(
        &mut self,
        model: &str,
        point: &str,
        round: usize,
        error: String,
    ) -> io::Result<()> {
        self.model_mut(model).failures.push(Failure {
            point: point.to_owned(),
            round,
            error,
        });
        self.write_summary()
    }

    /// The end: `finished` set, `interrupted` as given; written.
    pub fn finish(&mut self, finished: String, interrupted: bool) -> io::Result<()> {
        self.summary.finished = Some(finished);
        self.summary.interrupted = interrupted;
        self.write_summary()
    }

    fn model_mut(&mut self, model: &str) -> &mut ModelSummary {
        let i = self
            .summary
            .models
            .iter()
            .position(|m| m.model == model)
            .unwrap_or_else(|| {
                self.summary.models.push(ModelSummary {
                    model: model.to_owned(),
                    description: String::new(),
                    points: Vec::new(),
                    failures: Vec::new(),
                });
                self.summary.models.len() - 1
            });
        &mut self.summary.models[i]
    }

    fn write_summary(&self) -> io::Result<()> {
        self.summary.write(&self.dir.join("summary.json"))
    }
}
