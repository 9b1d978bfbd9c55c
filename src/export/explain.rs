//! Formatting a result's `explain` (kernel counts per request): the text lines `load --explain`
//! prints, the cells `compare --explain` adds, and the report's stacked bars of system calls by
//! name and row of context switches (SVG through plotters, like the rest of `report.html`).
//!
//! Deliberately no arithmetic beyond choosing what to show: the figures are computed once in
//! [`crate::explain`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;

use plotters::prelude::*;

use super::LoadedRun;
use crate::explain::{Explain, Side};

/// How many calls a cell or a bar names before folding the rest into "other".
pub const TOP: usize = 4;

/// `load --explain`'s lines, after the summary.
pub fn write_text(out: &mut impl Write, e: &Explain) -> std::io::Result<()> {
    writeln!(
        out,
        "  kernel counts per request ({:.2} s window, {} requests):",
        e.window_s, e.requests
    )?;
    for (name, side) in [("server", &e.server), ("client", &e.client)] {
        if let Some(s) = side {
            writeln!(out, "    {name} (pid {}): {}", s.pid, side_line(s))?;
        }
    }
    if !e.unavailable.is_empty() {
        writeln!(out, "    not counted: {}", e.unavailable.join("; "))?;
    }
    Ok(())
}

/// One side in words: syscalls with the top calls, context switches with their split,
/// wake-ups, and io_uring's events when there were any.
pub fn side_line(s: &Side) -> String {
    let mut l = format!(
        "{:.2} syscalls ({}), {:.3} context switches",
        s.syscalls_per_request,
        top_calls(s),
        s.context_switches_per_request
    );
    if let (Some(v), Some(i)) = (
        s.voluntary_context_switches_per_request,
        s.involuntary_context_switches_per_request,
    ) {
        let _ = write!(l, " (voluntary {v:.3}, involuntary {i:.3})");
    }
    let _ = write!(l, ", {:.3} wake-ups", s.wakeups_per_request);
    if let Some(u) = &s.io_uring {
        let _ = write!(
            l,
            "; io_uring submit_req {:.2}, task_work_run {:.2}, local_work_run {:.2}, \
             queue_async_work {:.3}, poll_arm {:.2}",
            u.submit_req, u.task_work_run, u.local_work_run, u.queue_async_work, u.poll_arm
        );
    }
    l
}

/// `recvfrom 1.00, sendto 1.00, epoll_wait 0.03, other 0.02` (the [`TOP`] calls).
pub fn top_calls(s: &Side) -> String {
    let mut parts: Vec<String> = s
        .top_calls(TOP)
        .into_iter()
        .filter(|(_, v)| *v >= 0.005)
        .map(|(n, v)| format!("{n} {v:.2}"))
        .collect();
    let other = s.syscalls_per_request - s.top_calls(TOP).iter().map(|(_, v)| v).sum::<f64>();
    if other >= 0.005 {
        parts.push(format!("other {other:.2}"));
    }
    parts.join(", ")
}

