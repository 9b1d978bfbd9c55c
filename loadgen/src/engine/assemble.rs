//! The end of a run: the workers' outcomes merged (exactly: every histogram shares its bounds
//! and `add` sums counts), the measured window's length, the client CPU, the 1 s intervals, the
//! warnings, the saturation verdict ([`super::verdict`]), and the [`Report`] built from them.
//!
//! Deliberately pure data work on what the run produced: no I/O, no clock, no threads.

use std::time::{Duration, Instant, SystemTime};

use super::collect::Collected;
use super::msg::{Go, Outcome};
use super::schedule::SECOND;
use super::verdict::{Facts, saturation};
use super::{merge, new_hist};
use crate::host;
use crate::report::{self, Cpu, Errors, Interval, LatencySummary, Report, SCHEMA, Udp, UdpKernel};
use crate::workload::Workload;

/// Build the report of a run that followed `go` (started at `wall_t0` on the wall clock), from
/// its workers' `outcomes` and what the coordinator `collected`.
pub(super) fn assemble(
    w: &Workload,
    go: Go,
    wall_t0: SystemTime,
    outcomes: &[Outcome],
    collected: Collected,
) -> Report {
    let o = w.options();
    let open = w.is_open_loop();
    let (mut corrected, mut uncorrected, mut lag, mut gen_lag, mut connect) =
        (new_hist(), new_hist(), new_hist(), new_hist(), new_hist());
    let mut errors = Errors::default();
    let (mut requests, mut sent, mut queued, mut unsent) = (0u64, 0u64, 0u64, 0u64);
    let mut interrupted = false;
    let mut last_completion: Option<Instant> = None;
    let mut stopped_at = go.t0;
    let mut warnings = Vec::new();
    let mut udp: Option<Udp> = None;
    let mut own_drops: Option<u64> = Some(0);
    for oc in outcomes {
        if let Some(u) = &oc.udp {
            udp.get_or_insert_with(Udp::default).add(u);
            own_drops = own_drops.zip(oc.own_rcvbuf_drops).map(|(a, b)| a + b);
        }
        merge(&mut corrected, &oc.corrected);
        merge(&mut uncorrected, &oc.uncorrected);
        merge(&mut lag, &oc.lag);
        merge(&mut gen_lag, &oc.gen_lag);
        merge(&mut connect, &oc.connect);
        errors.add(&oc.errors);
        requests += oc.requests;
        sent += oc.sent;
        queued += oc.queued;
        unsent += oc.unsent;
        interrupted |= oc.interrupted;
        last_completion = last_completion.max(oc.last_completion);
        stopped_at = stopped_at.max(oc.stopped_at);
        for wmsg in &oc.warnings {
            if !warnings.contains(wmsg) {
                warnings.push(wmsg.clone());
            }
        }
    }

    let measured_end = match (go.end, interrupted) {
        (Some(e), false) => e,
        (Some(e), true) => stopped_at.min(e),
        (None, false) => last_completion.unwrap_or(go.warm_end),
        (None, true) => stopped_at,
    }
    .max(go.warm_end);
    let duration = measured_end - go.warm_end;
    let duration_s = duration.as_secs_f64();
    let throughput_rps = if duration_s > 0.0 {
        requests as f64 / duration_s
    } else {
        0.0
    };

    let client_cpu = match (collected.cpu_start, collected.cpu_end) {
        (Ok(a), Ok(b)) => Cpu::new(
            b.user.saturating_sub(a.user),
            b.system.saturating_sub(a.system),
            requests,
        ),
        (Err(e), _) | (_, Err(e)) => {
            warnings.push(format!("client CPU time unavailable: {e}"));
            Cpu::default()
        }
    };

    let intervals = collected
        .intervals
        .into_iter()
        .filter(|(i, _)| *i >= 0)
        .filter_map(|(i, (c, u, _))| {
            let start = Duration::from_secs(i as u64);
            if c.is_empty() && start >= duration {
                return None;
            }
            let length = duration.saturating_sub(start).min(SECOND);
            Some(Interval {
                start,
                length,
                corrected: c,
                uncorrected: u,
            })
        })
        .collect();

    warnings.extend(w.threads_reduced_because());
    if errors.addr_unavailable > 0 {
        warnings.push(format!(
            "{} connects failed with EADDRNOTAVAIL: the client ran out of ephemeral ports \
             (connections in TIME_WAIT); lower the connect rate, widen \
             net.ipv4.ip_local_port_range or enable net.ipv4.tcp_tw_reuse",
            errors.addr_unavailable
        ));
    }
    if requests == 0 {
        warnings.push("no request completed in the measured window".to_owned());
    }

    if let Some(u) = &mut udp {
        u.loss_ratio = u.ratio();
        u.kernel = match (&collected.udp_start, &collected.udp_end) {
            (Some(a), Some(b)) => {
                let d = b.since(a);
                Some(UdpKernel {
                    in_errors: d.in_errors,
                    rcvbuf_errors: d.rcvbuf_errors,
                    sndbuf_errors: d.sndbuf_errors,
                    own_rcvbuf_drops: own_drops,
                })
            }
            _ => None,
        };
        warnings.extend(udp_notes(u));
    }
    // A UDP run's rate is judged on what the generator sent: a datagram the network or the
    // server lost was still sent on time, and loss is reported as loss, not as saturation.
    let judged_rps = match (&udp, duration_s > 0.0) {
        (Some(u), true) => u.sent as f64 / duration_s,
        (Some(_), false) => 0.0,
        (None, _) => throughput_rps,
    };
    let mut saturated = false;
    if let Some(rate) = o.rate {
        let why = saturation(&Facts {
            target_rps: rate,
            achieved_rps: judged_rps,
            interrupted,
            gen_lag_p99_ns: (!gen_lag.is_empty()).then(|| gen_lag.value_at_quantile(0.99) as f64),
            corrected_p99_ns: corrected.value_at_quantile(0.99) as f64,
            sent,
            queued,
            unsent,
            connections: o.connections,
            depth: o.depth,
            datagrams: udp.is_some(),
            refused_or_reset: errors.refused + errors.reset,
        });
        saturated = !why.is_empty();
        warnings.extend(why);
    }

    Report {
        schema: SCHEMA.to_owned(),
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        host: host::host(),
        pinning: o.cpus.clone(),
        workload: o.clone(),
        requests,
        duration_s,
        throughput_rps,
        latency_us: LatencySummary::from_ns(&corrected),
        uncorrected_latency_us: open.then(|| LatencySummary::from_ns(&uncorrected)),
        send_lag_us: open.then(|| LatencySummary::from_ns(&lag)),
        target_rps: o.rate,
        achieved_rps: o.rate.map(|_| throughput_rps),
        connect_us: o
            .connect_per_request
            .then(|| LatencySummary::from_ns(&connect)),
        errors,
        udp,
        client_cpu,
        saturated,
        interrupted,
        warnings,
        histogram: report::encode_histogram(&corrected),
        uncorrected_histogram: open.then(|| report::encode_histogram(&uncorrected)),
        intervals,
        measured_start: Some(wall_t0 + o.warmup),
    }
}

/// What a UDP run's figures mean, where they need saying: loss, and whose receive buffer
/// dropped what (the kernel's counters are host-wide).
fn udp_notes(u: &Udp) -> Vec<String> {
    let mut notes = Vec::new();
    if u.lost == 0 {
        return notes;
    }
    let mut line = format!(
        "{} of {} datagrams lost ({:.3}%)",
        u.lost,
        u.received + u.lost,
        u.loss_ratio * 100.0
    );
    if let Some(k) = &u.kernel {
        line.push_str(&format!(
            "; this host's kernel counted {} UDP receive-buffer drops (RcvbufErrors, all \
             sockets of the host)",
            k.rcvbuf_errors
        ));
        if let Some(own) = k.own_rcvbuf_drops {
            line.push_str(&format!(
                ", {own} of them in the generator's own sockets (SO_RXQ_OVFL)"
            ));
        }
    }
    notes.push(line);
    notes
}
