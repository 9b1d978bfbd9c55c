//! A sweep as a reader sees it: loaded from its folder, as a table per sweep (terminal,
//! Markdown, CSV or JSON, for `compare` and the end of `sweep`), and as `report.html` (the
//! curves drawn with plotters' SVG backend, then every figure in tables, then the metadata).
//!
//! Rate sweep: latency against achieved throughput for every model on one chart (log latency
//! axis), p99 first, then p50 and p99.9, each model's knee ringed. Idle sweep: server CPU per
//! request, throughput and p99 against idle connections (log axis, 0 drawn a decade left of the
//! first count), skipped steps marked. Connections sweep: throughput and p99 against active
//! connections. Deliberately no figure of its own: every number comes from
//! [`crate::record::sweep`], including the knee.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use comfy_table::{Cell, CellAlignment, Table, presets};
use plotters::coord::Shift;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use serde::Serialize;

use super::html::{
    CSS, FONT, HALF, PALETTE, WIDE, esc, grouped, legend_corner, log_range, log_ticks, mesh, num,
    series_labels, si, svg, swatch,
};
use super::table::Format;
use crate::record::sweep::{SWEEP_SCHEMA, Step, SweepKind, SweepModel, SweepSummary};

/// One sweep folder as the exporters see it.
#[derive(Clone, Debug)]
pub struct LoadedSweep {
    /// Short name: the folder's name.
    pub label: String,
    /// The `summary.json` it came from.
    pub source: PathBuf,
    pub summary: SweepSummary,
}

/// The `summary.json` of a sweep at `path` (a sweep folder, or its summary file), if `path` is
/// one; `None` for anything else (a run folder, a result file, a path that does not exist).
pub fn summary_path(path: &Path) -> Option<PathBuf> {
    let file = if path.is_dir() {
        path.join("summary.json")
    } else {
        path.to_path_buf()
    };
    #[derive(serde::Deserialize)]
    struct Schema {
        schema: Option<String>,
    }
    let text = std::fs::read_to_string(&file).ok()?;
    let s: Schema = serde_json::from_str(&text).ok()?;
    (s.schema.as_deref() == Some(SWEEP_SCHEMA)).then_some(file)
}

/// Load a sweep folder or its `summary.json`. Errors name the path and what is accepted.
pub fn load(path: &Path) -> anyhow::Result<LoadedSweep> {
    let file = summary_path(path).ok_or_else(|| {
        anyhow!(
            "{} is not a sweep (no summary.json of schema {SWEEP_SCHEMA:?}): give the folder `iomodels sweep` wrote",
            path.display()
        )
    })?;
    let summary = SweepSummary::read(&file)?;
    let folder = file.parent().unwrap_or(Path::new("."));
    let label = folder
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .or_else(|| {
            std::fs::canonicalize(folder)
                .ok()
                .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
        })
        .unwrap_or_else(|| folder.display().to_string());
    Ok(LoadedSweep {
        label,
        source: file,
        summary,
    })
}

/// The column of a step that is its x: target rate, idle count or connections.
fn x_cell(kind: SweepKind, s: &Step) -> String {
    match kind {
        SweepKind::Rate => match (s.target_rps, s.fraction) {
            (Some(t), Some(f)) => format!("{} ({:.0} %)", grouped(t), f * 100.0),
            (None, Some(f)) => format!("({:.0} %)", f * 100.0),
            _ => "closed loop".into(),
        },
        SweepKind::Idle => match (s.idle, s.idle_held) {
            (Some(i), Some(h)) if h < i => {
                format!("{} of {}", grouped(h as f64), grouped(i as f64))
            }
            (Some(i), _) => grouped(i as f64),
            (None, _) => "–".into(),
        },
        SweepKind::Connections => grouped(s.connections as f64),
    }
}

fn x_header(kind: SweepKind) -> &'static str {
    match kind {
        SweepKind::Rate => "target req/s (of max)",
        SweepKind::Idle => "idle conns",
        SweepKind::Connections => "connections",
    }
}

/// What the last column says about a step: skipped, failed, saturated, interrupted, notes.
fn note(s: &Step) -> String {
    let mut n = Vec::new();
    if let Some(why) = &s.skipped {
        n.push(format!("skipped: {why}"));
    }
    if let Some(why) = &s.failed {
        n.push(format!("failed: {why}"));
    }
    if s.interrupted {
        n.push("interrupted".into());
    }
    if s.saturated {
        // The generator's reasons, each starting "saturated: ...": the first says which rule.
        match s.notes.iter().find(|w| w.starts_with("saturated:")) {
            Some(why) => n.push(why.clone()),
            None => n.push("saturated".into()),
        }
    }
    if let Some(w) = s
        .notes
        .iter()
        .find(|w| w.starts_with("the server held") || w.contains("idle connection"))
    {
        n.push(w.clone());
    }
    n.join("; ")
}

fn opt(v: Option<f64>, f: fn(f64) -> String) -> String {
    v.map_or("–".into(), f)
}

fn one_decimal(v: f64) -> String {
    format!("{v:.1}")
}

fn two_decimals(v: f64) -> String {
    format!("{v:.2}")
}

/// The rows of one sweep: each model's maximum (rate) and steps.
fn rows(s: &SweepSummary) -> Vec<(&str, &Step)> {
    s.ordered()
        .flat_map(|(name, m)| m.max.iter().chain(&m.steps).map(move |st| (name, st)))
        .collect()
}

