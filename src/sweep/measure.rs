//! One step of a sweep for one model, through `run`'s measurement (a fresh `serve` child pinned
//! like `run`'s, the in-process generator, the child's CPU over exactly the measured window):
//! this module only turns a step into `run`'s job, adds its idle connections, and checks that
//! the server really held every connection the step asked for.
//!
//! It deliberately decides nothing about files or the order of steps.

use std::path::Path;

use loadgen::{Progress, Stop};

use super::plan::{self, Step, Timing};
use crate::run::measure::{Job, Outcome, measure_with};
use crate::run::plan::{POINTS, Point};
use iomodels::record::ServeConfig;

/// What every step of a sweep shares.
pub struct Context<'a> {
    pub exe: &'a Path,
    pub timing: Timing,
    pub serve: &'a ServeConfig,
    pub client_cpus: Option<&'a [usize]>,
    pub stop: &'a Stop,
}

/// Measure `step` against a fresh `model` server: closed loop, or open loop at `rate` req/s.
pub fn measure(
    cx: &Context<'_>,
    model: &str,
    step: &Step,
    rate: Option<f64>,
    progress: &dyn Fn(&Progress),
) -> Outcome {
    // `run`'s throughput point (50 × 512 B) reshaped: struct update keeps any field `run` adds.
    let Some(base) = POINTS.iter().find(|p| p.name == "throughput").copied() else {
        return Outcome {
            result: None,
            failure: Some("run has no throughput point to shape the step from".into()),
        };
    };
    let point = Point {
        connections: step.connections,
        size: plan::SIZE,
        rate_of_throughput: None,
        ..base
    };
    let job = Job {
        exe: cx.exe,
        model,
        point,
        rate,
        timing: crate::run::plan::Timing {
            rounds: 1,
            duration: cx.timing.duration,
            warmup: cx.timing.warmup,
        },
        serve: cx.serve,
        client_cpus: cx.client_cpus,
        // A curve's figures are measured without kernel counters (they cost server CPU);
        // `run` and `load --explain` count.
        explain: false,
        stop: cx.stop,
    };
    let idle = step.idle;
    let mut outcome = measure_with(&job, &|o| o.idle = idle, progress);
    // A server out of descriptors pauses accepting and the backlog keeps the rest connected:
    // the generator cannot tell, the server's own count can.
    if let Some(r) = &mut outcome.result
        && let Some(stats) = r.server.as_ref().and_then(|s| s.stats.as_ref())
    {
        let want = (step.connections + step.idle) as u64;
        if stats.peak_open < want && !r.report.interrupted {
            r.report.warnings.push(format!(
                "the server held at most {} of the {want} connections asked for ({} accept errors)",
                stats.peak_open, stats.accept_errors
            ));
        }
    }
    outcome
}
