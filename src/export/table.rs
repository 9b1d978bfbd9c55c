//! The comparison of loaded runs as text: a terminal table, Markdown, CSV or JSON.
//!
//! One table per point, one row per run × model, the columns every figure a reader compares
//! models by (throughput, p50/p99/p99.9, server and client CPU per request, errors). In the
//! table and Markdown forms the best value of each column is marked, the spread over rounds is
//! shown where there were several, `--baseline` adds each model's ratio to one model, and two
//! runs sharing models add a change view (the second against the first, judged against the
//! runs' own round spread). CSV is one undecorated row per run × model × point with every
//! figure; JSON (`iomodels.compare/1`) is the same rows, typed, plus failures and changes.
//!
//! Deliberately no aggregation: every figure is the record's ([`crate::record`]); this module
//! only picks, divides for ratios, and formats. Not the HTML report either (`html.rs`).

use std::fmt::Write as _;

use anyhow::anyhow;
use comfy_table::{Attribute, Cell, CellAlignment, Table, presets};
use serde::Serialize;

use super::LoadedRun;
use crate::record::{ModelSummary, Percentiles, PointSpec, PointSummary, Stat};
use crate::wakeup::WakeUpCost;

/// The schema of the JSON form; bump it when a key changes meaning.
pub const COMPARE_SCHEMA: &str = "iomodels.compare/1.1";

/// Output format of [`render`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table for a terminal (bold best values when styled), legend, notes and failures.
    #[default]
    Table,
    /// The same as Markdown tables (best values in bold).
    Markdown,
    /// One row per run × model × point with every figure; no marks, no legend.
    Csv,
    /// `{"schema", "rows", "failures", "changes"}`: the CSV rows typed (each figure a
    /// `{value, min, max, rounds}`), every failure, and the two-run change view.
    Json,
}

/// What [`render`] produces.
#[derive(Clone, Debug, Default)]
pub struct TableOptions {
    /// Table, Markdown, CSV or JSON.
    pub format: Format,
    /// Show each model's ratio to this model's figure (per run and point).
    pub baseline: Option<String>,
    /// Terminal styling (bold) in the `Table` format; set it only when stdout is a terminal.
    pub styled: bool,
}

/// Render the comparison of `runs`.
///
/// Fails (a user error) only when `opts.baseline` names a model that no run has.
pub fn render(runs: &[LoadedRun], opts: &TableOptions) -> anyhow::Result<String> {
    if let Some(b) = &opts.baseline
        && !runs
            .iter()
            .any(|r| r.summary.models.iter().any(|m| &m.model == b))
    {
        let mut names: Vec<&str> = runs
            .iter()
            .flat_map(|r| r.summary.models.iter().map(|m| m.model.as_str()))
            .collect();
        names.sort_unstable();
        names.dedup();
        return Err(anyhow!(
            "--baseline {b}: no model of that name in these runs; give one of: {}",
            names.join(", ")
        ));
    }
    let baseline = opts.baseline.as_deref();
    Ok(match opts.format {
        Format::Table => text(runs, baseline, false, opts.styled),
        Format::Markdown => text(runs, baseline, true, false),
        Format::Csv => csv(runs, baseline),
        Format::Json => json(runs, baseline),
    })
}

/// Notes for runs whose set-up differs in what moves the figures besides the model: the
/// machine (OS, kernel, CPU, cores), the pinning of servers and generator, the measured and
/// warm-up seconds. One note per difference, naming each run's value; none for one run.
fn setup_differences(runs: &[LoadedRun]) -> Vec<String> {
    fn cpus(c: &Option<Vec<usize>>) -> String {
        match c {
            Some(c) => format!("CPUs {c:?}"),
            None => "unpinned".to_owned(),
        }
    }
    /// What differs, why it matters, and each run's value of it.
    type Aspect = (&'static str, &'static str, fn(&LoadedRun) -> String);
    let aspects: [Aspect; 4] = [
        (
            "machine",
            "their figures compare machines as much as models",
            |r| {
                let h = &r.summary.host;
                format!("{} {} {}, {} cores", h.os, h.kernel, h.cpu, h.cores)
            },
        ),
        (
            "server pinning",
            "a pinned server does not share its CPU with the generator",
            |r| cpus(&r.summary.server_cpus),
        ),
        (
            "generator pinning",
            "a pinned generator does not share its CPU with the server",
            |r| cpus(&r.summary.client_cpus),
        ),
        (
            "timing",
            "longer windows smooth the tails differently",
            |r| {
                format!(
                    "{} s measured after {} s warm-up",
                    r.summary.duration_s, r.summary.warmup_s
                )
            },
        ),
    ];
    let mut notes = Vec::new();
    for (what, why, value) in aspects {
        let values: Vec<String> = runs.iter().map(value).collect();
        if values.iter().any(|v| v != &values[0]) {
            let each: Vec<String> = runs
                .iter()
                .zip(&values)
                .map(|(r, v)| format!("{}: {v}", r.label))
                .collect();
            notes.push(format!(
                "these runs differ in {what} ({}): {why}",
                each.join("; ")
            ));
        }
    }
    notes
}

/// A figure a column shows, with its direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fig {
    Rps,
    P50,
    P99,
    P999,
    ServerCpu,
    ClientCpu,
}

const FIGS: [Fig; 6] = [
    Fig::Rps,
    Fig::P50,
    Fig::P99,
    Fig::P999,
    Fig::ServerCpu,
    Fig::ClientCpu,
];