/// The sweeps as text in `format`: per sweep a table of every model × step (and, for a rate
/// sweep, a table of the knees); CSV one row per sweep × model × step; JSON
/// `{"schema": "iomodels.compare-sweep/1", "sweeps": [{label, source, summary, ratios}]}`.
///
/// With a `baseline` model every step also shows its throughput and server CPU per request
/// as ratios to the baseline's at the step of the same name in the same sweep (and the knee
/// as a ratio of the baseline's knee): columns `req/s ×` and `CPU ×` in a table, `rps_ratio`
/// and `cpu_ratio` in CSV, `ratios` {model: {step: {rps, cpu}}} in JSON (null without a
/// baseline). Errors when the baseline is not a model of every sweep.
pub fn table(
    sweeps: &[LoadedSweep],
    format: Format,
    baseline: Option<&str>,
) -> anyhow::Result<String> {
    if let Some(b) = baseline
        && let Some(sw) = sweeps.iter().find(|sw| !sw.summary.models.contains_key(b))
    {
        return Err(anyhow!(
            "--baseline {b}: not a model of sweep {} (its models: {})",
            sw.label,
            sw.summary.order.join(", ")
        ));
    }
    Ok(match format {
        Format::Table | Format::Markdown => text(sweeps, format == Format::Markdown, baseline),
        Format::Csv => csv(sweeps, baseline),
        Format::Json => json(sweeps, baseline),
    })
}

/// A step's throughput and server CPU per request as ratios to `baseline`'s step of the same
/// name (`None` where either side lacks the figure).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
struct Ratio {
    rps: Option<f64>,
    cpu: Option<f64>,
}

fn ratio(s: &SweepSummary, baseline: &str, st: &Step) -> Ratio {
    let Some(b) = s.models.get(baseline) else {
        return Ratio::default();
    };
    let base = b
        .max
        .iter()
        .chain(&b.steps)
        .find(|x| x.step == st.step && x.is_measured());
    let div = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && st.is_measured() => Some(a / b),
        _ => None,
    };
    Ratio {
        rps: div(st.achieved_rps, base.and_then(|x| x.achieved_rps)),
        cpu: div(st.server_cpu, base.and_then(|x| x.server_cpu)),
    }
}

fn times(v: f64) -> String {
    format!("{v:.2}×")
}

fn new_table(markdown: bool) -> Table {
    let mut t = Table::new();
    t.load_preset(if markdown {
        presets::ASCII_MARKDOWN
    } else {
        presets::UTF8_FULL_CONDENSED
    });
    t.force_no_tty();
    t
}

fn right(s: String) -> Cell {
    Cell::new(s).set_alignment(CellAlignment::Right)
}

