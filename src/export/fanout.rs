//! Fan-out records (`iomodels.fanout/1`) as `compare` shows them: a table of every mode × N
//! (text, Markdown, CSV, JSON) and an HTML report with two charts against N, sender CPU per
//! message and wire packets per message, one line per mode.
//!
//! The figures are [`crate::record::fanout::points`]'s, computed once; this module only formats
//! them, with `html.rs`'s plotting helpers. It does not read files (the loader does).

use std::error::Error;
use std::fmt::Write as _;

use comfy_table::{Table, presets};
use plotters::prelude::*;

use super::html::{CSS, PALETTE, esc, log_range, log_ticks, mesh, num, series_labels, svg, swatch};
use super::table::Format;
use crate::record::fanout::{FanoutPoint, FanoutRecord, points};

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.2}"))
}

/// Every mode × N of `records` in `format`.
pub fn table(records: &[FanoutRecord], format: Format) -> String {
    let ps = points(records);
    let header = [
        "mode",
        "N",
        "rounds",
        "CPU µs/msg (in send)",
        "CPU µs/msg (thread)",
        "send calls/msg",
        "wire packets/msg",
        "delivered",
        "interface",
    ];
    let row = |p: &FanoutPoint| -> Vec<String> {
        vec![
            p.mode.clone(),
            p.receivers.to_string(),
            p.rounds.to_string(),
            opt(p.in_send_us_per_message),
            format!("{:.2}", p.cpu_us_per_message),
            format!("{:.2}", p.syscalls_per_message),
            opt(p.wire_packets_per_message),
            format!("{:.4}", p.delivered_ratio),
            p.interfaces.clone(),
        ]
    };
    match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&serde_json::json!({ "fanout": ps }))
                .unwrap_or_default();
            s.push('\n');
            s
        }
        Format::Csv => {
            let mut s = header.join(",") + "\n";
            for p in &ps {
                s += &(row(p).join(",") + "\n");
            }
            s
        }
        Format::Table | Format::Markdown => {
            let mut t = Table::new();
            t.load_preset(if format == Format::Markdown {
                presets::ASCII_MARKDOWN
            } else {
                presets::UTF8_FULL_CONDENSED
            });
            t.set_header(header.to_vec());
            for p in &ps {
                t.add_row(row(p));
            }
            format!("{t}\n")
        }
    }
}

/// Lines of one figure: per mode, (N, y) for every point that has y.
fn lines(ps: &[FanoutPoint], y: fn(&FanoutPoint) -> Option<f64>) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut out: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for p in ps {
        let Some(v) = y(p).filter(|v| *v > 0.0) else {
            continue;
        };
        match out.iter_mut().find(|(m, _)| *m == p.mode) {
            Some((_, pts)) => pts.push((p.receivers as f64, v)),
            None => out.push((p.mode.clone(), vec![(p.receivers as f64, v)])),
        }
    }
    out
}

/// One chart: log N on x, log y, a line and points per mode.
fn chart(lines: &[(String, Vec<(f64, f64)>)], y_desc: &str) -> String {
    let xs = lines.iter().flat_map(|(_, p)| p.iter().map(|q| q.0));
    let (x_max, x_min) = xs.fold((1.0f64, f64::INFINITY), |(hi, lo), x| {
        (hi.max(x), lo.min(x))
    });
    let (x_lo, x_hi) = (x_min.min(1.0) / 1.3, x_max * 1.3);
    let (y_lo, y_hi) = log_range(lines.iter().flat_map(|(_, p)| p.iter().map(|q| q.1)));
    svg((760, 420), |root| -> Result<(), Box<dyn Error>> {
        let mut c = ChartBuilder::on(root)
            .margin(12)
            .margin_right(24)
            .x_label_area_size(46)
            .y_label_area_size(74)
            .build_cartesian_2d(
                (x_lo..x_hi)
                    .log_scale()
                    .with_key_points(log_ticks(x_lo.max(1.0), x_hi)),
                (y_lo..y_hi)
                    .log_scale()
                    .with_key_points(log_ticks(y_lo, y_hi)),
            )?;
        mesh(&mut c, "receivers (N)", y_desc, &|v| num(*v), &|v| num(*v))?;
        for (i, (mode, pts)) in lines.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            let style = colour.stroke_width(2);
            c.draw_series(LineSeries::new(pts.iter().copied(), style))?
                .label(mode.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], style));
            c.draw_series(pts.iter().map(|&p| Circle::new(p, 4, colour.filled())))?;
        }
        series_labels(&mut c, SeriesLabelPosition::UpperLeft)?;
        Ok(())
    })
}