impl Fig {
    /// The machine name (CSV header stem, JSON key).
    fn key(self) -> &'static str {
        match self {
            Fig::Rps => "throughput_rps",
            Fig::P50 => "p50_us",
            Fig::P99 => "p99_us",
            Fig::P999 => "p99_9_us",
            Fig::ServerCpu => "server_cpu_us",
            Fig::ClientCpu => "client_cpu_us",
        }
    }

    fn header(self) -> &'static str {
        match self {
            Fig::Rps => "req/s",
            Fig::P50 => "p50 µs",
            Fig::P99 => "p99 µs",
            Fig::P999 => "p99.9 µs",
            Fig::ServerCpu => "server CPU µs/req",
            Fig::ClientCpu => "client CPU µs/req",
        }
    }

    fn higher_is_better(self) -> bool {
        self == Fig::Rps
    }

    fn stat(self, p: &PointSummary) -> Option<&Stat> {
        match self {
            Fig::Rps => Some(&p.throughput_rps),
            Fig::P50 => Some(&p.latency_us.p50),
            Fig::P99 => Some(&p.latency_us.p99),
            Fig::P999 => Some(&p.latency_us.p99_9),
            Fig::ServerCpu => p.server_cpu_us.as_ref(),
            Fig::ClientCpu => Some(&p.client_cpu_us),
        }
    }

    fn fmt(self, v: f64) -> String {
        match self {
            Fig::Rps if v >= 1e6 => format!("{:.2}M", v / 1e6),
            Fig::Rps if v >= 1e4 => format!("{:.1}k", v / 1e3),
            Fig::Rps if v >= 1e3 => format!("{:.2}k", v / 1e3),
            Fig::Rps => format!("{v:.0}"),
            Fig::ServerCpu | Fig::ClientCpu => format!("{v:.2}"),
            _ if v < 10.0 => format!("{v:.2}"),
            _ if v < 1000.0 => format!("{v:.1}"),
            _ => format!("{v:.0}"),
        }
    }

    /// Whether `a` is better than `b`.
    fn better(self, a: f64, b: f64) -> bool {
        if self.higher_is_better() {
            a > b
        } else {
            a < b
        }
    }
}

/// One run × model × point.
struct Line<'a> {
    run: &'a LoadedRun,
    model: &'a ModelSummary,
    point: &'a PointSummary,
    /// The baseline model's same point in the same run, unless this is the baseline.
    base: Option<&'a PointSummary>,
    is_base: bool,
}

impl Line<'_> {
    fn ratio(&self, f: Fig) -> Option<f64> {
        let v = f.stat(self.point)?.value;
        let b = f.stat(self.base?)?.value;
        (b > 0.0).then(|| v / b)
    }
}

/// Point names in first-seen order over the runs, with the first spec found for each.
fn points(runs: &[LoadedRun]) -> Vec<(&str, Option<&PointSpec>)> {
    let mut out: Vec<(&str, Option<&PointSpec>)> = Vec::new();
    for r in runs {
        let named = r.summary.points.iter().map(|p| p.name.as_str());
        let measured = r
            .summary
            .models
            .iter()
            .flat_map(|m| m.points.iter().map(|p| p.point.as_str()));
        for name in named.chain(measured) {
            if !out.iter().any(|(n, _)| *n == name) {
                out.push((name, r.summary.points.iter().find(|p| p.name == name)));
            }
        }
    }
    out
}

fn lines<'a>(runs: &'a [LoadedRun], point: &str, baseline: Option<&str>) -> Vec<Line<'a>> {
    let mut out = Vec::new();
    for run in runs {
        let base = baseline.and_then(|b| {
            run.summary
                .models
                .iter()
                .find(|m| m.model == b)
                .and_then(|m| m.point(point))
        });
        for model in &run.summary.models {
            if let Some(p) = model.point(point) {
                let is_base = baseline == Some(model.model.as_str());
                out.push(Line {
                    run,
                    model,
                    point: p,
                    base: if is_base { None } else { base },
                    is_base,
                });
            }
        }
    }
    out
}

/// Every line of every point, in point order.
fn all_lines<'a>(runs: &'a [LoadedRun], baseline: Option<&str>) -> Vec<Line<'a>> {
    points(runs)
        .into_iter()
        .flat_map(|(name, _)| lines(runs, name, baseline))
        .collect()
}

/// The best value of a column, when there is something to choose between: at least two
/// values and not all equal.
fn best(
    values: impl Iterator<Item = Option<f64>>,
    better: impl Fn(f64, f64) -> bool,
) -> Option<f64> {
    let v: Vec<f64> = values.flatten().collect();
    if v.len() < 2 || v.iter().all(|x| *x == v[0]) {
        return None;
    }
    v.into_iter()
        .reduce(|a, b| if better(b, a) { b } else { a })
}

fn spec_title(name: &str, spec: Option<&PointSpec>) -> String {
    let Some(s) = spec else {
        return name.to_owned();
    };
    let mut t = format!(
        "{name}: {} {} × {} B, depth {}",
        s.connections,
        s.carrier(),
        s.size,
        s.depth
    );
    if let Some(f) = s.rate_of_throughput {
        let _ = write!(t, ", open loop at {:.0}% of the throughput rate", f * 100.0);
    } else if let Some(r) = s.rate_rps {
        let _ = write!(t, ", open loop at {r:.0}/s");
    }
    if name == crate::wakeup::SPINNING {
        t.push_str(", busy-polling generator");
    }
    t
}