fn text(sweeps: &[LoadedSweep], markdown: bool, baseline: Option<&str>) -> String {
    let mut out = String::new();
    for sw in sweeps {
        let s = &sw.summary;
        let shape = match s.connections {
            Some(c) => format!("{c} connections × {} B", s.size),
            None => format!("{} B per request", s.size),
        };
        let title = format!(
            "sweep {}: {} ({shape}, {} s per step{})",
            s.sweep.name(),
            sw.label,
            num(s.duration_s),
            s.p99_target_us
                .map(|t| format!(", knee at p99 ≤ {} µs", num(t)))
                .unwrap_or_default()
        );
        if markdown {
            let _ = writeln!(out, "\n### {title}\n");
        } else {
            let _ = writeln!(out, "\n{title}");
        }
        let mut t = new_table(markdown);
        let mut header = vec![
            "model".to_owned(),
            "step".to_owned(),
            x_header(s.sweep).to_owned(),
            "req/s".to_owned(),
            "p50 µs".to_owned(),
            "p99 µs".to_owned(),
            "p99.9 µs".to_owned(),
            "server CPU µs/req".to_owned(),
        ];
        if let Some(b) = baseline {
            header.push(format!("req/s × {b}"));
            header.push(format!("CPU × {b}"));
        }
        header.push("note".to_owned());
        t.set_header(header);
        for (model, st) in rows(s) {
            let l = st.latency_us;
            let mut row = vec![
                Cell::new(model),
                Cell::new(&st.step),
                right(x_cell(s.sweep, st)),
                right(opt(st.achieved_rps, grouped)),
                right(opt(l.map(|l| l.p50), one_decimal)),
                right(opt(l.map(|l| l.p99), one_decimal)),
                right(opt(l.map(|l| l.p99_9), one_decimal)),
                right(opt(st.server_cpu, two_decimals)),
            ];
            if let Some(b) = baseline {
                let r = ratio(s, b, st);
                row.push(right(opt(r.rps, times)));
                row.push(right(opt(r.cpu, times)));
            }
            row.push(Cell::new(note(st)));
            t.add_row(row);
        }
        let _ = writeln!(out, "{t}");
        if s.sweep == SweepKind::Rate {
            let mut k = new_table(markdown);
            let mut header = vec![
                "model".to_owned(),
                "closed-loop max req/s".to_owned(),
                "knee req/s".to_owned(),
                "knee % of max".to_owned(),
                "knee step".to_owned(),
                "p99 at the knee µs".to_owned(),
            ];
            let base_knee = baseline
                .and_then(|b| s.models.get(b))
                .and_then(|m| m.knee_rps);
            if let Some(b) = baseline {
                header.push(format!("knee × {b}"));
            }
            k.set_header(header);
            for (model, m) in s.ordered() {
                let max = m.max.as_ref().and_then(|x| x.achieved_rps);
                let at = m.knee_step.as_deref().and_then(|n| m.step(n));
                let knee_ratio = match (m.knee_rps, base_knee) {
                    (Some(k), Some(b)) if b > 0.0 => Some(k / b),
                    _ => None,
                };
                let mut row = vec![
                    Cell::new(model),
                    right(opt(max, grouped)),
                    right(opt(m.knee_rps, grouped)),
                    right(match (m.knee_rps, max) {
                        (Some(k), Some(x)) if x > 0.0 => format!("{:.0} %", k / x * 100.0),
                        _ => "–".into(),
                    }),
                    Cell::new(m.knee_step.clone().unwrap_or_else(|| "none".into())),
                    right(opt(
                        at.and_then(|s| s.latency_us).map(|l| l.p99),
                        one_decimal,
                    )),
                ];
                if baseline.is_some() {
                    row.push(right(opt(knee_ratio, times)));
                }
                k.add_row(row);
            }
            if markdown {
                out.push('\n');
            }
            let _ = writeln!(out, "{k}");
            let _ = writeln!(
                out,
                "knee: the highest achieved rate among steps that reached ≥ 95 % of their target \
                 with p99 ≤ {} µs (none: no step did)",
                num(s.p99_target_us.unwrap_or(0.0))
            );
        }
        if !s.warnings.is_empty() {
            let _ = writeln!(out, "warnings: {}", s.warnings.join("; "));
        }
        if s.interrupted {
            let _ = writeln!(out, "interrupted: the figures cover what ran");
        }
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn csv(sweeps: &[LoadedSweep], baseline: Option<&str>) -> String {
    let mut out = String::from(
        "sweep,label,model,step,fraction,target_rps,idle,idle_held,connections,achieved_rps,\
         p50_us,p99_us,p99_9_us,server_cpu_us,saturated,skipped,failed,knee_rps",
    );
    if baseline.is_some() {
        out.push_str(",rps_ratio,cpu_ratio");
    }
    out.push('\n');
    let f = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    for sw in sweeps {
        let s = &sw.summary;
        for (model, st) in rows(s) {
            let knee = s.models.get(model).and_then(|m| m.knee_rps);
            let l = st.latency_us;
            let fields = [
                s.sweep.name().to_owned(),
                csv_field(&sw.label),
                csv_field(model),
                csv_field(&st.step),
                f(st.fraction),
                f(st.target_rps),
                st.idle.map(|i| i.to_string()).unwrap_or_default(),
                st.idle_held.map(|i| i.to_string()).unwrap_or_default(),
                st.connections.to_string(),
                f(st.achieved_rps),
                f(l.map(|l| l.p50)),
                f(l.map(|l| l.p99)),
                f(l.map(|l| l.p99_9)),
                f(st.server_cpu),
                st.saturated.to_string(),
                csv_field(st.skipped.as_deref().unwrap_or("")),
                csv_field(st.failed.as_deref().unwrap_or("")),
                f(knee),
            ];
            let mut line = fields.join(",");
            if let Some(b) = baseline {
                let r = ratio(s, b, st);
                let _ = write!(line, ",{},{}", f(r.rps), f(r.cpu));
            }
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

fn json(sweeps: &[LoadedSweep], baseline: Option<&str>) -> String {
    type Ratios<'a> = BTreeMap<&'a str, BTreeMap<&'a str, Ratio>>;
    #[derive(Serialize)]
    struct One<'a> {
        label: &'a str,
        source: String,
        summary: &'a SweepSummary,
        /// With a baseline: every model's steps as ratios to the baseline's.
        ratios: Option<Ratios<'a>>,
    }
    #[derive(Serialize)]
    struct All<'a> {
        schema: &'static str,
        baseline: Option<&'a str>,
        sweeps: Vec<One<'a>>,
    }
    fn ratios<'a>(s: &'a SweepSummary, baseline: Option<&str>) -> Option<Ratios<'a>> {
        let b = baseline?;
        let mut all: Ratios<'_> = BTreeMap::new();
        for (model, st) in rows(s) {
            all.entry(model)
                .or_default()
                .insert(st.step.as_str(), ratio(s, b, st));
        }
        Some(all)
    }
    let all = All {
        schema: "iomodels.compare-sweep/1",
        baseline,
        sweeps: sweeps
            .iter()
            .map(|s| One {
                label: &s.label,
                source: s.source.display().to_string(),
                summary: &s.summary,
                ratios: ratios(&s.summary, baseline),
            })
            .collect(),
    };
    let mut s = serde_json::to_string_pretty(&all).unwrap_or_default();
    s.push('\n');
    s
}

/// One model's curve on a chart.
struct Line {
    label: String,
    colour: RGBColor,
    /// (x, y, hollow: a saturated step), in step order.
    pts: Vec<(f64, f64, bool)>,
    /// The knee's (x, y), ringed.
    knee: Option<(f64, f64)>,
    /// x of each skipped step, marked × along the bottom.
    skipped: Vec<f64>,
}

/// What one chart shows besides its lines.
struct Chart<'a> {
    x_desc: &'a str,
    y_desc: &'a str,
    x_label: &'a dyn Fn(f64) -> String,
    /// A horizontal dashed line (y, legend label): the p99 target.
    hline: Option<(f64, String)>,
    /// Map x and y to 0..1 along their axes (for placing the legend).
    norm_x: &'a dyn Fn(f64) -> f64,
    norm_y: &'a dyn Fn(f64) -> f64,
    /// Where × marks of skipped steps sit.
    y_skip: f64,
    x_range: (f64, f64),
}

