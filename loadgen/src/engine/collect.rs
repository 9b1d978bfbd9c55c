//! The coordinator during the run: it receives the workers' 1 s intervals, merges them per
//! interval, calls the progress hook once an interval is complete, fires the window hook at the
//! edges of the measured window (next to its own CPU samples), and waits until every worker is
//! done.
//!
//! Deliberately not here: starting the workers ([`super::startup`]) and turning the totals into
//! a report ([`super::assemble`]).

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::msg::{Go, Msg};
use super::schedule::grid;
use super::{merge, new_hist};
use crate::cpu::{self, Times};
use crate::netstat::{self, UdpCounters};
use crate::{Hooks, Progress, Window};

/// Interval histograms merged across threads: corrected, uncorrected, which threads sent it.
pub(super) type Merged = (Histogram<u64>, Option<Histogram<u64>>, Vec<bool>);

/// What the coordinator gathered while the workers ran.
pub(super) struct Collected {
    /// Every interval by index (negative: warm-up), merged over the threads.
    pub(super) intervals: BTreeMap<i64, Merged>,
    /// The process's CPU times at the window's opening and closing.
    pub(super) cpu_start: std::io::Result<Times>,
    pub(super) cpu_end: std::io::Result<Times>,
    /// UDP runs: the kernel's UDP counters at the window's opening and closing (`None` where
    /// unreadable or not a UDP run).
    pub(super) udp_start: Option<UdpCounters>,
    pub(super) udp_end: Option<UdpCounters>,
}

/// Run the coordinator's side of the run until all `threads` workers are done.
pub(super) fn collect(
    rx: &mpsc::Receiver<(usize, Msg)>,
    threads: usize,
    go: Go,
    hooks: &Hooks,
    udp: bool,
) -> Collected {
    let counters = || if udp { netstat::udp_counters() } else { None };
    let mut udp_start = None;
    let window = |edge| {
        if let Some(f) = hooks.window {
            f(edge)
        }
    };
    let mut cpu_start = None;
    let mut pending: BTreeMap<i64, Merged> = BTreeMap::new();
    let (mut live_requests, mut live_errors, mut done) = (0u64, 0u64, 0);
    let mut finished = vec![false; threads];
    let mut reported = i64::MIN;
    while done < threads {
        let now = Instant::now();
        if cpu_start.is_none() && now >= go.warm_end {
            window(Window::Opened);
            cpu_start = Some(cpu::process_times());
            udp_start = counters();
        }
        let wait = if cpu_start.is_none() {
            go.warm_end - now
        } else {
            Duration::from_millis(250)
        };
        match rx.recv_timeout(wait) {
            Ok((
                from,
                Msg::Interval {
                    index,
                    corrected,
                    uncorrected,
                    errors,
                },
            )) => {
                if index >= 0 {
                    live_requests += corrected.len();
                    live_errors += errors;
                }
                let slot = pending
                    .entry(index)
                    .or_insert_with(|| (new_hist(), None, vec![false; threads]));
                merge(&mut slot.0, &corrected);
                if let Some(u) = uncorrected {
                    merge(slot.1.get_or_insert_with(new_hist), &u);
                }
                slot.2[from] = true;
            }
            // A panicked worker is finished too; the join reports the panic.
            Ok((from, Msg::Done | Msg::Panicked)) => {
                done += 1;
                finished[from] = true;
            }
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        // An interval is complete once every thread sent it or has finished (a finished
        // thread sends no later intervals: without this, progress would stop as soon as the
        // first thread of a request-count run finished its share).
        let Some(p) = hooks.progress else { continue };
        for (&index, slot) in pending.range(reported + 1..) {
            if !slot
                .2
                .iter()
                .zip(&finished)
                .all(|(&sent, &gone)| sent || gone)
            {
                break;
            }
            reported = index;
            p(&Progress {
                elapsed: grid(go.warm_end, index + 1).saturating_duration_since(go.t0),
                measuring: index >= 0,
                requests: live_requests,
                errors: live_errors,
                interval_rps: slot.0.len() as f64,
                interval_p99_us: slot.0.value_at_quantile(0.99) as f64 / 1e3,
            });
        }
    }
    let cpu_start = cpu_start.unwrap_or_else(|| {
        // The run ended before its warm-up did (a stop, or a request count reached early):
        // the window is empty but its edges are still reported, in order.
        window(Window::Opened);
        udp_start = counters();
        cpu::process_times()
    });
    let cpu_end = cpu::process_times();
    let udp_end = counters();
    window(Window::Closed);
    Collected {
        intervals: pending,
        cpu_start,
        cpu_end,
        udp_start,
        udp_end,
    }
}