/// The table and Markdown forms.
fn text(runs: &[LoadedRun], baseline: Option<&str>, markdown: bool, styled: bool) -> String {
    let mut out = String::new();
    let bullet = if markdown { "- " } else { "" };
    for r in runs {
        let s = &r.summary;
        let _ = writeln!(
            out,
            "{bullet}run {}: {}, {} cores, {} {}; {} round{} of {} s per point; {}",
            r.label,
            s.host.cpu,
            s.host.cores,
            s.host.os,
            s.host.kernel,
            s.rounds,
            if s.rounds == 1 { "" } else { "s" },
            s.duration_s,
            r.source.display()
        );
    }
    let several = runs.len() > 1;
    let mut any_spread = false;
    let mut notes = setup_differences(runs);
    for (name, spec) in points(runs) {
        let lines = lines(runs, name, baseline);
        if lines.is_empty() {
            continue;
        }
        let mut table = titled_table(&mut out, &spec_title(name, spec), markdown, styled);
        let mut header = Vec::new();
        if several {
            header.push("run");
        }
        header.push("model");
        header.extend(FIGS.iter().map(|f| f.header()));
        header.push("errors");
        table.set_header(header);
        let bests: Vec<Option<f64>> = FIGS
            .iter()
            .map(|&f| {
                best(
                    lines.iter().map(|l| f.stat(l.point).map(|s| s.value)),
                    |a, b| f.better(a, b),
                )
            })
            .collect();
        let best_errors = best(lines.iter().map(|l| Some(l.point.errors as f64)), |a, b| {
            a < b
        });
        for l in &lines {
            let mut row = Vec::new();
            if several {
                row.push(Cell::new(&l.run.label));
            }
            row.push(Cell::new(if l.is_base {
                format!("{} (baseline)", l.model.model)
            } else {
                l.model.model.clone()
            }));
            for (i, &f) in FIGS.iter().enumerate() {
                let Some(s) = f.stat(l.point) else {
                    row.push(Cell::new("–").set_alignment(CellAlignment::Right));
                    continue;
                };
                let is_best = bests[i] == Some(s.value);
                let mut t = mark(&f.fmt(s.value), is_best, markdown);
                if s.rounds.len() > 1 {
                    any_spread = true;
                    let _ = write!(t, " ~{:.0}%", s.spread() * 100.0);
                }
                if let Some(r) = l.ratio(f) {
                    let _ = write!(t, " ×{r:.2}");
                }
                row.push(styled_cell(t, is_best && styled));
            }
            let e = l.point.errors as f64;
            let is_best = best_errors == Some(e);
            row.push(styled_cell(
                mark(&l.point.errors.to_string(), is_best, markdown),
                is_best && styled,
            ));
            table.add_row(row);
            let who = if several {
                format!("{} {} {name}", l.run.label, l.model.model)
            } else {
                format!("{} {name}", l.model.model)
            };
            if l.point.saturated_rounds > 0 {
                // The first round's reason, so the note says why without opening a file.
                let why = l.point.saturation.first().map_or(String::new(), |w| {
                    format!("; {}", w.replacen("saturated: ", "", 1))
                });
                notes.push(format!(
                    "{who}: saturated in {} of {} round{}: requests did not go out on time, and \
                     the corrected latency includes that wait{why}",
                    l.point.saturated_rounds,
                    l.point.rounds,
                    if l.point.rounds == 1 { "" } else { "s" }
                ));
            }
            if l.point.interrupted {
                notes.push(format!(
                    "{who}: interrupted (Ctrl-C); the figures cover what ran"
                ));
            }
            if let Some(loss) = &l.point.udp_loss_ratio {
                let spread = if loss.rounds.len() > 1 {
                    format!(
                        " (median of {} rounds, {:.3}–{:.3}%)",
                        loss.rounds.len(),
                        loss.min * 100.0,
                        loss.max * 100.0
                    )
                } else {
                    String::new()
                };
                notes.push(format!(
                    "{who}: UDP loss {:.3}%{spread}: datagrams with no echo within the timeout, \
                     not in the throughput or the latency",
                    loss.value * 100.0
                ));
            }
        }
        let _ = writeln!(out, "{table}");
    }
    wake_up_text(&mut out, runs, markdown, styled);
    let mut legend = vec![if markdown {
        "**bold**: best in its column".to_owned()
    } else {
        "*: best in its column".to_owned()
    }];
    if any_spread {
        legend.push("~N%: the rounds' highest was N% above their lowest".to_owned());
    }
    legend.push("req/s is the best round, CPU the least, latencies the median".to_owned());
    if let Some(b) = baseline {
        legend.push(format!("×R: R times {b}'s figure"));
    }
    let _ = writeln!(out, "\n{}", legend.join(" · "));

    for r in runs {
        if r.summary.interrupted {
            notes.push(format!(
                "run {} was stopped early (Ctrl-C): it covers what ran",
                r.label
            ));
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(out, "\nnotes:");
        for n in &notes {
            let _ = writeln!(out, "{}{n}", if markdown { "- " } else { "  " });
        }
    }
    let failures = failures(runs);
    if !failures.is_empty() {
        let _ = writeln!(out, "\nfailures:");
        for f in &failures {
            let _ = writeln!(
                out,
                "{}{}{} {} round {}: {}",
                if markdown { "- " } else { "  " },
                if several {
                    format!("{} ", f.run)
                } else {
                    String::new()
                },
                f.model,
                f.point,
                f.round,
                f.error
            );
        }
    }
    if let Some(changes) = changes(runs) {
        change_text(&mut out, runs, &changes, markdown, styled);
    }
    out
}

/// The wake-up cost per round trip of every run × model that measured both `latency` and
/// `latency-spin` ([`crate::wakeup`]): both p50s and their difference, in one table.
fn wake_up_text(out: &mut String, runs: &[LoadedRun], markdown: bool, styled: bool) {
    let several = runs.len() > 1;
    let rows: Vec<(&LoadedRun, &ModelSummary, WakeUpCost)> = runs
        .iter()
        .flat_map(|r| {
            r.summary
                .models
                .iter()
                .filter_map(move |m| WakeUpCost::of(m).map(|c| (r, m, c)))
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let mut table = titled_table(
        out,
        "wake-up cost per round trip: latency p50 (sleeping generator) − latency-spin p50 \
         (busy-polling generator)",
        markdown,
        styled,
    );
    let mut header = Vec::new();
    if several {
        header.push("run");
    }
    header.extend([
        "model",
        "latency p50 µs",
        "latency-spin p50 µs",
        "wake-up µs",
    ]);
    table.set_header(header);
    for (r, m, c) in rows {
        let mut row = Vec::new();
        if several {
            row.push(Cell::new(&r.label));
        }
        row.push(Cell::new(&m.model));
        for v in [
            c.sleeping_p50.value,
            c.spinning_p50.value,
            c.per_round_trip_us(),
        ] {
            row.push(Cell::new(Fig::P50.fmt(v)).set_alignment(CellAlignment::Right));
        }
        table.add_row(row);
    }
    let _ = writeln!(out, "{table}");
}

/// Write `title` (a Markdown heading or a plain line) and start a table in the matching preset;
/// bold only when `styled` (a terminal).
fn titled_table(out: &mut String, title: &str, markdown: bool, styled: bool) -> Table {
    if markdown {
        let _ = writeln!(out, "\n### {title}\n");
    } else {
        let _ = writeln!(out, "\n{title}");
    }
    let mut table = Table::new();
    table.load_preset(if markdown {
        presets::ASCII_MARKDOWN
    } else {
        presets::UTF8_FULL_CONDENSED
    });
    if styled {
        table.enforce_styling();
    } else {
        table.force_no_tty();
    }
    table
}

fn mark(t: &str, best: bool, markdown: bool) -> String {
    match (best, markdown) {
        (false, _) => t.to_owned(),
        (true, true) => format!("**{t}**"),
        (true, false) => format!("{t}*"),
    }
}

fn styled_cell(t: String, bold: bool) -> Cell {
    let c = Cell::new(t).set_alignment(CellAlignment::Right);
    if bold {
        c.add_attribute(Attribute::Bold)
    } else {
        c
    }
}

/// A failed model × point × round, with its run.
#[derive(Serialize)]
struct FailureRow<'a> {
    run: &'a str,
    model: &'a str,
    point: &'a str,
    round: usize,
    error: &'a str,
}

fn failures(runs: &[LoadedRun]) -> Vec<FailureRow<'_>> {
    runs.iter()
        .flat_map(|r| {
            r.summary.models.iter().flat_map(move |m| {
                m.failures.iter().map(move |f| FailureRow {
                    run: &r.label,
                    model: &m.model,
                    point: &f.point,
                    round: f.round,
                    error: &f.error,
                })
            })
        })
        .collect()
}

/// One figure of one model × point, second run against first.
#[derive(Debug, Serialize)]
struct FigChange {
    figure: &'static str,
    before: f64,
    after: f64,
    /// after / before − 1.
    change: f64,
    /// The larger of the two runs' round spreads (max/min − 1); null when both had one round.
    noise: Option<f64>,
    /// |change| exceeds `noise`.
    beyond_noise: bool,
    /// The change is an improvement (more throughput, less latency or CPU).
    better: bool,
}

#[derive(Debug, Serialize)]
struct Change<'a> {
    /// The model, or `first → second` when two single-model runs are paired.
    model: String,
    point: &'a str,
    figures: Vec<FigChange>,
}