fn draw<X, Y>(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    x: X,
    y: Y,
    lines: &[Line],
    c: &Chart<'_>,
) -> Result<(), Box<dyn Error>>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(root)
        .margin(12)
        .margin_right(24)
        .x_label_area_size(46)
        .y_label_area_size(74)
        .build_cartesian_2d(x, y)?;
    mesh(&mut chart, c.x_desc, c.y_desc, &|v| (c.x_label)(*v), &|v| {
        si(*v)
    })?;
    if let Some((yv, label)) = &c.hline {
        let style = BLACK.mix(0.55).stroke_width(1);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(c.x_range.0, *yv), (c.x_range.1, *yv)],
                6,
                4,
                style,
            ))?
            .label(label.as_str())
            .legend(move |(x, y)| DashedPathElement::new(vec![(x, y), (x + 22, y)], 5, 3, style));
    }
    for l in lines {
        let style = l.colour.stroke_width(2);
        chart
            .draw_series(LineSeries::new(l.pts.iter().map(|p| (p.0, p.1)), style))?
            .label(l.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], style));
        chart.draw_series(l.pts.iter().map(|&(x, y, hollow)| {
            if hollow {
                Circle::new((x, y), 4, l.colour.stroke_width(2))
            } else {
                Circle::new((x, y), 4, l.colour.filled())
            }
        }))?;
        if let Some(k) = l.knee {
            chart.draw_series(std::iter::once(Circle::new(
                k,
                10,
                l.colour.stroke_width(2),
            )))?;
            chart.draw_series(std::iter::once(
                EmptyElement::at(k)
                    + Text::new(
                        "knee",
                        (8, -24),
                        TextStyle::from((FONT, 13).into_font()).color(&l.colour),
                    ),
            ))?;
        }
        chart.draw_series(l.skipped.iter().map(|&x| {
            EmptyElement::at((x, c.y_skip))
                + Text::new(
                    "×",
                    (-5, -10),
                    TextStyle::from((FONT, 20).into_font()).color(&l.colour),
                )
        }))?;
    }
    let corner = legend_corner(
        lines.iter().map(|l| {
            let norm = l
                .pts
                .iter()
                .map(|p| ((c.norm_x)(p.0), (c.norm_y)(p.1)))
                .collect();
            (l.label.as_str(), norm)
        }),
        chart.plotting_area().dim_in_pixel(),
    );
    series_labels(&mut chart, corner)?;
    Ok(())
}

/// The x axis of a chart: linear from 0 (rate), or log over the step values with 0 drawn a
/// decade left of the first nonzero one (idle, connections).
enum XAxis {
    Linear { hi: f64 },
    Log { ticks: Vec<f64>, zero_at: f64 },
}

impl XAxis {
    /// Where `x` is drawn.
    fn pos(&self, x: f64) -> f64 {
        match self {
            XAxis::Log { zero_at, .. } if x <= 0.0 => *zero_at,
            _ => x,
        }
    }

    fn range(&self) -> (f64, f64) {
        match self {
            XAxis::Linear { hi } => (0.0, *hi),
            XAxis::Log { ticks, zero_at } => {
                let hi = ticks.iter().copied().fold(*zero_at, f64::max);
                (
                    zero_at.min(ticks.iter().copied().fold(f64::INFINITY, f64::min)) / 1.6,
                    hi * 1.6,
                )
            }
        }
    }
}

/// One chart of `lines` (x, y already picked), `log_y` or linear from 0.
fn chart(
    lines: &[Line],
    axis: &XAxis,
    log_y: bool,
    x_desc: &str,
    y_desc: &str,
    hline: Option<(f64, String)>,
    size: (u32, u32),
) -> String {
    let ys = || {
        lines
            .iter()
            .flat_map(|l| l.pts.iter().map(|p| p.1))
            .chain(hline.as_ref().map(|h| h.0))
    };
    let (x_lo, x_hi) = axis.range();
    let zero = match axis {
        XAxis::Log { zero_at, .. } => Some(*zero_at),
        XAxis::Linear { .. } => None,
    };
    let x_label = move |v: f64| match zero {
        Some(z) if (v / z - 1.0).abs() < 1e-9 => "0".to_owned(),
        _ => si(v),
    };
    let norm_x = move |v: f64| match zero {
        Some(_) => (v / x_lo).ln() / (x_hi / x_lo).ln(),
        None => v / x_hi,
    };
    svg(size, |root| {
        let (y_lo, y_hi) = if log_y {
            log_range(ys())
        } else {
            (0.0, ys().fold(0.0f64, f64::max).max(1e-9) * 1.15)
        };
        let norm_y = move |v: f64| {
            if log_y {
                (v / y_lo).ln() / (y_hi / y_lo).ln()
            } else {
                v / y_hi
            }
        };
        let y_skip = if log_y { y_lo * 1.02 } else { 0.0 };
        let spec = Chart {
            x_desc,
            y_desc,
            x_label: &x_label,
            hline: hline.clone(),
            norm_x: &norm_x,
            norm_y: &norm_y,
            y_skip,
            x_range: (x_lo, x_hi),
        };
        // Built only when drawn: log ticks over a range from 0 would never end.
        let y_log = || {
            (y_lo..y_hi)
                .log_scale()
                .with_key_points(log_ticks(y_lo, y_hi))
        };
        let y_lin = || -> RangedCoordf64 { (y_lo..y_hi).into() };
        match axis {
            XAxis::Linear { .. } => {
                let x: RangedCoordf64 = (x_lo..x_hi).into();
                if log_y {
                    draw(root, x, y_log(), lines, &spec)
                } else {
                    draw(root, x, y_lin(), lines, &spec)
                }
            }
            XAxis::Log { ticks, zero_at } => {
                let mut keys = ticks.clone();
                keys.push(*zero_at);
                keys.sort_by(f64::total_cmp);
                keys.dedup();
                let x = (x_lo..x_hi).log_scale().with_key_points(keys);
                if log_y {
                    draw(root, x, y_log(), lines, &spec)
                } else {
                    draw(root, x, y_lin(), lines, &spec)
                }
            }
        }
    })
}

