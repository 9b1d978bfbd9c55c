//! The sweep folder: `<model>/<step>.json` and `.hlog` written the moment a step ends, and the
//! sweep's `summary.json` (`iomodels.sweep/1`) rewritten after every step, all atomically (as
//! `run` writes its folder), so an interrupted or failed sweep leaves valid files behind.
//!
//! Deliberately not the exporters: `report.html` and the table are rendered from what this
//! writes.

use std::io;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use iomodels::record::PointResult;
use iomodels::record::sweep::{Step, SweepModel, SweepSummary};

/// The folder of one sweep and its summary so far.
pub struct Output {
    dir: PathBuf,
    summary: SweepSummary,
}

impl Output {
    /// Create the folder (it must not exist or be empty, as for `run`) and write the first
    /// `summary.json`, which proves it writable before anything is measured.
    pub fn create(dir: PathBuf, summary: SweepSummary) -> anyhow::Result<Self> {
        crate::run::output::prepare_dir(&dir)?;
        let out = Self { dir, summary };
        out.write_summary().map_err(|e| {
            anyhow!(
                "cannot write in {}: {e}; give a writable --out folder",
                out.dir.display()
            )
        })?;
        Ok(out)
    }

    /// The sweep folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The summary as written so far.
    pub fn summary(&self) -> &SweepSummary {
        &self.summary
    }

    /// Store one model × step: its result files (when there is a result), its summary entry
    /// (replacing a planned or skipped entry of the same name), the knee, then `summary.json`.
    /// `is_max` puts it in the model's `max` instead of its steps.
    pub fn record(
        &mut self,
        model: &str,
        mut step: Step,
        result: Option<PointResult>,
        is_max: bool,
    ) -> io::Result<()> {
        if let Some(mut r) = result {
            let dir = self.dir.join(model);
            std::fs::create_dir_all(&dir)?;
            r.write_json(&dir.join(format!("{}.json", step.step)))?;
            r.report
                .write_hlog(&dir.join(format!("{}.hlog", step.step)))?;
            r.report.intervals.clear();
            let file = format!("{model}/{}.json", step.step);
            step = step.measured(file, &r);
        }
        let target = self.summary.p99_target_us;
        let m = self.model_mut(model);
        if is_max {
            m.max = Some(step);
        } else {
            match m.steps.iter_mut().find(|s| s.step == step.step) {
                Some(s) => *s = step,
                None => m.steps.push(step),
            }
            m.update_knee(target);
        }
        self.write_summary()
    }

    /// The end: `finished` set, `interrupted` as given; written.
    pub fn finish(&mut self, finished: String, interrupted: bool) -> io::Result<()> {
        self.summary.finished = Some(finished);
        self.summary.interrupted = interrupted;
        self.write_summary()
    }

    fn model_mut(&mut self, model: &str) -> &mut SweepModel {
        if !self.summary.order.iter().any(|m| m == model) {
            self.summary.order.push(model.to_owned());
        }
        self.summary.models.entry(model.to_owned()).or_default()
    }

    fn write_summary(&self) -> io::Result<()> {
        self.summary.write(&self.dir.join("summary.json"))
    }
}