/// The fan-out report: one self-contained HTML document (inline CSS and SVG, no script).
pub fn html(records: &[FanoutRecord]) -> String {
    let ps = points(records);
    let mut out = String::with_capacity(64 * 1024);
    let title = "iomodels fan-out report";
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n<h1>{title}</h1>\n\
         <p class=\"what\">One sender, N receivers, the same message to each: N × TCP, N × UDP, \
         one multicast send, one broadcast send. {} records; each point takes the least CPU of \
         its rounds and the median wire count.</p>\n",
        records.len()
    );
    let modes = lines(&ps, |p| Some(p.cpu_us_per_message));
    let _ = write!(out, "<div class=\"key\">");
    for (i, (m, _)) in modes.iter().enumerate() {
        let _ = write!(
            out,
            "<span>{}{}</span>",
            swatch(PALETTE[i % PALETTE.len()]),
            esc(m)
        );
    }
    out.push_str("</div>\n");
    let in_send = lines(&ps, |p| p.in_send_us_per_message);
    let (cpu, cpu_desc, cpu_caption) = if in_send.is_empty() {
        (
            modes,
            "sender CPU µs per message",
            "Sender CPU per message against N (the sending thread, pacing sleeps included).",
        )
    } else {
        (
            in_send,
            "sender CPU µs per message (in send calls)",
            "Sender CPU per message against N: the sending thread's CPU inside its send calls.",
        )
    };
    let _ = writeln!(
        out,
        "<figure>\n{}<figcaption>{}</figcaption>\n</figure>",
        chart(&cpu, cpu_desc),
        esc(cpu_caption)
    );
    let wire = lines(&ps, |p| p.wire_packets_per_message);
    if wire.is_empty() {
        out.push_str("<p>No wire counts in these records (not measured on this OS).</p>\n");
    } else {
        let _ = writeln!(
            out,
            "<figure>\n{}<figcaption>{}</figcaption>\n</figure>",
            chart(&wire, "wire packets per message"),
            esc("Packets the sender's interface transmitted per message (tx_packets) against N.")
        );
    }
    out.push_str(
        "<div class=\"scroll\"><table>\n<thead><tr><th>mode</th><th>N</th><th>rounds</th>\
         <th>CPU µs/msg in send</th><th>CPU µs/msg thread</th><th>send calls/msg</th>\
         <th>wire packets/msg</th><th>delivered</th><th>interface</th></tr></thead>\n<tbody>\n",
    );
    for p in &ps {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td>\
             <td>{}</td><td>{:.4}</td><td>{}</td></tr>",
            esc(&p.mode),
            p.receivers,
            p.rounds,
            opt(p.in_send_us_per_message),
            p.cpu_us_per_message,
            p.syscalls_per_message,
            opt(p.wire_packets_per_message),
            p.delivered_ratio,
            esc(&p.interfaces)
        );
    }
    out.push_str("</tbody></table></div>\n</main>\n</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::fanout::{FANOUT_SCHEMA, SenderCpu};

    fn rec(mode: &str, n: usize, cpu: f64, wire: f64) -> FanoutRecord {
        FanoutRecord {
            schema: FANOUT_SCHEMA.into(),
            mode: mode.into(),
            receivers: n,
            interface: "vethS".into(),
            sender_cpu: SenderCpu {
                us_per_message: cpu + 20.0,
                in_send_us_per_message: Some(cpu),
                ..SenderCpu::default()
            },
            wire_packets_per_message: Some(wire),
            delivered_ratio: 1.0,
            ..FanoutRecord::default()
        }
    }

    fn fixture() -> Vec<FanoutRecord> {
        let mut v = Vec::new();
        for n in [1, 10, 50] {
            v.push(rec("udp", n, 25.0 + n as f64, n as f64));
            v.push(rec("multicast", n, 25.0, 1.0));
        }
        v
    }

    #[test]
    fn the_report_draws_both_charts_with_a_line_per_mode() {
        let h = html(&fixture());
        assert_eq!(h.matches("<svg").count(), 2, "two charts");
        assert!(h.contains("receivers (N)"));
        assert!(h.contains("wire packets per message"));
        assert!(h.contains("in send calls"));
        assert!(h.contains(">multicast<") && h.contains(">udp<"));
        assert!(!h.contains("could not be drawn"));
    }

    #[test]
    fn the_table_has_a_row_per_mode_and_n_in_every_format() {
        let f = fixture();
        let csv = table(&f, Format::Csv);
        assert_eq!(csv.lines().count(), 7, "{csv}");
        assert!(
            csv.lines().nth(1).unwrap().starts_with("udp,1,1,26.00"),
            "{csv}"
        );
        let j: serde_json::Value = serde_json::from_str(&table(&f, Format::Json)).unwrap();
        assert_eq!(j["fanout"].as_array().unwrap().len(), 6);
        assert!(table(&f, Format::Markdown).contains("| multicast"));
    }
}