/// Models of a sweep with their colours, in the order given.
fn coloured(s: &SweepSummary) -> Vec<(&str, RGBColor, &SweepModel)> {
    s.ordered()
        .enumerate()
        .map(|(i, (n, m))| (n, PALETTE[i % PALETTE.len()], m))
        .collect()
}

/// The lines of a sweep: y picked from each measured step, x from [`Step::x`] placed on `axis`.
fn lines(s: &SweepSummary, axis: &XAxis, y: fn(&Step) -> Option<f64>) -> Vec<Line> {
    coloured(s)
        .into_iter()
        .map(|(name, colour, m)| {
            let pts: Vec<(f64, f64, bool)> = m
                .steps
                .iter()
                .filter(|st| st.is_measured())
                .filter_map(|st| Some((axis.pos(st.x(s.sweep)?), y(st)?, st.saturated)))
                .filter(|p| p.1 > 0.0 || !matches!(axis, XAxis::Linear { .. }))
                .collect();
            let knee = m
                .knee_step
                .as_deref()
                .and_then(|k| m.step(k))
                .and_then(|st| Some((axis.pos(st.x(s.sweep)?), y(st)?)));
            let skipped = m
                .steps
                .iter()
                .filter(|st| st.skipped.is_some())
                .filter_map(|st| st.x(s.sweep).map(|x| axis.pos(x)))
                .collect();
            Line {
                label: name.to_owned(),
                colour,
                pts,
                knee,
                skipped,
            }
        })
        .filter(|l| !l.pts.is_empty() || !l.skipped.is_empty())
        .collect()
}

fn figure(out: &mut String, wide: bool, svg: &str, caption: &str) {
    let _ = writeln!(
        out,
        "<figure{}>\n{svg}<figcaption>{}</figcaption>\n</figure>",
        if wide { " class=\"wide\"" } else { "" },
        esc(caption)
    );
}

fn rate_section(out: &mut String, s: &SweepSummary) {
    let hi = s
        .models
        .values()
        .flat_map(|m| m.steps.iter().filter(|st| st.is_measured()))
        .filter_map(|st| st.achieved_rps)
        .fold(0.0f64, f64::max)
        .max(1.0)
        * 1.08;
    let axis = XAxis::Linear { hi };
    let target = s.p99_target_us.unwrap_or(1000.0);
    type Get = fn(&Step) -> Option<f64>;
    let charts: [(&str, Get, bool, &str); 3] = [
        (
            "p99 latency µs (log scale)",
            |st| st.latency_us.map(|l| l.p99),
            true,
            "p99 latency (corrected for coordinated omission) against the throughput each model \
             achieved: lower and further right is better. Each line climbs as its rate nears \
             what the model can serve; the ring is its knee, the highest achieved rate whose \
             p99 stays at or under the dashed target; hollow markers are steps the generator \
             marked saturated. Lines join the steps in the order of their target rate, so a \
             line that turns back to the left is a model that achieved less when asked for \
             more: it is past its ceiling (overload), or the machine stalled it.",
        ),
        (
            "p50 latency µs (log scale)",
            |st| st.latency_us.map(|l| l.p50),
            false,
            "Median latency against achieved throughput (same steps, the knee ringed).",
        ),
        (
            "p99.9 latency µs (log scale)",
            |st| st.latency_us.map(|l| l.p99_9),
            false,
            "p99.9 latency against achieved throughput (same steps, the knee ringed).",
        ),
    ];
    out.push_str("<div class=\"figs\">\n");
    for (y_desc, get, first, caption) in charts {
        let ls = lines(s, &axis, get);
        let hline = first.then(|| (target, format!("p99 target {} µs", num(target))));
        let svg = chart(
            &ls,
            &axis,
            true,
            "achieved requests per second",
            y_desc,
            hline,
            if first { (WIDE, 460) } else { (HALF, 400) },
        );
        figure(out, first, &svg, caption);
    }
    out.push_str("</div>\n");
}

fn log_axis(s: &SweepSummary) -> XAxis {
    let mut xs: Vec<f64> = s
        .models
        .values()
        .flat_map(|m| m.steps.iter().filter_map(|st| st.x(s.sweep)))
        .collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let first = xs.iter().copied().find(|x| *x > 0.0).unwrap_or(100.0);
    XAxis::Log {
        ticks: xs.into_iter().filter(|x| *x > 0.0).collect(),
        zero_at: first / 10.0,
    }
}