/// The report's figure: per model (in `rows` order), a horizontal bar of the server's system
/// calls per request stacked by name (each model's top calls, the rest as "other"), and beside
/// it the server's context switches per request. `rows` is `(model, server side)`.
pub fn svg(rows: &[(String, Side)]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    // Every call that is among some model's top ones gets a colour; the rest is "other".
    let mut names: Vec<String> = Vec::new();
    for (_, s) in rows {
        for (n, _) in s.top_calls(TOP) {
            if !names.iter().any(|x| x == n) {
                names.push(n.to_owned());
            }
        }
    }
    let colour = |i: usize| Palette99::pick(i).to_rgba();
    let max_calls = rows
        .iter()
        .map(|(_, s)| s.syscalls_per_request)
        .fold(0.0, f64::max)
        .max(0.1)
        * 1.7; // room on the right for the legend
    let max_cs = rows
        .iter()
        .map(|(_, s)| s.context_switches_per_request)
        .fold(0.0, f64::max)
        .max(0.01)
        * 1.1;
    let height = 110 + 28 * rows.len().max(5) as u32;
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (900, height)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let (left, right) = root.split_horizontally(600);
        let n = rows.len() as i32;
        let label = |y: &i32| {
            usize::try_from(n - 1 - *y)
                .ok()
                .and_then(|i| rows.get(i))
                .map(|(m, _)| m.clone())
                .unwrap_or_default()
        };
        if let Ok(mut chart) = ChartBuilder::on(&left)
            .caption(
                "server system calls per request, by name",
                ("sans-serif", 16),
            )
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(120)
            .build_cartesian_2d(0.0..max_calls, (0..n - 1).into_segmented())
        {
            let _ = chart
                .configure_mesh()
                .disable_y_mesh()
                .y_label_formatter(&|v| match v {
                    SegmentValue::CenterOf(y) => label(y),
                    _ => String::new(),
                })
                .y_labels(rows.len())
                .x_desc("syscalls / request")
                .draw();
            for (row, (_, s)) in rows.iter().enumerate() {
                let y = n - 1 - row as i32;
                let mut x = 0.0;
                let mut segments: Vec<(usize, f64)> = s
                    .by_name
                    .iter()
                    .filter_map(|(k, v)| names.iter().position(|x| x == k).map(|i| (i, *v)))
                    .collect();
                segments.sort_by_key(|(i, _)| *i);
                let named: f64 = segments.iter().map(|(_, v)| v).sum();
                segments.push((usize::MAX, (s.syscalls_per_request - named).max(0.0)));
                for (i, v) in segments {
                    let style = if i == usize::MAX {
                        RGBAColor(160, 160, 160, 1.0).filled()
                    } else {
                        colour(i).filled()
                    };
                    let _ = chart.draw_series(std::iter::once(Rectangle::new(
                        [
                            (x, SegmentValue::Exact(y)),
                            (x + v, SegmentValue::Exact(y + 1)),
                        ],
                        style,
                    )));
                    x += v;
                }
            }
            // The legend: one swatch per named call, then "other".
            for (i, name) in names
                .iter()
                .chain(std::iter::once(&"other".to_owned()))
                .enumerate()
            {
                let c = if i < names.len() {
                    colour(i)
                } else {
                    RGBAColor(160, 160, 160, 1.0)
                };
                let _ = chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(0.0, SegmentValue::Exact(0)), (0.0, SegmentValue::Exact(0))],
                        c.filled(),
                    )))
                    .map(|s| {
                        s.label(name.clone()).legend(move |(x, y)| {
                            Rectangle::new([(x, y - 5), (x + 10, y + 5)], c.filled())
                        })
                    });
            }
            let _ = chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw();
        }
        if let Ok(mut chart) = ChartBuilder::on(&right)
            .caption("context switches per request", ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(10)
            .build_cartesian_2d(0.0..max_cs, (0..n - 1).into_segmented())
        {
            let _ = chart
                .configure_mesh()
                .disable_y_mesh()
                .y_label_formatter(&|_| String::new())
                .x_desc("switches / request")
                .draw();
            let _ = chart.draw_series(rows.iter().enumerate().map(|(row, (_, s))| {
                let y = n - 1 - row as i32;
                Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(y)),
                        (s.context_switches_per_request, SegmentValue::Exact(y + 1)),
                    ],
                    RGBAColor(200, 90, 60, 1.0).filled(),
                )
            }));
        }
        let _ = root.present();
    }
    text
}

/// Explains of a run, keyed like its histograms: (model, point).
pub type Explains = BTreeMap<(String, String), Explain>;

/// One row of `compare --explain`: a run's model at a point, with its explain.
struct Row<'a> {
    run: &'a str,
    model: &'a str,
    point: &'a str,
    explain: &'a Explain,
}

/// Every (run, model, point) that has an explain, in the runs' point and model order.
fn rows(runs: &[LoadedRun]) -> Vec<Row<'_>> {
    let mut out = Vec::new();
    for r in runs {
        for spec in &r.summary.points {
            for m in &r.summary.models {
                if let Some(e) = r.explains.get(&(m.model.clone(), spec.name.clone())) {
                    out.push(Row {
                        run: &r.label,
                        model: &m.model,
                        point: &spec.name,
                        explain: e,
                    });
                }
            }
        }
    }
    out
}

