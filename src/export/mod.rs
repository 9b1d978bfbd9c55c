//! Exporters: one per output format, each over the same loaded runs, so every figure is
//! computed once (in [`crate::record`]) and only formatted here.
//!
//! Deliberately no measuring and no aggregation: an exporter that needs a number the record
//! does not have gets it added to the record, not computed on the side.

pub mod explain;
pub mod fanout;
pub mod html;

use std::path::PathBuf;

mod load;
pub mod sweep;
pub mod table;

pub use load::{Loaded, RUN_POINTS, load, load_any};

use crate::record::{Histograms, Summary};

/// One run as the exporters see it: its summary, the median round's latency histogram of each
/// model × point, and a label to tell runs apart when several are compared.
#[derive(Clone, Debug)]
pub struct LoadedRun {
    /// Short name: the run folder's name, or the file's.
    pub label: String,
    /// Where it came from (a run folder, a `summary.json` or a single result file).
    pub source: PathBuf,
    pub summary: Summary,
    /// Keyed by (model, point); a missing entry means the file was absent or unreadable.
    pub histograms: Histograms,
    /// Each point's `explain` (median round), keyed like `histograms`; a missing entry means
    /// the result has none (not measured, refused, or an older schema).
    pub explains: explain::Explains,
}