fn idle_section(out: &mut String, s: &SweepSummary) {
    let axis = log_axis(s);
    out.push_str("<div class=\"figs\">\n");
    let cpu = lines(s, &axis, |st| st.server_cpu);
    figure(
        out,
        true,
        &chart(
            &cpu,
            &axis,
            false,
            "idle connections besides 50 active (log scale; 0 at the left)",
            "server CPU µs per request",
            None,
            (WIDE, 460),
        ),
        "Server CPU per request against idle connections: flat is what epoll, kqueue, io_uring \
         and IOCP were built for; select and poll scan every watched descriptor on every call, \
         so their cost grows with the idle ones. × marks a step skipped for this model (its \
         reason is in the table: select stops at FD_SETSIZE, a step over the open-file limit).",
    );
    let rps = lines(s, &axis, |st| st.achieved_rps);
    figure(
        out,
        false,
        &chart(
            &rps,
            &axis,
            false,
            "idle connections (log scale)",
            "requests per second",
            None,
            (HALF, 400),
        ),
        "Throughput of the 50 active connections against idle ones: higher is better.",
    );
    let p99 = lines(s, &axis, |st| st.latency_us.map(|l| l.p99));
    figure(
        out,
        false,
        &chart(
            &p99,
            &axis,
            true,
            "idle connections (log scale)",
            "p99 latency µs (log scale)",
            None,
            (HALF, 400),
        ),
        "p99 latency of the active connections against idle ones: lower is better.",
    );
    out.push_str("</div>\n");
}

fn connections_section(out: &mut String, s: &SweepSummary) {
    let axis = log_axis(s);
    out.push_str("<div class=\"figs\">\n");
    let rps = lines(s, &axis, |st| st.achieved_rps);
    figure(
        out,
        false,
        &chart(
            &rps,
            &axis,
            false,
            "active connections (log scale)",
            "requests per second",
            None,
            (HALF, 400),
        ),
        "Throughput against active connections (closed loop, 512 B): higher is better.",
    );
    let p99 = lines(s, &axis, |st| st.latency_us.map(|l| l.p99));
    figure(
        out,
        false,
        &chart(
            &p99,
            &axis,
            true,
            "active connections (log scale)",
            "p99 latency µs (log scale)",
            None,
            (HALF, 400),
        ),
        "p99 latency against active connections: lower is better; with more connections each \
         waits behind the others, so every line rises.",
    );
    out.push_str("</div>\n");
}

fn table_html(out: &mut String, s: &SweepSummary) {
    let colours = coloured(s);
    let _ = writeln!(
        out,
        "<h3>Every step</h3>\n<div class=\"scroll\"><table>\n<thead><tr><th>model</th>\
         <th class=\"text\">step</th><th>{}</th><th>req/s</th><th>p50 µs</th><th>p99 µs</th>\
         <th>p99.9 µs</th><th>server CPU µs/req</th><th>client CPU µs/req</th>\
         <th class=\"text\">note</th></tr></thead>\n<tbody>",
        esc(x_header(s.sweep))
    );
    for (model, colour, m) in &colours {
        for st in m.max.iter().chain(&m.steps) {
            let l = st.latency_us;
            let knee = m.knee_step.as_deref() == Some(st.step.as_str());
            let _ = writeln!(
                out,
                "<tr><td>{}{}</td><td class=\"text\">{}{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"text\">{}</td></tr>",
                swatch(*colour),
                esc(model),
                esc(&st.step),
                if knee { " <b>(knee)</b>" } else { "" },
                esc(&x_cell(s.sweep, st)),
                esc(&opt(st.achieved_rps, grouped)),
                esc(&opt(l.map(|l| l.p50), one_decimal)),
                esc(&opt(l.map(|l| l.p99), one_decimal)),
                esc(&opt(l.map(|l| l.p99_9), one_decimal)),
                esc(&opt(st.server_cpu, two_decimals)),
                esc(&opt(st.client_cpu, two_decimals)),
                esc(&note(st)),
            );
        }
    }
    out.push_str("</tbody></table></div>\n");
    if s.sweep == SweepKind::Rate {
        out.push_str(
            "<h3>Knees</h3>\n<div class=\"scroll\"><table>\n<thead><tr><th>model</th>\
             <th>closed-loop max req/s</th><th>knee req/s</th><th>knee % of max</th>\
             <th class=\"text\">knee step</th></tr></thead>\n<tbody>\n",
        );
        for (model, colour, m) in &colours {
            let max = m.max.as_ref().and_then(|x| x.achieved_rps);
            let _ = writeln!(
                out,
                "<tr><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"text\">{}</td></tr>",
                swatch(*colour),
                esc(model),
                esc(&opt(max, grouped)),
                esc(&opt(m.knee_rps, grouped)),
                match (m.knee_rps, max) {
                    (Some(k), Some(x)) if x > 0.0 => format!("{:.0} %", k / x * 100.0),
                    _ => "–".into(),
                },
                esc(m.knee_step.as_deref().unwrap_or("none: no step qualified")),
            );
        }
        out.push_str("</tbody></table></div>\n");
    }
}