/// The four figures of one side; the last is its top calls and, for an io_uring process, the
/// work io_uring did per request without a system call of its own (so a model making 0.07
/// calls per request is not read as doing nothing).
fn cells(s: Option<&Side>) -> [String; 4] {
    match s {
        Some(s) => [
            format!("{:.2}", s.syscalls_per_request),
            format!("{:.3}", s.context_switches_per_request),
            format!("{:.3}", s.wakeups_per_request),
            match &s.io_uring {
                Some(u) => format!(
                    "{}; io_uring: {:.2} submitted, {:.2} task-work runs, {:.2} poll arms, {:.3} io-wq punts",
                    top_calls(s),
                    u.submit_req,
                    u.task_work_run + u.local_work_run,
                    u.poll_arm,
                    u.queue_async_work
                ),
                None => top_calls(s),
            },
        ],
        None => ["–".into(), "–".into(), "–".into(), "–".into()],
    }
}

/// `compare --explain`'s table (terminal or Markdown), after the comparison: per point, a row
/// per run × model with the server's and the client's system calls, context switches and
/// wake-ups per request and the server's top calls. Results without `explain` are listed as
/// such so a missing figure is never mistaken for zero.
pub fn table(runs: &[LoadedRun], markdown: bool) -> String {
    use comfy_table::{Table, presets};
    let mut out = String::new();
    let rows = rows(runs);
    let several = runs.len() > 1;
    let mut points: Vec<&str> = Vec::new();
    for r in &rows {
        if !points.contains(&r.point) {
            points.push(r.point);
        }
    }
    for point in points {
        let title = format!("kernel counts per request: {point}");
        if markdown {
            let _ = writeln!(out, "\n### {title}\n");
        } else {
            let _ = writeln!(out, "\n{title}");
        }
        let mut t = Table::new();
        t.load_preset(if markdown {
            presets::ASCII_MARKDOWN
        } else {
            presets::UTF8_FULL_CONDENSED
        });
        t.force_no_tty();
        let mut header = vec![];
        if several {
            header.push("run");
        }
        header.extend([
            "model",
            "server syscalls/req",
            "server ctx sw/req",
            "server wake-ups/req",
            "server top calls (+ io_uring work)",
            "client syscalls/req",
            "client ctx sw/req",
            "client wake-ups/req",
            "client top calls",
        ]);
        t.set_header(header);
        for r in rows.iter().filter(|r| r.point == point) {
            let mut line: Vec<String> = vec![];
            if several {
                line.push(r.run.to_owned());
            }
            line.push(r.model.to_owned());
            line.extend(cells(r.explain.server.as_ref()));
            line.extend(cells(r.explain.client.as_ref()));
            t.add_row(line);
        }
        let _ = writeln!(out, "{t}");
    }
    let missing: Vec<String> = runs
        .iter()
        .flat_map(|r| {
            r.summary.models.iter().flat_map(move |m| {
                m.points
                    .iter()
                    .filter(move |p| !r.explains.contains_key(&(m.model.clone(), p.point.clone())))
                    .map(move |p| format!("{}/{}", m.model, p.point))
            })
        })
        .collect();
    if rows.is_empty() {
        out.push_str(
            "\nkernel counts per request: none of these results has them (measured by `run` and \
             `load --explain` where perf_event_open is allowed: root or CAP_PERFMON; a refused \
             result says why in its warnings)\n",
        );
    } else if !missing.is_empty() {
        let _ = writeln!(
            out,
            "no kernel counts in: {} (see each result's warnings)",
            missing.join(", ")
        );
    }
    let unavailable: Vec<&str> = rows
        .iter()
        .flat_map(|r| r.explain.unavailable.iter().map(String::as_str))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if !unavailable.is_empty() {
        let _ = writeln!(out, "not counted: {}", unavailable.join("; "));
    }
    out
}

/// `compare --explain --format json`: the rows as `[{run, model, point, explain}]`.
pub fn json_rows(runs: &[LoadedRun]) -> serde_json::Value {
    serde_json::Value::Array(
        rows(runs)
            .into_iter()
            .map(|r| {
                serde_json::json!({
                    "run": r.run,
                    "model": r.model,
                    "point": r.point,
                    "explain": r.explain,
                })
            })
            .collect(),
    )
}

/// Whether any run has kernel counts (the report's navigation links the section only then).
pub fn any(runs: &[LoadedRun]) -> bool {
    runs.iter().any(|r| !r.explains.is_empty())
}

