//! The human summary `iomodels load` prints on stdout: one header line, throughput, one line per
//! latency distribution, errors, client CPU, warnings.
//!
//! Only formatting: every figure comes from the `loadgen` report, computed once. Deliberately
//! not the JSON or `.hlog` writers (those are the report's own).

use std::io::Write;

use loadgen::Report;

fn latency_line(
    out: &mut impl Write,
    name: &str,
    l: &loadgen::LatencySummary,
) -> std::io::Result<()> {
    writeln!(
        out,
        "  {name:<12} p50 {:>9.1}  p90 {:>9.1}  p99 {:>9.1}  p99.9 {:>9.1}  p99.99 {:>9.1}  max {:>9.1} µs",
        l.p50, l.p90, l.p99, l.p99_9, l.p99_99, l.max
    )
}

/// A UDP run's fates of its datagrams, and the kernel's drop counters when it has them.
fn loss_line(out: &mut impl Write, u: &loadgen::Udp) -> std::io::Result<()> {
    writeln!(
        out,
        "  loss         {:.3}%  sent {}  received {}  lost {}  in flight {}  duplicated {}  reordered {}  late {}",
        u.loss_ratio * 100.0,
        u.sent,
        u.received,
        u.lost,
        u.in_flight,
        u.duplicated,
        u.reordered,
        u.late
    )?;
    if let Some(k) = &u.kernel {
        let own = k
            .own_rcvbuf_drops
            .map_or("n/a".to_owned(), |n| n.to_string());
        writeln!(
            out,
            "  kernel UDP   host-wide: RcvbufErrors {}  InErrors {}  SndbufErrors {};  this generator's sockets dropped {own}",
            k.rcvbuf_errors, k.in_errors, k.sndbuf_errors
        )?;
    }
    Ok(())
}

/// The human summary, on stdout.
pub fn print_summary(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    let o = &r.workload;
    let mode = match (o.rate, o.connect_per_request) {
        (Some(rate), _) => format!("open loop {rate} req/s"),
        (None, true) => "closed loop, connect per request".to_owned(),
        (None, false) => "closed loop".to_owned(),
    };
    let mode = if o.busy_poll {
        format!("{mode}, busy-polling")
    } else {
        mode
    };
    writeln!(
        out,
        "{}{}: {mode}, {} {} × depth {}, {} B, {:.2} s measured{}",
        o.addr,
        if o.proto == loadgen::Proto::Udp {
            " (udp)"
        } else {
            ""
        },
        o.connections,
        if o.proto == loadgen::Proto::Udp {
            "sockets"
        } else {
            "connections"
        },
        o.depth,
        o.size_range
            .map_or(o.size.to_string(), |s| format!("{}..{}", s.min, s.max)),
        r.duration_s,
        if r.interrupted { " (interrupted)" } else { "" }
    )?;
    writeln!(
        out,
        "  requests     {}  throughput {:.0} req/s",
        r.requests, r.throughput_rps
    )?;
    let name = if o.rate.is_some() {
        "corrected"
    } else {
        "latency"
    };
    latency_line(out, name, &r.latency_us)?;
    if let Some(u) = &r.uncorrected_latency_us {
        latency_line(out, "uncorrected", u)?;
    }
    if let Some(l) = &r.send_lag_us {
        latency_line(out, "send lag", l)?;
    }
    if let Some(c) = &r.connect_us {
        latency_line(out, "connect", c)?;
    }
    if let Some(u) = &r.udp {
        loss_line(out, u)?;
    }
    let e = &r.errors;
    writeln!(
        out,
        "  errors       {} (refused {}, reset {}, timeout {}, mismatch {}, addr_unavailable {}, other {})",
        e.total, e.refused, e.reset, e.timeout, e.mismatch, e.addr_unavailable, e.other
    )?;
    writeln!(
        out,
        "  client CPU   user {:.2} s  system {:.2} s  {:.2} µs/request",
        r.client_cpu.user_s, r.client_cpu.system_s, r.client_cpu.us_per_request
    )?;
    if r.saturated {
        writeln!(
            out,
            "  SATURATED: the generator did not keep the schedule; see warnings"
        )?;
    }
    for w in &r.warnings {
        writeln!(out, "  warning: {w}")?;
    }
    Ok(())
}