fn metadata_html(out: &mut String, sw: &LoadedSweep) {
    let s = &sw.summary;
    let cpus = |c: &Option<Vec<usize>>| match c {
        Some(v) if !v.is_empty() => v.iter().map(usize::to_string).collect::<Vec<_>>().join(","),
        _ => "not pinned".into(),
    };
    let rows: Vec<(&str, String)> = vec![
        ("source", sw.source.display().to_string()),
        (
            "host",
            format!(
                "{} {}, {}, {} cores",
                s.host.os, s.host.kernel, s.host.cpu, s.host.cores
            ),
        ),
        ("server CPUs", cpus(&s.server_cpus)),
        ("client CPUs", cpus(&s.client_cpus)),
        (
            "per step",
            format!(
                "{} s after {} s warm-up",
                num(s.duration_s),
                num(s.warmup_s)
            ),
        ),
        (
            "open-file limit",
            s.descriptor_limit.map_or("none".into(), |l| l.to_string()),
        ),
        ("tool version", s.tool_version.clone()),
        (
            "git commit",
            s.git_commit.clone().unwrap_or_else(|| "unknown".into()),
        ),
        ("started", s.started.clone()),
        (
            "finished",
            s.finished.clone().unwrap_or_else(|| "not finished".into()),
        ),
        ("command", s.command.clone()),
        (
            "warnings",
            if s.warnings.is_empty() {
                "none".into()
            } else {
                s.warnings.join("; ")
            },
        ),
        (
            "interrupted",
            if s.interrupted { "yes" } else { "no" }.into(),
        ),
    ];
    out.push_str("<dl>\n");
    for (k, v) in rows {
        let _ = writeln!(out, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(&v));
    }
    out.push_str("</dl>\n");
}

