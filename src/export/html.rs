//! The HTML report: one self-contained page (inline CSS and SVG, no script, no network) that
//! shows one or more runs as pictures first and numbers second.
//!
//! Per point: a latency percentile spectrum (from the median round's histogram), throughput
//! bars and stacked CPU-per-request bars, each with the rounds' min–max as whiskers. Across
//! points: latency and throughput against connection count. Then every figure in tables, each
//! model's failures, and each run's metadata.
//!
//! Plots are drawn by `plotters`' SVG backend; text in them is SVG `<text>` laid out with
//! plotters' built-in size estimate (no font files are read). This module deliberately
//! computes no statistics of its own beyond sampling a histogram for the spectrum: every
//! number comes from [`crate::record`].

use std::error::Error;
use std::fmt::Write as _;
use std::ops::Range;

use hdrhistogram::Histogram;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, ValueFormatter};
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::LoadedRun;
use crate::record::{ModelSummary, PointSpec, PointSummary, Stat};
use crate::wakeup::WakeUpCost;

/// One colour per model, by the model's first appearance over the runs (Tableau 10, with the
/// yellow darkened so a 2-pixel line on white stays visible); an eleventh model reuses the first.
pub(super) const PALETTE: [RGBColor; 10] = [
    RGBColor(0x4e, 0x79, 0xa7),
    RGBColor(0xf2, 0x8e, 0x2b),
    RGBColor(0xe1, 0x57, 0x59),
    RGBColor(0x76, 0xb7, 0xb2),
    RGBColor(0x59, 0xa1, 0x4f),
    RGBColor(0xc9, 0xa4, 0x1a),
    RGBColor(0xb0, 0x7a, 0xa1),
    RGBColor(0xff, 0x9d, 0xa7),
    RGBColor(0x9c, 0x75, 0x5f),
    RGBColor(0x6b, 0x6b, 0x6b),
];

/// The spectrum's x axis ends at 99.999 % (x = 5).
const SPECTRUM_DECADES: f64 = 5.0;

/// Plot widths in CSS pixels: a full-width plot and a half-width one (two side by side).
pub(super) const WIDE: u32 = 1180;
pub(super) const HALF: u32 = 560;
pub(super) const FONT: &str = "sans-serif";

/// Render `runs` as one HTML document. Models keep one colour across every plot; with more
/// than one run, each series is labelled "model (run label)" and later runs are dashed.
/// A point no model measured gets no section; a model with no successful point appears only
/// in the failures list.
pub fn render(runs: &[LoadedRun]) -> String {
    render_with(runs, &[])
}

/// [`render`], with the sections of `sweeps` after the runs' (`compare --html` given both).
pub fn render_with(runs: &[LoadedRun], sweeps: &[super::sweep::LoadedSweep]) -> String {
    let series = series(runs);
    let points = points(runs);
    let mut out = String::with_capacity(256 * 1024);
    head(&mut out, runs);
    nav(&mut out, runs, &points, &series);
    for spec in &points {
        point_section(&mut out, spec, &series);
    }
    wake_up_section(&mut out, &series);
    tcp_udp_section(&mut out, &series);
    scaling_section(&mut out, &points, &series);
    out.push_str(&super::explain::html_section(runs));
    failures_section(&mut out, runs);
    metadata_section(&mut out, runs);
    out.push_str(&super::sweep::sections(sweeps));
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

/// One line on the plots: a model in one run.
struct Series<'a> {
    run: &'a LoadedRun,
    run_index: usize,
    model: &'a ModelSummary,
    colour: RGBColor,
    label: String,
}

impl Series<'_> {
    fn point(&self, point: &str) -> Option<&PointSummary> {
        self.model.point(point)
    }

    fn histogram(&self, point: &str) -> Option<&Histogram<u64>> {
        self.run
            .histograms
            .get(&(self.model.model.clone(), point.to_owned()))
            .filter(|h| !h.is_empty())
    }

    fn line(&self) -> ShapeStyle {
        self.colour.stroke_width(2)
    }

    /// Draw `pts` as this series' line (dashed for runs after the first) and give it a legend
    /// entry.
    fn draw_line<X, Y>(
        &self,
        chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<X, Y>>,
        pts: Vec<(X::ValueType, Y::ValueType)>,
        markers: bool,
    ) -> Result<(), Box<dyn Error>>
    where
        X: Ranged,
        Y: Ranged,
        X::ValueType: Clone + 'static,
        Y::ValueType: Clone + 'static,
    {
        let style = self.line();
        let dashed = self.run_index > 0;
        if dashed {
            chart
                .draw_series(DashedLineSeries::new(pts.clone(), 7, 4, style))?
                .label(self.label.as_str())
                .legend(move |(x, y)| {
                    DashedPathElement::new(vec![(x, y), (x + 22, y)], 5, 3, style)
                });
        } else {
            chart
                .draw_series(LineSeries::new(pts.clone(), style))?
                .label(self.label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], style));
        }
        if markers {
            chart.draw_series(
                pts.into_iter()
                    .map(|p| Circle::new(p, 3, self.colour.filled())),
            )?;
        }
        Ok(())
    }
}

/// Every (run, model) that has at least one successful point, grouped by model (so a model's
/// runs sit together), models in order of first appearance.
fn series(runs: &[LoadedRun]) -> Vec<Series<'_>> {
    let mut names: Vec<&str> = Vec::new();
    for run in runs {
        for m in &run.summary.models {
            if !names.contains(&m.model.as_str()) {
                names.push(&m.model);
            }
        }
    }
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        for (run_index, run) in runs.iter().enumerate() {
            let Some(model) = run.summary.models.iter().find(|m| m.model == *name) else {
                continue;
            };
            if model.points.is_empty() {
                continue;
            }
            let label = if runs.len() > 1 {
                format!("{} ({})", model.model, run.label)
            } else {
                model.model.clone()
            };
            out.push(Series {
                run,
                run_index,
                model,
                colour: PALETTE[i % PALETTE.len()],
                label,
            });
        }
    }
    out
}

/// The points of all runs, by name, in order of first appearance.
fn points(runs: &[LoadedRun]) -> Vec<&PointSpec> {
    let mut out: Vec<&PointSpec> = Vec::new();
    for run in runs {
        for p in &run.summary.points {
            if !out.iter().any(|q| q.name == p.name) {
                out.push(p);
            }
        }
    }
    out
}