/// The change view: with exactly two runs, every model × point both measured. Two runs of one
/// model each (two `load --json` results, named after their files) are paired even when the
/// names differ: that is the before/after a user means by comparing two result files.
fn changes(runs: &[LoadedRun]) -> Option<Vec<Change<'_>>> {
    let [a, b] = runs else { return None };
    let (ma_all, mb_all) = (&a.summary.models, &b.summary.models);
    let pairs: Vec<(&ModelSummary, &ModelSummary, String)> = match (&ma_all[..], &mb_all[..]) {
        ([ma], [mb]) if ma.model != mb.model => {
            vec![(ma, mb, format!("{} → {}", ma.model, mb.model))]
        }
        _ => mb_all
            .iter()
            .filter_map(|mb| {
                let ma = ma_all.iter().find(|m| m.model == mb.model)?;
                Some((ma, mb, mb.model.clone()))
            })
            .collect(),
    };
    let mut out = Vec::new();
    for (ma, mb, model) in pairs {
        for pb in &mb.points {
            let Some(pa) = ma.point(&pb.point) else {
                continue;
            };
            let figures = FIGS
                .iter()
                .filter_map(|&f| {
                    let (sa, sb) = (f.stat(pa)?, f.stat(pb)?);
                    if sa.value <= 0.0 {
                        return None;
                    }
                    let change = sb.value / sa.value - 1.0;
                    let noise = (sa.rounds.len() > 1 || sb.rounds.len() > 1)
                        .then(|| sa.spread().max(sb.spread()));
                    Some(FigChange {
                        figure: f.key(),
                        before: sa.value,
                        after: sb.value,
                        change,
                        noise,
                        beyond_noise: noise.is_some_and(|n| change.abs() > n),
                        better: f.better(sb.value, sa.value),
                    })
                })
                .collect();
            out.push(Change {
                model: model.clone(),
                point: &pb.point,
                figures,
            });
        }
    }
    (!out.is_empty()).then_some(out)
}