/// The report of `sweeps` as one self-contained HTML document (inline CSS and SVG, no script,
/// no network): per sweep its charts, every step in a table, the knees (rate), its metadata.
pub fn html(sweeps: &[LoadedSweep]) -> String {
    let labels: Vec<&str> = sweeps.iter().map(|s| s.label.as_str()).collect();
    let title = format!("iomodels sweep report: {}", labels.join(", "));
    let mut out = String::with_capacity(128 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{0}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n<h1>{0}</h1>\n",
        esc(&title)
    );
    out.push_str(&sections(sweeps));
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

/// The sweeps' sections of a report (a heading, charts, table and metadata per sweep), for
/// [`html`] and for a report that shows runs and sweeps together.
pub fn sections(sweeps: &[LoadedSweep]) -> String {
    let mut out = String::with_capacity(128 * 1024);
    for sw in sweeps {
        let s = &sw.summary;
        let what = match s.sweep {
            SweepKind::Rate => format!(
                "Latency against load: each model's closed-loop maximum ({} connections × {} B), \
                 then open-loop steps at fractions of it.",
                s.connections.unwrap_or(50),
                s.size
            ),
            SweepKind::Idle => format!(
                "Cost against idle connections: {} active connections × {} B closed loop, plus \
                 idle connections that are open and silent.",
                s.connections.unwrap_or(50),
                s.size
            ),
            SweepKind::Connections => {
                format!("Active connections, closed loop, {} B per request.", s.size)
            }
        };
        let _ = writeln!(
            out,
            "<h2>sweep {}: {}</h2>\n<p class=\"what\">{}</p>",
            esc(s.sweep.name()),
            esc(&sw.label),
            esc(&what)
        );
        if s.interrupted {
            out.push_str(
                "<p class=\"banner\">This sweep was interrupted: the figures cover what ran.</p>\n",
            );
        }
        let _ = write!(out, "<div class=\"key\">");
        for (name, colour, _) in coloured(s) {
            let _ = write!(out, "<span>{}{}</span>", swatch(colour), esc(name));
        }
        out.push_str("</div>\n");
        match s.sweep {
            SweepKind::Rate => rate_section(&mut out, s),
            SweepKind::Idle => idle_section(&mut out, s),
            SweepKind::Connections => connections_section(&mut out, s),
        }
        table_html(&mut out, s);
        metadata_html(&mut out, sw);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::record::sweep::StepLatency;
    use crate::record::tests::fixture;

    fn step(name: &str, kind: SweepKind, x: usize, rps: f64, p99: f64) -> Step {
        Step {
            step: name.into(),
            file: Some(format!("m/{name}.json")),
            fraction: (kind == SweepKind::Rate).then_some(x as f64 / 100.0),
            target_rps: (kind == SweepKind::Rate).then_some(rps),
            idle: (kind == SweepKind::Idle).then_some(x),
            connections: if kind == SweepKind::Connections {
                x
            } else {
                50
            },
            achieved_rps: Some(rps),
            latency_us: Some(StepLatency {
                p50: p99 / 3.0,
                p99,
                p99_9: p99 * 2.0,
            }),
            server_cpu: Some(4.0 + x as f64 / 1000.0),
            client_cpu: Some(3.0),
            ..Step::default()
        }
    }

    fn sweep(kind: SweepKind) -> LoadedSweep {
        let mut models = BTreeMap::new();
        for (i, name) in ["epoll", "select"].iter().enumerate() {
            let mut steps: Vec<Step> = match kind {
                SweepKind::Rate => (1..=4)
                    .map(|k| {
                        step(
                            &format!("rate-0{k}"),
                            kind,
                            k * 30,
                            k as f64 * 30_000.0 / (i + 1) as f64,
                            100.0 * k.pow(3) as f64,
                        )
                    })
                    .collect(),
                SweepKind::Idle => [0, 100, 1000]
                    .iter()
                    .map(|&n| step(&format!("idle-{n}"), kind, n, 100_000.0, 300.0))
                    .collect(),
                SweepKind::Connections => [1, 10, 100]
                    .iter()
                    .map(|&n| {
                        step(
                            &format!("connections-{n}"),
                            kind,
                            n,
                            1000.0 * n as f64,
                            50.0,
                        )
                    })
                    .collect(),
            };
            if kind == SweepKind::Idle && *name == "select" {
                steps[2] = Step {
                    step: "idle-1000".into(),
                    idle: Some(1000),
                    connections: 50,
                    skipped: Some("select watches only descriptors below FD_SETSIZE (1024)".into()),
                    ..Step::default()
                };
            }
            let mut m = SweepModel {
                description: String::new(),
                max: (kind == SweepKind::Rate)
                    .then(|| step("rate-max", kind, 100, 100_000.0, 900.0)),
                steps,
                knee_rps: None,
                knee_step: None,
            };
            m.update_knee((kind == SweepKind::Rate).then_some(1000.0));
            models.insert((*name).to_owned(), m);
        }
        LoadedSweep {
            label: format!("sweep-{}", kind.name()),
            source: PathBuf::from("x/summary.json"),
            summary: SweepSummary {
                schema: SWEEP_SCHEMA.into(),
                sweep: kind,
                tool_version: "0.1.0".into(),
                git_commit: None,
                command: "iomodels sweep".into(),
                started: "2026-01-01T00:00:00Z".into(),
                finished: Some("2026-01-01T00:01:00Z".into()),
                host: fixture("x", 1.0, 1.0).report.host,
                server_cpus: Some(vec![0]),
                client_cpus: Some(vec![1]),
                duration_s: 1.0,
                warmup_s: 0.25,
                size: 512,
                connections: (kind != SweepKind::Connections).then_some(50),
                p99_target_us: (kind == SweepKind::Rate).then_some(1000.0),
                descriptor_limit: Some(20_000),
                order: vec!["epoll".into(), "select".into()],
                models,
                interrupted: false,
                warnings: vec![],
            },
        }
    }

    #[test]
    fn the_rate_table_lists_every_step_and_the_knees() {
        let t = table(&[sweep(SweepKind::Rate)], Format::Table, None).unwrap();
        assert!(t.contains("sweep rate"), "{t}");
        assert!(t.contains("rate-max") && t.contains("rate-04"), "{t}");
        // epoll: p99 100, 800, 2700, 6400 at 30k, 60k, 90k, 120k → knee 60,000.
        assert!(t.contains("60,000"), "{t}");
        assert!(t.contains("knee"), "{t}");
        let md = table(&[sweep(SweepKind::Rate)], Format::Markdown, None).unwrap();
        assert!(md.contains("### sweep rate"), "{md}");
    }

    #[test]
    fn skipped_steps_keep_their_reason_in_every_format() {
        let s = [sweep(SweepKind::Idle)];
        for f in [Format::Table, Format::Csv, Format::Json] {
            let t = table(&s, f, None).unwrap();
            assert!(t.contains("FD_SETSIZE"), "{f:?}: {t}");
        }
        let csv = table(&s, Format::Csv, None).unwrap();
        assert_eq!(csv.lines().count(), 1 + 6);
        let v: serde_json::Value =
            serde_json::from_str(&table(&s, Format::Json, None).unwrap()).unwrap();
        assert_eq!(v["sweeps"][0]["summary"]["sweep"], "idle");
    }

    #[test]
    fn the_report_draws_every_chart_and_marks_knees_and_skips() {
        let rate = html(&[sweep(SweepKind::Rate)]);
        assert!(!rate.contains("could not be drawn"), "a plot failed");
        assert_eq!(rate.matches("<svg").count(), 3);
        // plotters writes each text on lines of its own.
        let text = |h: &str, t: &str| h.replace('\n', "").contains(&format!(">{t}</text>"));
        assert!(text(&rate, "knee"), "no knee label");
        assert!(rate.contains("p99 target"));
        let idle = html(&[sweep(SweepKind::Idle)]);
        assert!(!idle.contains("could not be drawn"), "a plot failed");
        assert_eq!(idle.matches("<svg").count(), 3);
        assert!(text(&idle, "×"), "no skip mark");
        assert!(idle.contains("FD_SETSIZE"));
        let conns = html(&[sweep(SweepKind::Connections)]);
        assert!(!conns.contains("could not be drawn"));
        assert_eq!(conns.matches("<svg").count(), 2);
        assert!(!conns.contains("<script"));
    }

    #[test]
    fn load_reads_a_sweep_folder_and_refuses_a_run() {
        let dir =
            std::env::temp_dir().join(format!("iomodels-export-sweep-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let s = sweep(SweepKind::Connections);
        s.summary.write(&dir.join("summary.json")).unwrap();
        for p in [dir.clone(), dir.join("summary.json")] {
            let l = load(&p).unwrap();
            assert_eq!(l.summary, s.summary);
            assert_eq!(l.label, dir.file_name().unwrap().to_string_lossy());
        }
        std::fs::write(
            dir.join("summary.json"),
            "{\"schema\": \"iomodels.summary/1\"}",
        )
        .unwrap();
        assert!(summary_path(&dir).is_none());
        let e = format!("{:#}", load(&dir).unwrap_err());
        assert!(e.contains("not a sweep") && !e.contains('\n'), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