fn has_point(series: &[Series<'_>], point: &str) -> bool {
    series
        .iter()
        .any(|s| s.point(point).is_some() || s.histogram(point).is_some())
}

pub(super) const CSS: &str = r#"
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  margin: 0; background: #fff; color: #1d1d1f; line-height: 1.45; }
main { max-width: 1240px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 1.6rem; margin: 0.4em 0 0.2em; }
h2 { font-size: 1.3rem; margin: 1.8em 0 0.3em; padding-top: 0.4em; border-top: 1px solid #ddd; }
h3 { font-size: 1.05rem; margin: 1.2em 0 0.3em; }
p.what { margin: 0 0 0.6em; color: #444; }
nav { font-size: 0.95rem; margin: 0.4em 0 1em; }
nav a { margin-right: 1em; }
.figs { display: flex; flex-wrap: wrap; gap: 12px 20px; align-items: flex-start; }
figure { margin: 0.6em 0; flex: 0 1 calc(50% - 10px); min-width: 300px; }
figure.wide { flex-basis: 100%; }
@media (max-width: 900px) { figure { flex-basis: 100%; } }
figure svg { display: block; width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.92rem; color: #333; margin-top: 0.3em; max-width: 70em; }
.key { display: flex; flex-wrap: wrap; gap: 4px 16px; font-size: 0.92rem; margin: 0.4em 0; }
.sw { display: inline-block; width: 0.9em; height: 0.9em; border-radius: 2px;
  vertical-align: -0.1em; margin-right: 0.35em; }
.banner { background: #fff3cd; border: 1px solid #e0c36a; padding: 0.5em 0.8em; }
.error { color: #a00; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.88rem; margin: 0.4em 0 1em; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 3px 8px; text-align: right; vertical-align: top;
  white-space: nowrap; }
th { background: #f6f6f6; font-weight: 600; white-space: normal; vertical-align: bottom; }
th:first-child, td:first-child { text-align: left; }
th.text, td.text { text-align: left; }
td.text { white-space: normal; }
td small { color: #666; display: block; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; font-size: 0.92rem; }
dt { font-weight: 600; }
dd { margin: 0; overflow-wrap: anywhere; }
code { font-size: 0.9em; }
.note { color: #7a4b00; font-size: 0.88rem; margin: 0.2em 0; }
ul.note { padding-left: 1.4em; }
"#;

fn head(out: &mut String, runs: &[LoadedRun]) {
    let labels: Vec<&str> = runs.iter().map(|r| r.label.as_str()).collect();
    let title = format!("iomodels report: {}", labels.join(", "));
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );
    for run in runs {
        let s = &run.summary;
        let _ = writeln!(
            out,
            "<p class=\"what\"><b>{}</b>: {} on {} ({} cores, {} {}), {} round(s) of {} s after {} s warm-up, started {}.</p>",
            esc(&run.label),
            esc(&s.tool_version),
            esc(&s.host.cpu),
            s.host.cores,
            esc(&s.host.os),
            esc(&s.host.kernel),
            s.rounds,
            num(s.duration_s),
            num(s.warmup_s),
            esc(&s.started),
        );
        if s.interrupted {
            let _ = writeln!(
                out,
                "<p class=\"banner\">{}: the run was interrupted; the figures cover what ran.</p>",
                esc(&run.label)
            );
        }
        for w in &s.warnings {
            let _ = writeln!(
                out,
                "<p class=\"banner\">{}: {}</p>",
                esc(&run.label),
                esc(w)
            );
        }
    }
}

fn nav(out: &mut String, runs: &[LoadedRun], points: &[&PointSpec], series: &[Series<'_>]) {
    out.push_str("<nav>");
    for p in points.iter().filter(|p| has_point(series, &p.name)) {
        let _ = write!(
            out,
            "<a href=\"#point-{}\">{}</a>",
            anchor(&p.name),
            esc(&p.name)
        );
    }
    if series.iter().any(|s| WakeUpCost::of(s.model).is_some()) {
        out.push_str("<a href=\"#wake-up\">wake-up cost</a>");
    }
    if series
        .iter()
        .any(|s| s.point("udp-latency").is_some() || s.point("udp-open").is_some())
    {
        out.push_str("<a href=\"#tcp-udp\">TCP and UDP</a>");
    }
    out.push_str("<a href=\"#scaling\">against connections</a>");
    if super::explain::any(runs) {
        out.push_str("<a href=\"#explain\">kernel counts</a>");
    }
    if runs
        .iter()
        .any(|r| r.summary.failed_models().next().is_some())
    {
        out.push_str("<a href=\"#failures\">failures</a>");
    }
    out.push_str("<a href=\"#metadata\">run metadata</a></nav>\n");
    key(out, series);
}

/// The colour key in HTML, once at the top: every plot uses the same colours.
fn key(out: &mut String, series: &[Series<'_>]) {
    out.push_str("<div class=\"key\">");
    for s in series {
        let dash = if s.run_index > 0 { " (dashed)" } else { "" };
        let _ = write!(
            out,
            "<span>{}{}{}</span>",
            swatch(s.colour),
            esc(&s.label),
            dash
        );
    }
    out.push_str("</div>\n");
}

fn describe(spec: &PointSpec) -> String {
    let mut d = format!("{} {} × {} B", spec.connections, spec.carrier(), spec.size);
    if spec.depth > 1 {
        let _ = write!(d, ", {} in flight per connection", spec.depth);
    }
    match (spec.rate_of_throughput, spec.rate_rps) {
        (Some(f), _) => {
            let _ = write!(
                d,
                ", open loop at {} % of the model's throughput rate",
                num(f * 100.0)
            );
        }
        (None, Some(r)) => {
            let _ = write!(d, ", open loop at {} per second for every model", num(r));
        }
        (None, None) => d.push_str(", closed loop"),
    }
    if spec.name == crate::wakeup::SPINNING {
        d.push_str(", busy-polling generator (no client wake-up in the round trip)");
    }
    d
}

fn point_section(out: &mut String, spec: &PointSpec, series: &[Series<'_>]) {
    let name = &spec.name;
    if !has_point(series, name) {
        return;
    }
    let _ = writeln!(
        out,
        "<h2 id=\"point-{}\">{}</h2>\n<p class=\"what\">{}.</p>\n<div class=\"figs\">",
        anchor(name),
        esc(name),
        esc(&describe(spec))
    );
    let open = if spec.is_open_loop() {
        " Open loop: latency counts from each request's intended send time."
    } else {
        ""
    };
    let spec_series: Vec<(&Series<'_>, &Histogram<u64>)> = series
        .iter()
        .filter_map(|s| s.histogram(name).map(|h| (s, h)))
        .collect();
    if !spec_series.is_empty() {
        figure(
            out,
            true,
            &spectrum(&spec_series),
            &format!(
                "Latency at every percentile: lower is better, and the right side is the tail: \
                 99 % means 1 request in 100 was slower; a line ends where its samples run out. \
                 Each line is one round, the one with the median throughput (the round copied to \
                 <model>/<point>.json), while the table below gives each percentile's median over \
                 the rounds: where one round had a stall, their tails differ.{open}"
            ),
        );
    }
    let rows: Vec<(&Series<'_>, &PointSummary)> = series
        .iter()
        .filter_map(|s| s.point(name).map(|p| (s, p)))
        .collect();
    if !rows.is_empty() {
        let bars: Vec<BarRow> = rows
            .iter()
            .map(|(s, p)| BarRow {
                label: s.label.clone(),
                colour: s.colour,
                text: si(p.throughput_rps.value),
                segments: vec![Segment {
                    stat: p.throughput_rps.clone(),
                    pale: false,
                }],
            })
            .collect();
        figure(
            out,
            false,
            &bar_chart(&bars, "requests per second"),
            "Throughput: longer is better; the bar is the best round, the whisker spans the \
             slowest to the fastest round and its dot marks the bar's round.",
        );
        let bars: Vec<BarRow> = rows
            .iter()
            .map(|(s, p)| {
                let mut segments = Vec::new();
                let mut text = String::new();
                if let Some(server) = &p.server_cpu_us {
                    segments.push(Segment {
                        stat: server.clone(),
                        pale: false,
                    });
                    text = format!("{} + ", num(server.value));
                }
                segments.push(Segment {
                    stat: p.client_cpu_us.clone(),
                    pale: true,
                });
                text.push_str(&num(p.client_cpu_us.value));
                BarRow {
                    label: s.label.clone(),
                    colour: s.colour,
                    segments,
                    text,
                }
            })
            .collect();
        figure(
            out,
            false,
            &bar_chart(&bars, "CPU µs per request"),
            "CPU time per request: shorter is better; the solid part is the server, the pale part \
             the load generator (least round of each), and the whiskers span their rounds.",
        );
    }
    out.push_str("</div>\n");
    point_table(out, name, &rows);
}

fn figure(out: &mut String, wide: bool, svg: &str, caption: &str) {
    let _ = writeln!(
        out,
        "<figure{}>\n{svg}<figcaption>{}</figcaption>\n</figure>",
        if wide { " class=\"wide\"" } else { "" },
        esc(caption)
    );
}

/// Draw into a fresh SVG of `size` pixels; a drawing error becomes a visible message, never a
/// panic or a missing section.
pub(super) fn svg<F>(size: (u32, u32), draw: F) -> String
where
    F: FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), Box<dyn Error>>,
{
    let mut buf = String::new();
    let result = {
        let root = SVGBackend::with_string(&mut buf, size).into_drawing_area();
        root.fill(&WHITE)
            .map_err(Box::<dyn Error>::from)
            .and_then(|()| draw(&root))
            .and_then(|()| root.present().map_err(Box::<dyn Error>::from))
    };
    match result {
        Ok(()) => buf,
        Err(e) => format!(
            "<p class=\"error\">this plot could not be drawn: {}</p>\n",
            esc(&e.to_string())
        ),
    }
}

/// Sample a histogram (ns) along the spectrum's x axis, HdrHistogram's percentile scale
/// x = log10(1 / (1 − q)), as (x, latency µs): 40 samples per decade, up to where its samples
/// run out (x = log10(count), drawn at the maximum).
fn spectrum_points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let end = (h.len() as f64).log10().min(SPECTRUM_DECADES);
    let steps = (end * 40.0).ceil().max(1.0) as usize;
    let mut pts: Vec<(f64, f64)> = (0..steps)
        .map(|i| {
            let x = end * i as f64 / steps as f64;
            let q = 1.0 - 10f64.powf(-x);
            (x, h.value_at_quantile(q) as f64 / 1000.0)
        })
        .collect();
    let last = if end < SPECTRUM_DECADES {
        h.max()
    } else {
        h.value_at_quantile(1.0 - 10f64.powf(-SPECTRUM_DECADES))
    };
    pts.push((end, last as f64 / 1000.0));
    pts
}

fn percentile_label(x: f64) -> String {
    match x.round() as i32 {
        0 => "0%".into(),
        1 => "90%".into(),
        2 => "99%".into(),
        k => format!("99.{}%", "9".repeat((k - 2).max(1) as usize)),
    }
}

/// Key points of a log axis from `lo` to `hi`: 1-2-5 per decade, or 1 per decade when the
/// range spans many decades (so labels never crowd).
pub(super) fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let decades = (hi / lo).log10();
    let steps: &[f64] = if decades > 4.0 {
        &[1.0]
    } else if decades > 1.5 {
        &[1.0, 3.0]
    } else {
        &[1.0, 2.0, 5.0]
    };
    let mut out = Vec::new();
    let mut p = 10f64.powf(lo.log10().floor());
    while p <= hi {
        for m in steps {
            let v = p * m;
            if v >= lo && v <= hi {
                out.push(v);
            }
        }
        p *= 10.0;
    }
    if out.len() < 2 {
        out = vec![lo, hi];
    }
    out
}

/// A padded log range around `values` (all > 0).
pub(super) fn log_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| *v > 0.0 && v.is_finite())
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.1, 10.0);
    }
    let (lo, hi) = (lo / 1.25, hi * 1.25);
    if hi / lo < 10.0 {
        let mid = (lo * hi).sqrt();
        (mid / 3.2, mid * 3.2)
    } else {
        (lo, hi)
    }
}

fn spectrum(series: &[(&Series<'_>, &Histogram<u64>)]) -> String {
    let lines: Vec<(&Series<'_>, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(s, h)| (*s, spectrum_points(h)))
        .collect();
    let (lo, hi) = log_range(lines.iter().flat_map(|(_, p)| p.iter().map(|(_, y)| *y)));
    svg((WIDE, 440), |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(14)
            .margin_right(28)
            .x_label_area_size(48)
            .y_label_area_size(76)
            .build_cartesian_2d(
                Ticks {
                    range: 0.0..SPECTRUM_DECADES,
                    ticks: vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
                },
                (lo..hi).log_scale().with_key_points(log_ticks(lo, hi)),
            )?;
        mesh(
            &mut chart,
            "percentile (log scale: each step is ten times rarer)",
            "latency µs (log scale)",
            &|x| percentile_label(*x),
            &|y| num(*y),
        )?;
        for (s, pts) in &lines {
            s.draw_line(&mut chart, pts.clone(), false)?;
        }
        let (ln_lo, ln_span) = (lo.ln(), (hi / lo).ln());
        let corner = legend_corner(
            lines.iter().map(|(s, pts)| {
                let norm = pts
                    .iter()
                    .map(|(x, y)| (x / SPECTRUM_DECADES, (y.ln() - ln_lo) / ln_span))
                    .collect();
                (s.label.as_str(), norm)
            }),
            chart.plotting_area().dim_in_pixel(),
        );
        series_labels(&mut chart, corner)?;
        Ok(())
    })
}

/// A linear axis whose ticks are exactly `ticks` and nothing else. (plotters' own
/// `with_key_points` over an `f64` range loses the value formatter its mesh needs.)
struct Ticks {
    range: Range<f64>,
    ticks: Vec<f64>,
}

impl Ranged for Ticks {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let span = self.range.end - self.range.start;
        let f = if span > 0.0 {
            (value - self.range.start) / span
        } else {
            0.0
        };
        limit.0 + (f * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

/// One horizontal bar: stacked `segments` from 0, a label on the axis, `text` at its end.
struct BarRow {
    label: String,
    colour: RGBColor,
    segments: Vec<Segment>,
    text: String,
}

/// One part of a bar: its length is `stat.value`; with more than one round, a whisker spans
/// `stat.min..stat.max` (offset by where the segment starts).
struct Segment {
    stat: Stat,
    pale: bool,
}

fn bar_chart(rows: &[BarRow], x_desc: &str) -> String {
    let n = rows.len();
    let end = rows
        .iter()
        .map(|r| {
            let mut start = 0.0;
            let mut reach = 0.0f64;
            for s in &r.segments {
                reach = reach.max(start + s.stat.max.max(s.stat.value));
                start += s.stat.value;
            }
            reach
        })
        .fold(0.0f64, f64::max);
    let x_end = if end > 0.0 { end * 1.28 } else { 1.0 };
    let longest = rows
        .iter()
        .map(|r| r.label.chars().count())
        .max()
        .unwrap_or(4);
    let label_area = (longest as u32 * 8 + 16).clamp(60, 260);
    let row_px = 34;
    let height = 80 + row_px * n as u32;
    // Row 0 at the top: row i is centred at y = n - i - 0.5.
    let centre = |i: usize| n as f64 - i as f64 - 0.5;
    let ticks: Vec<f64> = (0..n).map(centre).collect();
    svg((HALF, height), |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .margin_right(20)
            .x_label_area_size(46)
            .y_label_area_size(label_area)
            .build_cartesian_2d(
                0f64..x_end,
                Ticks {
                    range: 0.0..n as f64,
                    ticks,
                },
            )?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_desc(x_desc)
            .x_labels(6)
            .x_label_formatter(&|x| si(*x))
            .y_label_formatter(&|y| {
                let i = (n as f64 - y - 0.5).round() as usize;
                rows.get(i).map(|r| r.label.clone()).unwrap_or_default()
            })
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .bold_line_style(BLACK.mix(0.1))
            .light_line_style(TRANSPARENT)
            .draw()?;
        let whisker = BLACK.stroke_width(1);
        for (i, row) in rows.iter().enumerate() {
            let c = centre(i);
            let mut start = 0.0;
            let many = row.segments.len() > 1;
            for (k, seg) in row.segments.iter().enumerate() {
                let fill = if seg.pale {
                    row.colour.mix(0.4).filled()
                } else {
                    row.colour.filled()
                };
                let v = seg.stat.value;
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(start, c - 0.32), (start + v, c + 0.32)],
                    fill,
                )))?;
                if seg.stat.rounds.len() > 1 {
                    // Two whiskers on one bar sit apart so neither hides the other.
                    let off = if many {
                        if k == 0 { 0.13 } else { -0.13 }
                    } else {
                        0.0
                    };
                    chart.draw_series(std::iter::once(ErrorBar::new_horizontal(
                        c + off,
                        start + seg.stat.min,
                        start + v,
                        start + seg.stat.max,
                        whisker,
                        8,
                    )))?;
                }
                start += v;
            }
            let reach = row
                .segments
                .iter()
                .fold((0.0f64, 0.0f64), |(start, reach), s| {
                    (
                        start + s.stat.value,
                        reach.max(start + s.stat.max.max(s.stat.value)),
                    )
                })
                .1;
            let style = TextStyle::from((FONT, 13).into_font())
                .color(&BLACK)
                .pos(Pos::new(HPos::Left, VPos::Center));
            chart.draw_series(std::iter::once(
                EmptyElement::at((reach, c)) + Text::new(row.text.clone(), (6, 0), style),
            ))?;
        }
        Ok(())
    })
}

/// The closed-loop points with distinct connection counts (the first in run order for each
/// count), sorted by connections: the x axis of the scaling plots.
fn scaling_points<'a>(points: &[&'a PointSpec], series: &[Series<'_>]) -> Vec<&'a PointSpec> {
    let mut out: Vec<&PointSpec> = Vec::new();
    for p in points {
        // TCP closed loop only: an open loop's throughput is its rate, and a UDP socket is
        // not a connection a server holds.
        if !p.is_open_loop()
            && p.proto == loadgen::Proto::Tcp
            && p.connections > 0
            && series.iter().any(|s| s.point(&p.name).is_some())
            && !out.iter().any(|q| q.connections == p.connections)
        {
            out.push(p);
        }
    }
    out.sort_by_key(|p| p.connections);
    out
}

fn scaling_section(out: &mut String, points: &[&PointSpec], series: &[Series<'_>]) {
    let used = scaling_points(points, series);
    out.push_str("<h2 id=\"scaling\">Against connection count</h2>\n");
    if used.len() < 2 {
        out.push_str(
            "<p class=\"what\">Fewer than two TCP closed-loop points with different connection counts \
             were measured: nothing to draw.</p>\n",
        );
        return;
    }
    let names: Vec<String> = used
        .iter()
        .map(|p| format!("{} ({})", p.name, p.connections))
        .collect();
    let _ = writeln!(
        out,
        "<p class=\"what\">TCP closed-loop points: {}.</p>\n<div class=\"figs\">",
        esc(&names.join(", "))
    );
    type Get = fn(&PointSummary) -> f64;
    let plots: [(&str, Get, bool, &str); 3] = [
        (
            "p50 latency µs (log scale)",
            |p| p.latency_us.p50.value,
            true,
            "Median latency against connections: lower is better; more connections queue behind \
             each other, so every line rises.",
        ),
        (
            "p99 latency µs (log scale)",
            |p| p.latency_us.p99.value,
            true,
            "99th-percentile latency against connections: lower is better; a steep line is a \
             model whose slowest requests suffer most under load.",
        ),
        (
            "requests per second",
            |p| p.throughput_rps.value,
            false,
            "Throughput (best round) against connections: higher is better; a flat line means \
             more connections bought no more work.",
        ),
    ];
    for (y_desc, get, log_y, caption) in plots {
        let lines: Vec<(&Series<'_>, Vec<(f64, f64)>)> = series
            .iter()
            .map(|s| {
                let pts = used
                    .iter()
                    .filter_map(|p| s.point(&p.name).map(|r| (p.connections as f64, get(r))))
                    .collect();
                (s, pts)
            })
            .filter(|(_, pts): &(_, Vec<_>)| !pts.is_empty())
            .collect();
        let svg = scaling_plot(&used, &lines, y_desc, log_y);
        figure(out, false, &svg, caption);
    }
    out.push_str("</div>\n");
}

fn scaling_plot(
    used: &[&PointSpec],
    lines: &[(&Series<'_>, Vec<(f64, f64)>)],
    y_desc: &str,
    log_y: bool,
) -> String {
    let conns: Vec<f64> = used.iter().map(|p| p.connections as f64).collect();
    let (x_lo, x_hi) = (conns[0] / 1.6, conns[conns.len() - 1] * 1.6);
    let values = || lines.iter().flat_map(|(_, p)| p.iter().map(|(_, y)| *y));
    let norm_x = |x: f64| (x / x_lo).ln() / (x_hi / x_lo).ln();
    // One x axis and label style for either y axis (log or linear).
    let x_desc = "connections (log scale)";
    let (x_label, y_label) = (&|x: &f64| num(*x), &|y: &f64| si(*y));
    svg((HALF, 400), |root| {
        let mut builder = ChartBuilder::on(root);
        builder
            .margin(12)
            .margin_right(20)
            .x_label_area_size(46)
            .y_label_area_size(70);
        let x = (x_lo..x_hi).log_scale().with_key_points(conns.clone());
        if log_y {
            let (lo, hi) = log_range(values());
            let mut chart = builder
                .build_cartesian_2d(x, (lo..hi).log_scale().with_key_points(log_ticks(lo, hi)))?;
            mesh(&mut chart, x_desc, y_desc, x_label, y_label)?;
            for (s, pts) in lines {
                s.draw_line(&mut chart, pts.clone(), true)?;
            }
            let norm_y = |y: f64| (y / lo).ln() / (hi / lo).ln();
            let corner = legend_corner(
                lines.iter().map(|(s, pts)| {
                    let norm = pts.iter().map(|(x, y)| (norm_x(*x), norm_y(*y))).collect();
                    (s.label.as_str(), norm)
                }),
                chart.plotting_area().dim_in_pixel(),
            );
            series_labels(&mut chart, corner)?;
        } else {
            let hi = values().fold(0.0f64, f64::max).max(1.0) * 1.15;
            let mut chart = builder.build_cartesian_2d(x, 0f64..hi)?;
            mesh(&mut chart, x_desc, y_desc, x_label, y_label)?;
            for (s, pts) in lines {
                s.draw_line(&mut chart, pts.clone(), true)?;
            }
            let corner = legend_corner(
                lines.iter().map(|(s, pts)| {
                    let norm = pts.iter().map(|(x, y)| (norm_x(*x), y / hi)).collect();
                    (s.label.as_str(), norm)
                }),
                chart.plotting_area().dim_in_pixel(),
            );
            series_labels(&mut chart, corner)?;
        }
        Ok(())
    })
}

/// A chart's axes in the reports' one style: `x_desc` and `y_desc` as the axis titles, tick
/// labels written by `x_label` and `y_label`, faint major grid lines and no minor ones. Shared
/// by the run, sweep and fan-out reports; errors are plotters' drawing errors.
pub(super) fn mesh<X, Y>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<X, Y>>,
    x_desc: &str,
    y_desc: &str,
    x_label: &dyn Fn(&f64) -> String,
    y_label: &dyn Fn(&f64) -> String,
) -> Result<(), Box<dyn Error>>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(x_label)
        .y_label_formatter(y_label)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .bold_line_style(BLACK.mix(0.12))
        .light_line_style(TRANSPARENT)
        .draw()?;
    Ok(())
}

/// A chart's legend in the reports' one style, at `pos` (see [`legend_corner`]). Shared by the
/// run, sweep and fan-out reports; errors are plotters' drawing errors.
pub(super) fn series_labels<'a, 'b: 'a, X: Ranged, Y: Ranged>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, Y>>,
    pos: SeriesLabelPosition,
) -> Result<(), Box<dyn Error>> {
    chart
        .configure_series_labels()
        .position(pos)
        .margin(8)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .label_font((FONT, 14))
        .draw()?;
    Ok(())
}

/// The corner of a plot where the legend hides the fewest line samples. `lines` are (label,
/// points normalised to 0..1 on both axes, y up); `plot` is the plotting area in pixels.
pub(super) fn legend_corner<'a>(
    lines: impl Iterator<Item = (&'a str, Vec<(f64, f64)>)>,
    plot: (u32, u32),
) -> SeriesLabelPosition {
    let mut samples = Vec::new();
    let (mut entries, mut longest) = (0usize, 0usize);
    for (label, pts) in lines {
        entries += 1;
        longest = longest.max(label.chars().count());
        samples.extend(pts.first().copied());
        // Lines between far-apart points cross the corners too: sample along each segment.
        for w in pts.windows(2) {
            let ((x0, y0), (x1, y1)) = (w[0], w[1]);
            samples.extend((1..=12).map(|k| {
                let t = f64::from(k) / 12.0;
                (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t)
            }));
        }
    }
    // The legend box as plotters draws it: a 14 px font, a 20 px sample line, 8 px margins.
    let (pw, ph) = (f64::from(plot.0.max(1)), f64::from(plot.1.max(1)));
    let bw = (longest as f64 * 8.0 + 50.0) / pw;
    let bh = (entries as f64 * 20.0 + 20.0) / ph;
    let corners = [
        (SeriesLabelPosition::UpperLeft, (0.0, 1.0 - bh)),
        (SeriesLabelPosition::UpperRight, (1.0 - bw, 1.0 - bh)),
        (SeriesLabelPosition::LowerRight, (1.0 - bw, 0.0)),
        (SeriesLabelPosition::LowerLeft, (0.0, 0.0)),
    ];
    let hidden = |(x0, y0): (f64, f64)| {
        samples
            .iter()
            .filter(|(x, y)| *x >= x0 && *x <= x0 + bw && *y >= y0 && *y <= y0 + bh)
            .count()
    };
    let mut best = (usize::MAX, SeriesLabelPosition::UpperLeft);
    for (pos, at) in corners {
        let n = hidden(at);
        if n < best.0 {
            best = (n, pos);
        }
    }
    best.1
}

/// `value`, and under it `min–max` when the stat has more than one round.
/// A ratio as a percentage with three decimals (UDP loss: 0.001 % is one datagram in 100,000).
fn percent(ratio: f64) -> String {
    format!("{:.3}", ratio * 100.0)
}

/// TCP and UDP side by side, per model: the same shapes (`latency` and `udp-latency`: 1 × 64 B
/// closed loop; `open` and `udp-open`: 50 × 512 B open loop) over each transport, with the
/// UDP loss. Drawn only when the runs have a UDP point.
fn tcp_udp_section(out: &mut String, series: &[Series<'_>]) {
    let has = |s: &Series<'_>, p: &str| s.point(p).is_some();
    let rows: Vec<&Series<'_>> = series
        .iter()
        .filter(|s| has(s, "udp-latency") || has(s, "udp-open"))
        .collect();
    if rows.is_empty() {
        return;
    }
    out.push_str(
        "<h2 id=\"tcp-udp\">TCP and UDP side by side</h2>\n<p class=\"what\">The same shapes over \
         each transport: <b>latency</b> against <b>udp-latency</b> (1 × 64 B, closed loop) and \
         <b>open</b> (50 × 512 B at half the model's TCP throughput) against <b>udp-open</b> \
         (50 sockets × 512 B at a fixed rate, the same for every model). A UDP echo needs no \
         connection state and no stream reassembly, but every datagram is a system call each \
         way; the loss is datagrams with no echo within the timeout (full receive buffers), \
         left out of the latency and the throughput.</p>\n\
         <div class=\"scroll\"><table>\n<thead><tr><th>model</th><th>latency p50 µs</th>\
         <th>udp-latency p50 µs</th><th>latency server CPU µs/req</th>\
         <th>udp-latency server CPU µs/req</th><th>open p99 µs</th><th>udp-open p99 µs</th>\
         <th>udp-open server CPU µs/req</th><th>udp-open loss %</th></tr></thead>\n<tbody>\n",
    );
    let dash = || "–".to_owned();
    for s in rows {
        let p50 = |p: &str| {
            s.point(p)
                .map_or_else(dash, |x| cell(&x.latency_us.p50, num))
        };
        let p99 = |p: &str| {
            s.point(p)
                .map_or_else(dash, |x| cell(&x.latency_us.p99, num))
        };
        let cpu = |p: &str| {
            s.point(p)
                .and_then(|x| x.server_cpu_us.as_ref())
                .map_or_else(dash, |c| cell(c, num))
        };
        let loss = s
            .point("udp-open")
            .and_then(|x| x.udp_loss_ratio.as_ref())
            .map_or_else(dash, |l| cell(l, percent));
        let _ = writeln!(
            out,
            "<tr><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{loss}</td></tr>",
            swatch(s.colour),
            esc(&s.label),
            p50("latency"),
            p50("udp-latency"),
            cpu("latency"),
            cpu("udp-latency"),
            p99("open"),
            p99("udp-open"),
            cpu("udp-open"),
        );
    }
    out.push_str("</tbody></table></div>\n");
}

fn cell(stat: &Stat, f: fn(f64) -> String) -> String {
    if stat.rounds.len() > 1 {
        format!(
            "{}<small>{}–{}</small>",
            esc(&f(stat.value)),
            esc(&f(stat.min)),
            esc(&f(stat.max))
        )
    } else {
        esc(&f(stat.value))
    }
}

fn point_table(out: &mut String, point: &str, rows: &[(&Series<'_>, &PointSummary)]) {
    if rows.is_empty() {
        return;
    }
    // UDP points add the loss: datagrams with no echo within the timeout (median of rounds).
    let udp = rows.iter().any(|(_, p)| p.udp_loss_ratio.is_some());
    let _ = writeln!(
        out,
        "<h3>{}: every figure</h3>\n<div class=\"scroll\"><table>\n<thead><tr><th>model</th>\
         <th>rounds</th><th>req/s (best)</th><th>p50 µs</th><th>p90 µs</th><th>p99 µs</th>\
         <th>p99.9 µs</th><th>p99.99 µs</th><th>max µs</th><th>server CPU µs/req</th>\
         <th>client CPU µs/req</th><th>errors</th>{}<th>saturated rounds</th></tr></thead>\n<tbody>",
        esc(point),
        if udp { "<th>loss % (median)</th>" } else { "" }
    );
    for (s, p) in rows {
        let l = &p.latency_us;
        let mut model = format!("{}{}", swatch(s.colour), esc(&s.label));
        if p.interrupted {
            model.push_str(" <small>(interrupted)</small>");
        }
        if let Some(t) = &p.target_rps {
            let _ = write!(
                model,
                "<small>target {} req/s</small>",
                esc(&grouped(t.value))
            );
        }
        let server = p
            .server_cpu_us
            .as_ref()
            .map_or_else(|| "–".to_owned(), |c| cell(c, num));
        let loss = match (&p.udp_loss_ratio, udp) {
            (Some(l), _) => format!("<td>{}</td>", cell(l, percent)),
            (None, true) => "<td>–</td>".to_owned(),
            (None, false) => String::new(),
        };
        let _ = writeln!(
            out,
            "<tr><td>{model}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{server}</td><td>{}</td><td>{}</td>{loss}<td>{}</td></tr>",
            p.rounds,
            cell(&p.throughput_rps, grouped),
            cell(&l.p50, num),
            cell(&l.p90, num),
            cell(&l.p99, num),
            cell(&l.p99_9, num),
            cell(&l.p99_99, num),
            cell(&l.max, num),
            cell(&p.client_cpu_us, num),
            p.errors,
            p.saturated_rounds,
        );
    }
    out.push_str("</tbody></table></div>\n");
    // Saturated rounds, with the generator's reason: the latency above includes that wait.
    let notes: Vec<String> = rows
        .iter()
        .flat_map(|(s, p)| {
            p.saturation
                .iter()
                .map(move |w| format!("{}: {w}", s.label))
        })
        .collect();
    if !notes.is_empty() {
        out.push_str(
            "<p class=\"note\">Saturated: these requests did not go out on time, so the \
             corrected latency above includes the wait.</p>\n<ul class=\"note\">\n",
        );
        for n in notes {
            let _ = writeln!(out, "<li>{}</li>", esc(&n));
        }
        out.push_str("</ul>\n");
    }
}

/// Each model's `latency` p50 split into the busy-polling generator's p50 and the rest, the
/// generator's wake-up cost per round trip ([`crate::wakeup`]); nothing when no model has both
/// points.
fn wake_up_section(out: &mut String, series: &[Series<'_>]) {
    let rows: Vec<(&Series<'_>, WakeUpCost)> = series
        .iter()
        .filter_map(|s| WakeUpCost::of(s.model).map(|c| (s, c)))
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "<h2 id=\"wake-up\">wake-up cost per round trip</h2>\n<p class=\"what\">{}</p>\n\
         <div class=\"figs\">",
        esc(&format!(
            "The same 1 × 64 B round trip measured twice per model: the {} point with a \
             generator that sleeps in epoll_wait until the echo arrives, {} with one that \
             busy-polls (never sleeps). The difference is what waking the client costs per round \
             trip on this machine; the server sleeps in both.",
            crate::wakeup::SLEEPING,
            crate::wakeup::SPINNING
        ))
    );
    let bars: Vec<BarRow> = rows
        .iter()
        .map(|(s, c)| {
            let cost = c.per_round_trip_us();
            let pale = cost.max(0.0);
            BarRow {
                label: s.label.clone(),
                colour: s.colour,
                text: format!("{} + {}", num(c.spinning_p50.value), num(cost)),
                segments: vec![
                    Segment {
                        stat: c.spinning_p50.clone(),
                        pale: false,
                    },
                    Segment {
                        stat: Stat {
                            value: pale,
                            min: pale,
                            max: pale,
                            rounds: vec![pale],
                        },
                        pale: true,
                    },
                ],
            }
        })
        .collect();
    figure(
        out,
        false,
        &bar_chart(&bars, "p50 µs per round trip"),
        "Median round trip: the solid part with a busy-polling generator (latency-spin), the pale \
         part what a sleeping generator adds (its wake-up); together the latency point's p50. \
         Whiskers span the busy-polling rounds.",
    );
    out.push_str(
        "</div>\n<div class=\"scroll\"><table>\n<thead><tr><th>model</th>\
         <th>latency p50 µs (sleeping)</th><th>latency-spin p50 µs (busy-polling)</th>\
         <th>wake-up cost µs per round trip</th></tr></thead>\n<tbody>\n",
    );
    for (s, c) in &rows {
        let _ = writeln!(
            out,
            "<tr><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            swatch(s.colour),
            esc(&s.label),
            cell(&c.sleeping_p50, num),
            cell(&c.spinning_p50, num),
            esc(&num(c.per_round_trip_us()))
        );
    }
    out.push_str("</tbody></table></div>\n");
}

fn failures_section(out: &mut String, runs: &[LoadedRun]) {
    let failed: Vec<(&LoadedRun, &ModelSummary)> = runs
        .iter()
        .flat_map(|r| r.summary.failed_models().map(move |m| (r, m)))
        .collect();
    if failed.is_empty() {
        return;
    }
    out.push_str(
        "<h2 id=\"failures\">Failures</h2>\n<p class=\"what\">Every model × point × round that \
         produced no result; a model listed here with no bars above failed everywhere.</p>\n\
         <div class=\"scroll\"><table>\n<thead><tr><th>model</th><th class=\"text\">point</th>\
         <th>round</th><th class=\"text\">error</th></tr></thead>\n<tbody>\n",
    );
    for (run, m) in failed {
        let label = if runs.len() > 1 {
            format!("{} ({})", m.model, run.label)
        } else {
            m.model.clone()
        };
        let nothing = if m.points.is_empty() {
            " <small>(no successful point)</small>"
        } else {
            ""
        };
        for (i, f) in m.failures.iter().enumerate() {
            let nothing = if i == 0 { nothing } else { "" };
            let _ = writeln!(
                out,
                "<tr><td>{}{nothing}</td><td class=\"text\">{}</td><td>{}</td>\
                 <td class=\"text\">{}</td></tr>",
                esc(&label),
                esc(&f.point),
                f.round,
                esc(&f.error)
            );
        }
    }
    out.push_str("</tbody></table></div>\n");
}

fn cpus(c: &Option<Vec<usize>>) -> String {
    match c {
        Some(v) if !v.is_empty() => v.iter().map(usize::to_string).collect::<Vec<_>>().join(","),
        _ => "not pinned".into(),
    }
}

fn metadata_section(out: &mut String, runs: &[LoadedRun]) {
    out.push_str("<h2 id=\"metadata\">Run metadata</h2>\n");
    for run in runs {
        let s = &run.summary;
        let _ = writeln!(
            out,
            "<h3>{}</h3>\n<dl>",
            esc(&format!("{} ({})", run.label, run.source.display()))
        );
        let models: Vec<&str> = s.models.iter().map(|m| m.model.as_str()).collect();
        let points: Vec<String> = s
            .points
            .iter()
            .map(|p| format!("{} ({})", p.name, describe(p)))
            .collect();
        let warnings = if s.warnings.is_empty() {
            "none".to_owned()
        } else {
            s.warnings.join("; ")
        };
        // A summary made from one `load --json` file has no start time and no server side:
        // say "unknown" rather than guess (an unpinned server, a run never finished).
        let single = s.started.is_empty();
        let unknown = || "unknown (a single load result)".to_owned();
        let rows: [(&str, String); 18] = [
            ("host OS", s.host.os.clone()),
            ("kernel", s.host.kernel.clone()),
            ("CPU", s.host.cpu.clone()),
            ("cores", s.host.cores.to_string()),
            (
                "server CPUs",
                if single && s.server_cpus.is_none() {
                    unknown()
                } else {
                    cpus(&s.server_cpus)
                },
            ),
            ("client CPUs", cpus(&s.client_cpus)),
            ("tool version", s.tool_version.clone()),
            (
                "git commit",
                s.git_commit.clone().unwrap_or_else(|| "unknown".into()),
            ),
            (
                "started",
                if single { unknown() } else { s.started.clone() },
            ),
            (
                "finished",
                match (&s.finished, single) {
                    (Some(f), _) => f.clone(),
                    (None, true) => unknown(),
                    (None, false) => "not finished".into(),
                },
            ),
            ("rounds", s.rounds.to_string()),
            ("duration per point", format!("{} s", num(s.duration_s))),
            ("warm-up", format!("{} s", num(s.warmup_s))),
            ("models", models.join(", ")),
            ("points", points.join("; ")),
            ("command", s.command.clone()),
            ("warnings", warnings),
            (
                "interrupted",
                if s.interrupted { "yes" } else { "no" }.into(),
            ),
        ];
        for (k, v) in rows {
            let v = if k == "command" {
                format!("<code>{}</code>", esc(&v))
            } else {
                esc(&v)
            };
            let _ = writeln!(out, "<dt>{}</dt><dd>{v}</dd>", esc(k));
        }
        out.push_str("</dl>\n");
    }
}

pub(super) fn swatch(c: RGBColor) -> String {
    format!(
        "<span class=\"sw\" style=\"background:#{:02x}{:02x}{:02x}\"></span>",
        c.0, c.1, c.2
    )
}

/// Escape text for HTML element content and attribute values.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A fragment id from a point name: letters, digits and `-` only.
fn anchor(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// A number with three significant digits at most, no exponent: 0.0123, 4.56, 78.9, 1234.
pub(super) fn num(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let a = v.abs();
    let decimals = if a == 0.0 || a >= 100.0 {
        0
    } else if a >= 10.0 {
        1
    } else if a >= 1.0 {
        2
    } else {
        (2 - a.log10().floor() as i32).clamp(2, 6) as usize
    };
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// A large number with `k`/`M`: 950, 12k, 1.5M (axis labels and bar ends).
pub(super) fn si(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", num(v / 1e6))
    } else if a >= 1e3 {
        format!("{}k", num(v / 1e3))
    } else {
        num(v)
    }
}

/// A whole number with thousands separators: 12,345.
pub(super) fn grouped(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 && digits != "0" {
        out.insert(0, '-');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::record::tests::fixture;
    use crate::record::{Failure, PointResult, Summary};

    const POINTS: [(&str, usize, usize, Option<f64>); 4] = [
        ("latency", 1, 64, None),
        ("throughput", 50, 512, None),
        ("heavy", 500, 512, None),
        ("open", 50, 512, Some(0.5)),
    ];

    /// A latency histogram (ns) with a body around `us` µs and a tail that grows with `tail`,
    /// from a fixed pseudo-random sequence so every test run draws the same picture.
    fn histogram(us: f64, tail: f64, n: u64) -> Histogram<u64> {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            // Exponential body plus a Pareto-like tail: rare requests much slower.
            let v = us * (0.8 + 0.4 * u) + us * tail * (1.0 / (1.0 - u).max(1e-6)).powf(0.7) * 0.05;
            h.record((v * 1000.0) as u64).unwrap();
        }
        h
    }

    /// One round of `model` at `point`, with its figures scaled from a base.
    fn round(model: &str, rps: f64, us: f64, tail: f64) -> (PointResult, Histogram<u64>) {
        let mut r = fixture(model, rps, us);
        let h = histogram(us, tail, 20_000);
        r.report.latency_us = loadgen::LatencySummary::from_ns(&h);
        (r, h)
    }

    /// A run of `models` (name, rps at 50 connections, p50 at 1 connection, tail factor), three
    /// rounds each, and one model (`broken`) that failed every point.
    fn run(label: &str, models: &[(&str, f64, f64, f64)], broken: Option<&str>) -> LoadedRun {
        let mut histograms = BTreeMap::new();
        let mut summaries = Vec::new();
        for (mi, (model, rps, us, tail)) in models.iter().enumerate() {
            let mut points = Vec::new();
            for (point, conns, _, open) in POINTS {
                let scale = (conns as f64).sqrt();
                let rounds: Vec<(PointResult, Histogram<u64>)> = (0..3)
                    .map(|k| {
                        let jitter = 1.0 + 0.04 * ((k + mi) % 3) as f64;
                        let rps = rps * jitter * if conns == 1 { 0.2 } else { 1.0 };
                        let us = us * scale * jitter * if open.is_some() { 0.5 } else { 1.0 };
                        round(model, rps, us, *tail)
                    })
                    .collect();
                let refs: Vec<(usize, &PointResult)> = rounds
                    .iter()
                    .enumerate()
                    .map(|(i, (r, _))| (i + 1, r))
                    .collect();
                let s = PointSummary::from_rounds(point, format!("{model}/{point}.json"), &refs)
                    .unwrap();
                histograms.insert(
                    (model.to_string(), point.to_string()),
                    rounds[s.median_round - 1].1.clone(),
                );
                points.push(s);
            }
            summaries.push(ModelSummary {
                model: model.to_string(),
                description: format!("{model} echo server"),
                points,
                failures: vec![],
            });
        }
        if let Some(b) = broken {
            summaries.push(ModelSummary {
                model: b.into(),
                description: "always fails".into(),
                points: vec![],
                failures: POINTS
                    .iter()
                    .map(|(p, ..)| Failure {
                        point: p.to_string(),
                        round: 1,
                        error: format!("server exited: <{b}> & died"),
                    })
                    .collect(),
            });
        }
        let f = fixture("x", 1.0, 1.0);
        LoadedRun {
            label: label.into(),
            source: format!("results/{label}").into(),
            summary: Summary {
                schema: crate::record::SUMMARY_SCHEMA.into(),
                tool_version: "0.1.0".into(),
                git_commit: Some("abc123".into()),
                command: "iomodels run --rounds 3".into(),
                started: "2026-01-01T00:00:00Z".into(),
                finished: Some("2026-01-01T00:10:00Z".into()),
                host: f.report.host.clone(),
                server_cpus: Some(vec![0]),
                client_cpus: Some(vec![1]),
                rounds: 3,
                duration_s: 3.0,
                warmup_s: 1.0,
                points: POINTS
                    .iter()
                    .map(|(name, connections, size, rate)| PointSpec {
                        name: name.to_string(),
                        connections: *connections,
                        size: *size,
                        depth: 1,
                        rate_of_throughput: *rate,
                        ..Default::default()
                    })
                    .collect(),
                models: summaries,
                interrupted: false,
                warnings: vec!["a <warning> & more".into()],
            },
            histograms,
            explains: Default::default(),
        }
    }

    const MODELS: [(&str, f64, f64, f64); 5] = [
        ("epoll", 52_000.0, 21.0, 1.0),
        ("io_uring", 61_000.0, 19.0, 0.8),
        ("threads", 38_000.0, 24.0, 2.5),
        ("tokio", 47_000.0, 23.0, 1.2),
        ("select", 30_000.0, 26.0, 1.5),
    ];

    /// The SVG documents in `html`, in order.
    fn svgs(html: &str) -> Vec<&str> {
        html.split("<svg")
            .skip(1)
            .map(|s| &s[..s.find("</svg>").expect("closed svg")])
            .collect()
    }

    #[test]
    fn one_run_draws_every_plot_with_marks_for_every_model() {
        let html = render(&[run("r1", &MODELS, Some("broken"))]);
        // 4 points × (spectrum, throughput, CPU) + 3 against-connections plots.
        let svgs = svgs(&html);
        assert_eq!(svgs.len(), 4 * 3 + 3, "{}", svgs.len());
        for (model, ..) in MODELS {
            assert!(html.contains(model), "{model} missing");
        }
        // Spectra: one line per model, each a polyline (plotters' SVG line).
        for i in [0, 3, 6, 9] {
            let lines = svgs[i].matches("<polyline").count();
            assert!(lines >= MODELS.len(), "spectrum {i}: {lines} lines");
        }
        // Bars: a filled rect per model beyond the background.
        for i in [1, 2, 4, 5, 7, 8, 10, 11] {
            let rects = svgs[i].matches("<rect").count();
            assert!(rects > MODELS.len(), "bar chart {i}: {rects} rects");
        }
        // Text is SVG text (no font rasteriser), and axis labels appear.
        assert!(svgs[0].contains("<text") && svgs[0].contains("99.9%"));
        assert!(html.matches("<figcaption>").count() == svgs.len());
    }

    #[test]
    fn nothing_is_fetched_and_text_is_escaped() {
        let html = render(&[run("r<1>&", &MODELS[..2], Some("broken"))]);
        let without_xmlns = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        assert!(!without_xmlns.contains("http://"));
        assert!(!without_xmlns.contains("https://"));
        assert!(!html.contains("<script"));
        assert!(!html.contains("<broken>"));
        assert!(html.contains("&lt;broken&gt; &amp; died"));
        assert!(html.contains("r&lt;1&gt;&amp;"));
        assert!(html.contains("a &lt;warning&gt; &amp; more"));
    }

    #[test]
    fn a_model_that_failed_everywhere_is_listed_not_drawn() {
        let html = render(&[run("r1", &MODELS[..2], Some("broken"))]);
        let failures = &html[html.find("id=\"failures\"").expect("failures section")..];
        assert!(failures.matches("broken").count() >= 4);
        let before = &html[..html.find("id=\"failures\"").unwrap()];
        assert!(!before.contains("broken"), "broken drawn somewhere");
    }

    #[test]
    fn a_saturated_point_says_why_under_its_table() {
        let mut r = run("r1", &MODELS[..2], None);
        r.summary.models[0].points[0].saturation =
            vec!["round 1: saturated: the generator sent late".into()];
        let html = render(&[r]);
        assert!(html.contains("the generator sent late"), "reason missing");
        assert!(html.contains("corrected latency above includes the wait"));
    }

    #[test]
    fn points_nobody_measured_get_no_section() {
        let mut r = run("r1", &MODELS[..2], None);
        for m in &mut r.summary.models {
            m.points.retain(|p| p.point == "throughput");
        }
        r.histograms.retain(|(_, p), _| p == "throughput");
        let html = render(&[r]);
        assert!(html.contains("id=\"point-throughput\""));
        assert!(!html.contains("id=\"point-heavy\""));
        // One point: spectrum, throughput and CPU; no against-connections plots.
        assert_eq!(svgs(&html).len(), 3);
    }

    #[test]
    fn two_runs_label_each_series_with_its_run() {
        let html = render(&[
            run("before", &MODELS[..2], None),
            run("after", &MODELS[..3], None),
        ]);
        assert!(html.contains("epoll (before)") && html.contains("epoll (after)"));
        assert!(html.contains("threads (after)"));
        let spectrum = svgs(&html)[0];
        // 2 + 3 series: the later run's lines are dashed (many short polylines).
        assert!(spectrum.matches("<polyline").count() >= 5);
    }

    /// `udp-open` is an open loop at a fixed rate over UDP sockets: described so, and kept off
    /// the connection-count plots, which only TCP closed-loop points share an axis on.
    #[test]
    fn udp_points_are_described_as_what_they_are_and_not_drawn_against_connections() {
        let spec = |name: &str, connections, proto, rate_rps| PointSpec {
            name: name.into(),
            connections,
            size: 512,
            depth: 1,
            rate_of_throughput: None,
            proto,
            rate_rps,
        };
        let open = spec("udp-open", 50, loadgen::Proto::Udp, Some(20_000.0));
        let d = describe(&open);
        assert!(
            d.contains("50 UDP sockets") && d.contains("open loop at 20000 per second"),
            "{d}"
        );
        assert!(!d.contains("closed loop"), "{d}");
        let lat = spec("udp-latency", 1, loadgen::Proto::Udp, None);
        assert!(
            describe(&lat).contains("1 UDP socket ×"),
            "{}",
            describe(&lat)
        );
        // The fixture's runs measured "latency", "throughput" and "heavy"; here "heavy" is
        // declared a UDP open-loop point, which must not join the connection axis.
        let tcp = [
            spec("latency", 1, loadgen::Proto::Tcp, None),
            spec("throughput", 50, loadgen::Proto::Tcp, None),
        ];
        let udp = spec("heavy", 500, loadgen::Proto::Udp, Some(20_000.0));
        let all: Vec<&PointSpec> = vec![&tcp[0], &tcp[1], &udp];
        let runs = [run("r1", &MODELS, None)];
        let series = series(&runs);
        let names: Vec<&str> = scaling_points(&all, &series)
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["latency", "throughput"]);
    }

    #[test]
    fn no_runs_is_an_empty_page_not_a_panic() {
        let html = render(&[]);
        assert!(html.starts_with("<!DOCTYPE html>") && html.ends_with("</html>\n"));
        assert!(svgs(&html).is_empty());
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(num(0.01234), "0.0123");
        assert_eq!(num(4.5), "4.5");
        assert_eq!(num(78.94), "78.9");
        assert_eq!(num(1234.4), "1234");
        assert_eq!(si(52_000.0), "52k");
        assert_eq!(si(1_500_000.0), "1.5M");
        assert_eq!(grouped(1_234_567.0), "1,234,567");
        assert_eq!(grouped(999.0), "999");
        assert_eq!(percentile_label(0.0), "0%");
        assert_eq!(percentile_label(1.0), "90%");
        assert_eq!(percentile_label(2.0), "99%");
        assert_eq!(percentile_label(3.0), "99.9%");
        assert_eq!(percentile_label(4.0), "99.99%");
        // 1000 samples: the line starts at the minimum, ends at the maximum at x = 3, and
        // passes p99 at x = 2.
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let pts = spectrum_points(&h);
        assert_eq!(pts[0], (0.0, 1.0));
        let (x, y) = *pts.last().unwrap();
        assert!(
            (x - 3.0).abs() < 1e-9 && (y - 1000.0).abs() < 1.0,
            "{x} {y}"
        );
        let p99 = pts.iter().find(|(x, _)| (x - 2.0).abs() < 1e-9).unwrap().1;
        assert!((p99 - 990.0).abs() < 2.0, "{p99}");
        let ticks = log_ticks(8.0, 900.0);
        assert_eq!(ticks, vec![10.0, 30.0, 100.0, 300.0]);
    }

    /// Writes the fixture report to `target/report-fixture.html` (one run) and
    /// `target/report-fixture-two-runs.html` when `IOMODELS_WRITE_FIXTURE_REPORT` is set: what
    /// `scripts/check-report.sh` is tried on.
    #[test]
    fn write_fixture_report_when_asked() {
        if std::env::var_os("IOMODELS_WRITE_FIXTURE_REPORT").is_none() {
            return;
        }
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
        std::fs::create_dir_all(&dir).unwrap();
        let one = render(&[run("20260101T000000Z-fixture", &MODELS, Some("broken"))]);
        let after: Vec<_> = MODELS[..3]
            .iter()
            .map(|&(m, rps, us, tail)| (m, rps * 1.15, us * 0.8, tail * 0.6))
            .collect();
        let two = render(&[
            run("before", &MODELS[..3], None),
            run("after", &after, Some("broken")),
        ]);
        for (name, html) in [
            ("report-fixture.html", one),
            ("report-fixture-two-runs.html", two),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, html).unwrap();
            eprintln!("wrote {}", path.display());
        }
    }
}