fn change_text(
    out: &mut String,
    runs: &[LoadedRun],
    changes: &[Change],
    markdown: bool,
    styled: bool,
) {
    let title = format!("change: {} against {}", runs[1].label, runs[0].label);
    let mut table = titled_table(out, &title, markdown, styled);
    let mut header = vec!["model", "point"];
    header.extend(FIGS.iter().map(|f| f.header()));
    table.set_header(header);
    let mut judged = false;
    for c in changes {
        let mut row = vec![Cell::new(&c.model), Cell::new(c.point)];
        for &f in &FIGS {
            let Some(fc) = c.figures.iter().find(|fc| fc.figure == f.key()) else {
                row.push(Cell::new("–").set_alignment(CellAlignment::Right));
                continue;
            };
            judged |= fc.noise.is_some();
            let mut t = format!("{:+.1}%", fc.change * 100.0);
            if fc.beyond_noise {
                t.push_str(if fc.better { " better" } else { " worse" });
            }
            let t = if fc.beyond_noise && !fc.better && markdown {
                format!("**{t}**")
            } else {
                t
            };
            row.push(styled_cell(t, fc.beyond_noise && !fc.better && styled));
        }
        table.add_row(row);
    }
    let _ = writeln!(out, "{table}");
    let _ = writeln!(
        out,
        "\n+N%: the second run's figure against the first's; better/worse: beyond the larger \
         round spread of the two runs"
    );
    if !judged {
        let _ = writeln!(
            out,
            "one round each: no spread to judge the changes against, so none is called better \
             or worse; measure several rounds"
        );
    }
}

/// One run × model × point, every figure: the CSV and JSON row.
#[derive(Serialize)]
struct Row<'a> {
    run: &'a str,
    source: String,
    model: &'a str,
    point: &'a str,
    connections: Option<usize>,
    size: Option<usize>,
    depth: Option<usize>,
    rounds: usize,
    throughput_rps: &'a Stat,
    latency_us: &'a Percentiles,
    server_cpu_us: Option<&'a Stat>,
    client_cpu_us: &'a Stat,
    /// UDP points: lost / (received + lost) per round (1.1); absent for TCP.
    #[serde(skip_serializing_if = "Option::is_none")]
    udp_loss_ratio: Option<&'a Stat>,
    errors: u64,
    saturated_rounds: usize,
    interrupted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline: Option<&'a str>,
    /// Ratio to the baseline per figure key; absent without `--baseline`.
    #[serde(skip_serializing_if = "Option::is_none")]
    vs_baseline: Option<std::collections::BTreeMap<&'static str, Option<f64>>>,
}

fn row<'a>(l: &Line<'a>, baseline: Option<&'a str>) -> Row<'a> {
    let spec = l
        .run
        .summary
        .points
        .iter()
        .find(|s| s.name == l.point.point);
    Row {
        run: &l.run.label,
        source: l.run.source.display().to_string(),
        model: &l.model.model,
        point: &l.point.point,
        connections: spec.map(|s| s.connections),
        size: spec.map(|s| s.size),
        depth: spec.map(|s| s.depth),
        rounds: l.point.rounds,
        throughput_rps: &l.point.throughput_rps,
        latency_us: &l.point.latency_us,
        server_cpu_us: l.point.server_cpu_us.as_ref(),
        client_cpu_us: &l.point.client_cpu_us,
        udp_loss_ratio: l.point.udp_loss_ratio.as_ref(),
        errors: l.point.errors,
        saturated_rounds: l.point.saturated_rounds,
        interrupted: l.point.interrupted,
        baseline,
        vs_baseline: baseline.map(|_| FIGS.iter().map(|&f| (f.key(), l.ratio(f))).collect()),
    }
}

fn json(runs: &[LoadedRun], baseline: Option<&str>) -> String {
    #[derive(Serialize)]
    struct Doc<'a> {
        schema: &'static str,
        rows: Vec<Row<'a>>,
        failures: Vec<FailureRow<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        changes: Option<Vec<Change<'a>>>,
    }
    let doc = Doc {
        schema: COMPARE_SCHEMA,
        rows: all_lines(runs, baseline)
            .iter()
            .map(|l| row(l, baseline))
            .collect(),
        failures: failures(runs),
        changes: changes(runs),
    };
    // Plain data with string keys: serialisation cannot fail.
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}

/// RFC 4180 quoting: only fields that need it.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The CSV's figure columns; each is followed by `_min` and `_max` columns (empty where the
/// point has no such figure: `udp_loss_ratio` for TCP).
const CSV_STATS: [&str; 10] = [
    "throughput_rps",
    "p50_us",
    "p90_us",
    "p99_us",
    "p99_9_us",
    "p99_99_us",
    "max_us",
    "server_cpu_us_per_request",
    "client_cpu_us_per_request",
    "udp_loss_ratio",
];