/// The report's section (`id="explain"`): per run and point, the stacked bars of [`svg`] over
/// the server sides, and a table of both sides' figures. Empty when no run has kernel counts.
pub fn html_section(runs: &[LoadedRun]) -> String {
    if !any(runs) {
        return String::new();
    }
    let mut out = String::from(
        "<h2 id=\"explain\">Why: kernel counts per request</h2>\n<p class=\"what\">Counted \
         from kernel tracepoints in a measurement of its own after the rounds (the counters \
         cost CPU, so the rounds ran without them), over its measured window and divided \
         by its requests: system calls by name (<code>syscalls:sys_enter_*</code>; grey is every \
         other call, from <code>raw_syscalls:sys_enter</code>), context switches (switched out, \
         voluntarily or preempted). Fewer of each is less kernel work per request; a context \
         switch per request is a thread put to sleep and woken for each one.</p>\n",
    );
    for r in runs {
        for spec in &r.summary.points {
            let sides: Vec<(String, Side)> = r
                .summary
                .models
                .iter()
                .filter_map(|m| {
                    let e = r.explains.get(&(m.model.clone(), spec.name.clone()))?;
                    Some((m.model.clone(), e.server.clone()?))
                })
                .collect();
            if sides.is_empty() {
                continue;
            }
            let title = if runs.len() > 1 {
                format!("{} — {}", spec.name, r.label)
            } else {
                spec.name.clone()
            };
            let _ = writeln!(
                out,
                "<h3>{}</h3>\n<div class=\"fig\">{}</div>",
                esc(&title),
                svg(&sides)
            );
            out.push_str(
                "<table><tr><th>model</th><th>server syscalls/req</th><th>server ctx switches/req</th>\
                 <th>server wake-ups/req</th><th>server top calls (+ io_uring work)</th>\
                 <th>client syscalls/req</th><th>client ctx switches/req</th>\
                 <th>client wake-ups/req</th></tr>\n",
            );
            for m in &r.summary.models {
                let Some(e) = r.explains.get(&(m.model.clone(), spec.name.clone())) else {
                    continue;
                };
                let [s1, s2, s3, s4] = cells(e.server.as_ref());
                let [c1, c2, c3, _] = cells(e.client.as_ref());
                let _ = writeln!(
                    out,
                    "<tr><td>{}</td><td>{s1}</td><td>{s2}</td><td>{s3}</td><td>{}</td>\
                     <td>{c1}</td><td>{c2}</td><td>{c3}</td></tr>",
                    esc(&m.model),
                    esc(&s4)
                );
            }
            out.push_str("</table>\n");
        }
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::Counts;

    fn side(recv: u64, cs: u64) -> Side {
        Side::new(
            1,
            Counts {
                syscalls: 2_200,
                context_switches: cs,
                wakeups: 10,
                by_name: BTreeMap::from([
                    ("recvfrom".into(), recv),
                    ("sendto".into(), 1_000),
                    ("epoll_wait".into(), 150),
                ]),
                threads: 1,
                ..Counts::default()
            },
            1_000,
        )
    }

    #[test]
    fn the_text_names_the_top_calls_and_the_rest() {
        let s = side(1_000, 7);
        assert_eq!(
            top_calls(&s),
            "recvfrom 1.00, sendto 1.00, epoll_wait 0.15, other 0.05"
        );
        let e = Explain {
            window_s: 1.0,
            requests: 1_000,
            server: Some(s.clone()),
            client: Some(s),
            unavailable: vec!["syscalls:sys_enter_x: no such tracepoint".into()],
        };
        let mut out = Vec::new();
        write_text(&mut out, &e).unwrap();
        let t = String::from_utf8(out).unwrap();
        assert!(t.contains("server (pid 1): 2.20 syscalls"), "{t}");
        assert!(t.contains("0.007 context switches"), "{t}");
        assert!(t.contains("not counted: syscalls:sys_enter_x"), "{t}");
    }

    #[test]
    fn the_svg_has_a_bar_per_model_and_the_legend() {
        let svg = svg(&[
            ("epoll".into(), side(1_000, 7)),
            ("blocking".into(), side(900, 1_500)),
        ]);
        for needle in ["epoll", "blocking", "recvfrom", "other", "<rect"] {
            assert!(svg.contains(needle), "{needle} missing");
        }
        assert!(svg.matches("<rect").count() >= 8, "bars drawn");
        assert_eq!(super::svg(&[]), "");
    }
}
