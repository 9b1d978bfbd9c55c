//! `iomodels compare PATH...`: load runs (folders, `summary.json` files or `load --json`
//! results), print the comparison in the asked format, and optionally write the HTML report.
//!
//! Everything specific to the command lives here (flags, which errors are the user's, stdout
//! handling); the loading and the formatting are the library's (`iomodels::export`), so this
//! module deliberately computes and formats nothing itself.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use clap::Args;
use iomodels::export::{
    Loaded, LoadedRun, load_any,
    table::{self, Format, TableOptions},
};

use crate::exit::{CliError, CliResult};

/// Flags of `iomodels compare`.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Run folders, sweep folders, summary.json files, result files from `iomodels load --json`,
    /// or fan-out records from `iomodels fanout --json`.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Show every model's figures as ratios to this model's (same run, same point).
    #[arg(long, value_name = "MODEL")]
    pub baseline: Option<String>,
    /// Also write the HTML report (charts and tables) here, atomically.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Add the kernel counts per request (system calls, context switches, wake-ups, top calls
    /// of server and client): a table per point after the comparison, or an "explain" array
    /// in --format json.
    #[arg(long)]
    pub explain: bool,
}

/// Run the `compare` command.
pub fn run(args: &CompareArgs) -> CliResult {
    // An --html path that cannot be written is found before anything is printed.
    if let Some(path) = &args.html {
        crate::load::outputs::check("--html", path).map_err(CliError::usage)?;
    }
    // Every failure to load is the user's to fix (wrong path, not a result): exit 2.
    let mut runs = Vec::new();
    let mut sweeps = Vec::new();
    let mut fanouts = Vec::new();
    for p in &args.paths {
        match load_any(p).map_err(CliError::usage)? {
            Loaded::Run(r) => runs.push(r),
            Loaded::Sweep(s) => sweeps.push(s),
            Loaded::Fanout(f) => fanouts.push(f),
        }
    }
    let stdout = std::io::stdout();
    if args.html.is_some() && !fanouts.is_empty() && !(runs.is_empty() && sweeps.is_empty()) {
        return Err(CliError::usage(anyhow!(
            "--html draws fan-out records in a report of their own: compare them in a separate command"
        )));
    }
    if args.explain && runs.is_empty() {
        return Err(CliError::usage(anyhow!(
            "--explain: sweeps and fan-out records are measured without kernel counters (they cost server CPU); give a run folder, or count one step with `iomodels load --explain`"
        )));
    }
    if args.explain && args.format == Format::Csv {
        return Err(CliError::usage(anyhow!(
            "--explain: CSV has one row shape and the kernel counts do not fit it; use --format json, table or markdown"
        )));
    }
    let mut text = String::new();
    if !runs.is_empty() || (sweeps.is_empty() && fanouts.is_empty()) {
        let opts = TableOptions {
            format: args.format,
            baseline: args.baseline.clone(),
            styled: args.format == Format::Table && stdout.is_terminal(),
        };
        text = table::render(&runs, &opts).map_err(CliError::usage)?;
        if args.explain {
            text = with_explain(text, &runs, args.format);
        }
    }
    if !sweeps.is_empty() {
        let t = iomodels::export::sweep::table(&sweeps, args.format, args.baseline.as_deref())
            .map_err(CliError::usage)?;
        text.push_str(&t);
    }
    if !fanouts.is_empty() {
        text.push_str(&iomodels::export::fanout::table(&fanouts, args.format));
    }
    // A closed stdout (`| head`) is not an error.
    let _ = stdout.lock().write_all(text.as_bytes());
    if let Some(path) = &args.html {
        let html = if !fanouts.is_empty() {
            iomodels::export::fanout::html(&fanouts)
        } else if runs.is_empty() {
            iomodels::export::sweep::html(&sweeps)
        } else {
            iomodels::export::html::render_with(&runs, &sweeps)
        };
        loadgen::write_atomically(path, html.as_bytes())
            .map_err(|e| CliError::runtime(anyhow!("cannot write {}: {e}", path.display())))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `text` (the comparison in `format`) with the kernel counts added: an `explain` array in the
/// JSON document, a table per point after a table or Markdown.
fn with_explain(text: String, runs: &[LoadedRun], format: Format) -> String {
    use iomodels::export::explain;
    match format {
        Format::Json => match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Object(mut o)) => {
                o.insert("explain".into(), explain::json_rows(runs));
                let mut s = serde_json::to_string_pretty(&o).unwrap_or(text);
                s.push('\n');
                s
            }
            _ => text,
        },
        Format::Markdown => text + &explain::table(runs, true),
        Format::Table | Format::Csv => text + &explain::table(runs, false),
    }
}

/// Write the HTML report of `runs` to `path`, atomically (`compare --html` and `run`).
pub fn write_html(path: &Path, runs: &[LoadedRun]) -> Result<(), CliError> {
    let html = iomodels::export::html::render(runs);
    loadgen::write_atomically(path, html.as_bytes())
        .map_err(|e| CliError::runtime(anyhow!("cannot write {}: {e}", path.display())))
}