fn csv_stats(p: &PointSummary) -> [Option<&Stat>; 10] {
    let l = &p.latency_us;
    [
        Some(&p.throughput_rps),
        Some(&l.p50),
        Some(&l.p90),
        Some(&l.p99),
        Some(&l.p99_9),
        Some(&l.p99_99),
        Some(&l.max),
        p.server_cpu_us.as_ref(),
        Some(&p.client_cpu_us),
        p.udp_loss_ratio.as_ref(),
    ]
}

fn csv(runs: &[LoadedRun], baseline: Option<&str>) -> String {
    let mut header: Vec<String> = [
        "run",
        "source",
        "model",
        "point",
        "connections",
        "size",
        "depth",
        "rounds",
    ]
    .map(String::from)
    .to_vec();
    for n in CSV_STATS {
        header.extend([n.to_owned(), format!("{n}_min"), format!("{n}_max")]);
    }
    header.extend(["errors", "saturated_rounds", "interrupted"].map(String::from));
    if baseline.is_some() {
        header.push("baseline".into());
        header.extend(FIGS.iter().map(|f| format!("{}_vs_baseline", f.key())));
    }
    let mut out = String::new();
    let push = |out: &mut String, fields: &[String]| {
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    };
    push(&mut out, &header);
    let num = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    let opt = |v: Option<usize>| v.map(|v| v.to_string()).unwrap_or_default();
    for l in &all_lines(runs, baseline) {
        let r = row(l, baseline);
        let mut f = vec![
            r.run.to_owned(),
            r.source.clone(),
            r.model.to_owned(),
            r.point.to_owned(),
            opt(r.connections),
            opt(r.size),
            opt(r.depth),
            r.rounds.to_string(),
        ];
        for s in csv_stats(l.point) {
            f.extend([
                num(s.map(|s| s.value)),
                num(s.map(|s| s.min)),
                num(s.map(|s| s.max)),
            ]);
        }
        f.extend([
            r.errors.to_string(),
            r.saturated_rounds.to_string(),
            r.interrupted.to_string(),
        ]);
        if let Some(b) = baseline {
            f.push(b.to_owned());
            f.extend(FIGS.iter().map(|&fig| num(l.ratio(fig))));
        }
        push(&mut out, &f);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::export::load::tests::summary;
    use crate::record::Failure;
    use crate::record::tests::fixture;

    fn run(label: &str, models: &[(&str, &[(f64, f64)])]) -> LoadedRun {
        let results: Vec<(&str, Vec<_>)> = models
            .iter()
            .map(|(m, rounds)| {
                (
                    *m,
                    rounds
                        .iter()
                        .map(|&(rps, us)| fixture(m, rps, us))
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        let borrowed: Vec<(&str, &[_])> = results.iter().map(|(m, r)| (*m, r.as_slice())).collect();
        LoadedRun {
            label: label.into(),
            source: PathBuf::from(format!("results/{label}")),
            summary: summary(&borrowed),
            histograms: Default::default(),
            explains: Default::default(),
        }
    }

    fn opts(format: Format, baseline: Option<&str>) -> TableOptions {
        TableOptions {
            format,
            baseline: baseline.map(String::from),
            styled: false,
        }
    }

    /// One run: epoll is faster and quicker than mio, with three rounds each.
    fn one() -> Vec<LoadedRun> {
        vec![run(
            "a",
            &[
                ("epoll", &[(2000.0, 40.0), (1900.0, 42.0), (1950.0, 41.0)]),
                ("mio", &[(1500.0, 50.0), (1400.0, 55.0), (1450.0, 52.0)]),
            ],
        )]
    }

    fn row_of<'a>(text: &'a str, model: &str) -> &'a str {
        text.lines()
            .find(|l| l.contains(&format!(" {model} ")))
            .unwrap_or_else(|| panic!("no row for {model} in\n{text}"))
    }

    /// Two runs that differ in pinning and kernel get one note per difference, naming each
    /// run's value; identical set-ups get none.
    #[test]
    fn runs_set_up_differently_are_said_to_differ() {
        let same = [one().remove(0), {
            let mut b = one().remove(0);
            b.label = "b".into();
            b
        }];
        let text = render(&same, &opts(Format::Table, None)).unwrap();
        assert!(!text.contains("these runs differ"), "{text}");
        let mut b = one().remove(0);
        b.label = "b".into();
        b.summary.server_cpus = None;
        b.summary.host.kernel = "6.1.0".into();
        let text = render(&[one().remove(0), b], &opts(Format::Markdown, None)).unwrap();
        let notes: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("these runs differ"))
            .collect();
        assert_eq!(notes.len(), 2, "{text}");
        assert!(
            notes[0].contains("machine") && notes[0].contains("b: ") && notes[0].contains("6.1.0"),
            "{text}"
        );
        assert!(
            notes[1].contains("server pinning")
                && notes[1].contains("a: CPUs [0]")
                && notes[1].contains("b: unpinned"),
            "{text}"
        );
    }

    #[test]
    fn a_udp_point_gets_its_loss_line_and_a_tcp_point_none() {
        let mut rounds = vec![
            fixture("epoll", 1000.0, 40.0),
            fixture("epoll", 900.0, 41.0),
        ];
        for (r, lost) in rounds.iter_mut().zip([10u64, 30]) {
            r.report.workload.proto = loadgen::Proto::Udp;
            let mut u = loadgen::Udp {
                sent: 1000,
                received: 1000 - lost,
                lost,
                ..Default::default()
            };
            u.loss_ratio = u.ratio();
            r.report.udp = Some(u);
        }
        let runs = vec![LoadedRun {
            label: "u".into(),
            source: PathBuf::from("results/u"),
            summary: summary(&[("epoll", rounds.as_slice())]),
            histograms: Default::default(),
            explains: Default::default(),
        }];
        let t = render(&runs, &opts(Format::Table, None)).unwrap();
        assert!(
            t.contains("UDP loss 2.000% (median of 2 rounds, 1.000–3.000%)"),
            "{t}"
        );
        // The machine-readable forms carry it too, and a TCP point has none.
        let j: serde_json::Value =
            serde_json::from_str(&render(&runs, &opts(Format::Json, None)).unwrap()).unwrap();
        assert_eq!(j["rows"][0]["udp_loss_ratio"]["value"], 0.02, "{j}");
        let csv = render(&runs, &opts(Format::Csv, None)).unwrap();
        let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
        let at = header.iter().position(|h| *h == "udp_loss_ratio").unwrap();
        let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
        assert_eq!(
            (row[at], row[at + 1], row[at + 2]),
            ("0.02", "0.01", "0.03")
        );
        let t = render(&one(), &opts(Format::Table, None)).unwrap();
        assert!(!t.contains("UDP loss"), "{t}");
        let j: serde_json::Value =
            serde_json::from_str(&render(&one(), &opts(Format::Json, None)).unwrap()).unwrap();
        assert!(j["rows"][0].get("udp_loss_ratio").is_none(), "{j}");
        let csv = render(&one(), &opts(Format::Csv, None)).unwrap();
        let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
        assert_eq!(row[at], "");
    }

    #[test]
    fn table_marks_the_best_of_each_column_and_shows_the_spread() {
        let t = render(&one(), &opts(Format::Table, None)).unwrap();
        let epoll = row_of(&t, "epoll");
        let mio = row_of(&t, "mio");
        // Throughput: best round 2000 (spread 2000/1900 − 1 ≈ 5%), and the best of the column.
        assert!(epoll.contains("2.00k* ~5%"), "{t}");
        assert!(mio.contains("1.50k ~7%") && !mio.contains("1.50k*"), "{t}");
        // CPU per request: less is better, and epoll did more requests with the same CPU.
        assert!(epoll.contains("150.00*"), "{t}");
        // Nothing to choose between in errors (all 0): no mark.
        assert!(!epoll.contains("0*  ") && !t.contains(" 0* "), "{t}");
        assert!(
            t.contains("throughput: 50 connections × 512 B, depth 1"),
            "{t}"
        );
        assert!(
            t.contains("*: best in its column") && t.contains("~N%"),
            "{t}"
        );
        assert!(!t.contains('\x1b'), "no styling when not asked: {t}");
        assert!(!t.contains("change:"), "one run has no change view");
        let styled = render(
            &one(),
            &TableOptions {
                styled: true,
                ..opts(Format::Table, None)
            },
        )
        .unwrap();
        assert!(styled.contains('\x1b'), "bold on a terminal");
    }

    #[test]
    fn markdown_is_tables_with_bold_bests() {
        let t = render(&one(), &opts(Format::Markdown, None)).unwrap();
        assert!(t.contains("### throughput"), "{t}");
        assert!(t.contains("| model"), "{t}");
        assert!(t.contains("|---"), "{t}");
        assert!(row_of(&t, "epoll").contains("**2.00k** ~5%"), "{t}");
        assert!(t.contains("**bold**: best"), "{t}");
    }

    #[test]
    fn csv_is_one_plain_row_per_run_model_point() {
        let t = render(&one(), &opts(Format::Csv, None)).unwrap();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        let header: Vec<&str> = lines[0].split(',').collect();
        let epoll: Vec<&str> = lines[1].split(',').collect();
        assert_eq!(header.len(), epoll.len());
        let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
        assert_eq!(epoll[col("model")], "epoll");
        assert_eq!(epoll[col("point")], "throughput");
        assert_eq!(epoll[col("connections")], "50");
        assert_eq!(epoll[col("rounds")], "3");
        assert_eq!(epoll[col("throughput_rps")], "2000");
        assert_eq!(epoll[col("throughput_rps_min")], "1900");
        let cpu: f64 = epoll[col("client_cpu_us_per_request")].parse().unwrap();
        assert!((cpu - 150.0).abs() < 1e-9, "{cpu}");
        assert!(!t.contains('*') && !t.contains('~'), "no decoration: {t}");
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
    }

    #[test]
    fn json_is_typed_rows_failures_and_no_changes_for_one_run() {
        let mut runs = one();
        runs[0].summary.models[1].failures.push(Failure {
            point: "heavy".into(),
            round: 2,
            error: "server exited: killed".into(),
        });
        let v: serde_json::Value =
            serde_json::from_str(&render(&runs, &opts(Format::Json, None)).unwrap()).unwrap();
        assert_eq!(v["schema"], COMPARE_SCHEMA);
        assert_eq!(v["rows"].as_array().unwrap().len(), 2);
        assert_eq!(v["rows"][0]["model"], "epoll");
        assert_eq!(v["rows"][0]["throughput_rps"]["value"], 2000.0);
        assert_eq!(
            v["rows"][0]["latency_us"]["p99"]["rounds"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        assert_eq!(v["failures"][0]["model"], "mio");
        assert_eq!(v["failures"][0]["round"], 2);
        assert!(v.get("changes").is_none());
        assert!(v["rows"][0].get("vs_baseline").is_none());
    }

    #[test]
    fn failures_are_listed_under_the_table() {
        let mut runs = one();
        runs[0].summary.models[1].failures.push(Failure {
            point: "heavy".into(),
            round: 2,
            error: "server exited: killed".into(),
        });
        let t = render(&runs, &opts(Format::Table, None)).unwrap();
        assert!(
            t.contains("failures:\n  mio heavy round 2: server exited: killed"),
            "{t}"
        );
    }

    #[test]
    fn baseline_ratios() {
        let runs = one();
        let t = render(&runs, &opts(Format::Table, Some("mio"))).unwrap();
        // 2000 / 1500 req/s; 150 / 200 µs of client CPU per request.
        assert!(row_of(&t, "epoll").contains("×1.33"), "{t}");
        assert!(row_of(&t, "epoll").contains("×0.75"), "{t}");
        assert!(row_of(&t, "mio").contains("mio (baseline)"), "{t}");
        assert!(!row_of(&t, "mio").contains('×'), "{t}");
        let v: serde_json::Value =
            serde_json::from_str(&render(&runs, &opts(Format::Json, Some("mio"))).unwrap())
                .unwrap();
        let r = v["rows"][0]["vs_baseline"]["throughput_rps"]
            .as_f64()
            .unwrap();
        assert!((r - 2000.0 / 1500.0).abs() < 1e-9);
        assert!(v["rows"][1]["vs_baseline"]["throughput_rps"].is_null());
        let csv = render(&runs, &opts(Format::Csv, Some("mio"))).unwrap();
        assert!(
            csv.lines()
                .next()
                .unwrap()
                .ends_with("client_cpu_us_vs_baseline")
        );
        let e = render(&runs, &opts(Format::Table, Some("iocp"))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--baseline iocp: no model of that name in these runs; give one of: epoll, mio"
        );
    }

    #[test]
    fn two_runs_show_a_change_view_judged_against_their_spread() {
        let before = run(
            "before",
            &[
                ("epoll", &[(2000.0, 40.0), (1900.0, 40.0), (1950.0, 40.0)]),
                ("mio", &[(1500.0, 50.0), (1400.0, 50.0), (1450.0, 50.0)]),
            ],
        );
        // epoll: 50% more throughput, far beyond the ~5% spread; mio: 2% more, within it.
        let after = run(
            "after",
            &[
                ("epoll", &[(3000.0, 40.0), (2900.0, 40.0), (2950.0, 40.0)]),
                ("mio", &[(1530.0, 50.0), (1430.0, 50.0), (1480.0, 50.0)]),
            ],
        );
        let runs = vec![before, after];
        let t = render(&runs, &opts(Format::Table, None)).unwrap();
        assert!(t.contains("change: after against before"), "{t}");
        let view = &t[t.find("change:").unwrap()..];
        let epoll = row_of(view, "epoll");
        assert!(epoll.contains("+50.0% better"), "{view}");
        // Less CPU per request for the same CPU: −33% client CPU, also beyond the spread.
        assert!(epoll.contains("-33.3% better"), "{view}");
        let mio = row_of(view, "mio");
        assert!(mio.contains("+2.0%") && !mio.contains("better"), "{view}");
        // Both runs' rows are in the main tables, with a run column.
        assert!(t.contains("│ before ") && t.contains("│ after "), "{t}");
        let v: serde_json::Value =
            serde_json::from_str(&render(&runs, &opts(Format::Json, None)).unwrap()).unwrap();
        let c = &v["changes"][0];
        assert_eq!(c["model"], "epoll");
        assert_eq!(c["figures"][0]["figure"], "throughput_rps");
        assert_eq!(c["figures"][0]["beyond_noise"], true);
        assert_eq!(c["figures"][0]["better"], true);
        assert_eq!(v["changes"][1]["figures"][0]["beyond_noise"], false);
    }

    #[test]
    fn one_round_runs_are_compared_but_not_judged() {
        let runs = vec![
            run("a", &[("epoll", &[(2000.0, 40.0)])]),
            run("b", &[("epoll", &[(1000.0, 40.0)])]),
        ];
        let t = render(&runs, &opts(Format::Table, None)).unwrap();
        let view = &t[t.find("change:").unwrap()..];
        let epoll = row_of(view, "epoll");
        assert!(epoll.contains("-50.0%") && !epoll.contains("worse"), "{t}");
        assert!(t.contains("one round each"), "{t}");
        assert!(!t.contains('~'), "no spread for one round: {t}");
    }

    #[test]
    fn two_runs_without_shared_models_have_no_change_view() {
        let runs = vec![
            run(
                "a",
                &[("epoll", &[(2000.0, 40.0)]), ("poll", &[(2000.0, 40.0)])],
            ),
            run("b", &[("mio", &[(1000.0, 40.0)])]),
        ];
        let t = render(&runs, &opts(Format::Table, None)).unwrap();
        assert!(!t.contains("change:"), "{t}");
    }

    #[test]
    fn two_single_model_runs_are_paired_whatever_their_names() {
        let runs = vec![
            run("before", &[("before", &[(2000.0, 40.0)])]),
            run("after", &[("after", &[(3000.0, 40.0)])]),
        ];
        let t = render(&runs, &opts(Format::Table, None)).unwrap();
        let view = &t[t.find("change:").unwrap()..];
        assert!(row_of(view, "before → after").contains("+50.0%"), "{view}");
    }
}
