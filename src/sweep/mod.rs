//! `iomodels sweep rate|idle|connections`: curves instead of points. For every model, a series
//! of steps along one axis (open-loop rate, idle connections, active connections), each a fresh
//! server child measured like a `run` point, written in `run`'s layout with the sweep's own
//! `summary.json`, then `report.html` and a table.
//!
//! This module checks every input before anything is measured (models, steps, CPUs, the
//! output folder, steps that cannot fit the descriptor limit when given explicitly), raises the
//! descriptor limit, and drives the steps: [`plan`] says what and in which order, [`measure`]
//! does one step through `run`'s measurement, [`output`] writes it down at once. It reuses
//! `run`'s pinning, progress bar, interrupt handling and folder rules rather than copying them,
//! and computes no figure itself (the knee is [`iomodels::record::sweep::knee`]).

mod measure;
mod output;
mod plan;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use clap::Args;
use iomodels::record::ServeConfig;
use iomodels::record::sweep::{
    SWEEP_SCHEMA, Step as StepRecord, SweepKind, SweepModel, SweepSummary,
};
use servers::Model;

use crate::exit::{CliError, CliResult};
use crate::interrupt::Interrupt;
use crate::run::{Bar, count, now_rfc3339, pinning, select_models};
use crate::units::{CpuList, parse_cpus, parse_duration};
use measure::Context;
use output::Output;
use plan::{Step, Timing};

/// Flags of `iomodels sweep`.
#[derive(Args, Debug)]
pub struct SweepArgs {
    /// The curve: `rate` (latency against throughput, and each model's knee), `idle` (CPU per
    /// request against idle connections), `connections` (throughput and p99 against active
    /// connections).
    #[arg(value_enum)]
    kind: SweepKind,
    /// Models to measure, comma-separated, or `all` (every model available here).
    #[arg(long, value_delimiter = ',', default_value = "all")]
    models: Vec<String>,
    /// Short steps (1 s after 250 ms warm-up; the rate sweep 6 steps): a couple of minutes for
    /// 10 models.
    #[arg(long)]
    quick: bool,
    /// Output folder; must not exist or be empty
    /// [default: results/YYYYMMDDTHHMMSSZ-<host>-sweep-<kind>].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// CPUs for every server thread [default: the first CPU this process may use, when it may
    /// use two or more].
    #[arg(long, value_name = "LIST", value_parser = parse_cpus)]
    server_cpus: Option<CpuList>,
    /// CPUs for the generator, one thread each [default: the others].
    #[arg(long, value_name = "LIST", value_parser = parse_cpus)]
    client_cpus: Option<CpuList>,
    /// Measured time per step [default: rate 5s, others 3s; with --quick 1s].
    #[arg(short = 't', long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Warm-up before each step [default: 1s; with --quick 250ms].
    #[arg(long, value_parser = parse_duration)]
    warmup: Option<Duration>,
    /// Rate sweep: open-loop steps between --from and --to [default: 10; with --quick 6].
    #[arg(long)]
    steps: Option<usize>,
    /// Rate sweep: the first step, in % of the model's closed-loop maximum [default: 10].
    #[arg(long, value_name = "PCT")]
    from: Option<f64>,
    /// Rate sweep: the last step, in % of the model's closed-loop maximum [default: 120].
    #[arg(long, value_name = "PCT")]
    to: Option<f64>,
    /// Rate sweep: the knee is the highest achieved rate whose p99 stays at or under this
    /// [default: 1ms].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    p99_target: Option<Duration>,
    /// Idle sweep: idle connection counts, comma-separated [default: 0,100,1000,5000,10000].
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    idle_steps: Option<Vec<usize>>,
    /// Connections sweep: active connection counts, comma-separated
    /// [default: 1,10,50,100,500,1000].
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    connection_steps: Option<Vec<usize>>,
}

/// The validated plan of a sweep.
struct Setup {
    kind: SweepKind,
    models: Vec<Model>,
    steps: Vec<Step>,
    timing: Timing,
    p99_target_us: Option<f64>,
    serve: ServeConfig,
    client_cpus: Option<Vec<usize>>,
    /// The open-file limit after raising it: (soft, hard).
    limit: Option<(u64, u64)>,
    /// The client ports one address can connect from.
    ports: Option<crate::limits::Ports>,
    warnings: Vec<String>,
}

fn validate(a: &SweepArgs) -> anyhow::Result<Setup> {
    let models = select_models(&a.models)?;
    let kind = a.kind;
    let only = |given: bool, flag: &str, for_kind: SweepKind| -> anyhow::Result<()> {
        if given && kind != for_kind {
            return Err(anyhow!(
                "{flag} applies to `sweep {}` only; drop it or sweep {}",
                for_kind.name(),
                for_kind.name()
            ));
        }
        Ok(())
    };
    only(a.steps.is_some(), "--steps", SweepKind::Rate)?;
    only(a.from.is_some(), "--from", SweepKind::Rate)?;
    only(a.to.is_some(), "--to", SweepKind::Rate)?;
    only(a.p99_target.is_some(), "--p99-target", SweepKind::Rate)?;
    only(a.idle_steps.is_some(), "--idle-steps", SweepKind::Idle)?;
    only(
        a.connection_steps.is_some(),
        "--connection-steps",
        SweepKind::Connections,
    )?;
    if a.duration.is_some_and(|d| d.is_zero()) {
        return Err(anyhow!("-t/--duration must be longer than 0 s (e.g. 3s)"));
    }
    if a.p99_target.is_some_and(|d| d.is_zero()) {
        return Err(anyhow!("--p99-target must be longer than 0 (e.g. 1ms)"));
    }
    let steps = match kind {
        SweepKind::Rate => plan::rate_steps(
            a.steps.unwrap_or(if a.quick {
                plan::RATE_STEPS_QUICK
            } else {
                plan::RATE_STEPS
            }),
            a.from.unwrap_or(plan::RATE_FROM_PCT),
            a.to.unwrap_or(plan::RATE_TO_PCT),
        ),
        SweepKind::Idle => plan::idle_steps(a.idle_steps.as_deref().unwrap_or(plan::IDLE_STEPS)),
        SweepKind::Connections => plan::connection_steps(
            a.connection_steps
                .as_deref()
                .unwrap_or(plan::CONNECTION_STEPS),
        ),
    }
    .map_err(|e| anyhow!(e))?;

    // As many descriptors as the hard limit allows, before anything is measured; steps given
    // explicitly that still do not fit are the user's to fix, default ones are skipped.
    crate::limits::raise_nofile();
    let limit = crate::limits::nofile();
    let ports = crate::limits::ephemeral_ports();
    let explicit = a.idle_steps.is_some() || a.connection_steps.is_some();
    if explicit
        && let Some((step, why)) = steps
            .iter()
            .find_map(|s| over_limits(s, limit, ports.as_ref()).map(|why| (s, why)))
    {
        return Err(anyhow!("step {}: {why}, or give smaller steps", step.name));
    }

    let (server_cpus, client_cpus, warnings) =
        pinning(a.server_cpus.as_ref(), a.client_cpus.as_ref())?;
    Ok(Setup {
        kind,
        models,
        steps,
        timing: Timing::new(kind, a.quick, a.duration, a.warmup),
        p99_target_us: (kind == SweepKind::Rate).then(|| {
            a.p99_target
                .unwrap_or(Duration::from_millis(1))
                .as_secs_f64()
                * 1e6
        }),
        serve: ServeConfig::defaults(server_cpus),
        client_cpus,
        limit,
        ports,
        warnings,
    })
}

/// Why `step` cannot run here: the open-file limit `limit` (soft, hard), then the client
/// `ports`; `None` if it can.
fn over_limits(
    step: &Step,
    limit: Option<(u64, u64)>,
    ports: Option<&crate::limits::Ports>,
) -> Option<String> {
    plan::over_limit(step, limit.map(|l| l.0), limit.map(|l| l.1))
        .or_else(|| plan::over_ports(step, ports))
}

/// Run the `sweep` command.
pub fn run(args: SweepArgs) -> CliResult {
    let setup = validate(&args).map_err(CliError::usage)?;
    let exe = std::env::current_exe()
        .map_err(|e| CliError::runtime(anyhow!("cannot find this program's path: {e}")))?;
    let started = now_rfc3339();
    let dir = args.out.clone().unwrap_or_else(|| {
        let d = crate::run::output::default_dir(&started);
        PathBuf::from(format!("{}-sweep-{}", d.display(), setup.kind.name()))
    });
    let summary = SweepSummary {
        schema: SWEEP_SCHEMA.to_owned(),
        sweep: setup.kind,
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        git_commit: option_env!("IOMODELS_GIT_COMMIT")
            .filter(|c| !c.is_empty())
            .map(str::to_owned),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        started,
        finished: None,
        host: loadgen::host(),
        server_cpus: setup.serve.cpus.clone(),
        client_cpus: setup.client_cpus.clone(),
        duration_s: setup.timing.duration.as_secs_f64(),
        warmup_s: setup.timing.warmup.as_secs_f64(),
        size: plan::SIZE,
        connections: (setup.kind != SweepKind::Connections).then_some(plan::ACTIVE),
        p99_target_us: setup.p99_target_us,
        descriptor_limit: setup.limit.map(|l| l.0),
        order: setup.models.iter().map(|m| m.name().to_owned()).collect(),
        models: setup
            .models
            .iter()
            .map(|m| {
                (
                    m.name().to_owned(),
                    SweepModel {
                        description: m.description().to_owned(),
                        ..SweepModel::default()
                    },
                )
            })
            .collect(),
        interrupted: false,
        warnings: setup.warnings.clone(),
    };
    let mut out = Output::create(dir, summary).map_err(CliError::usage)?;
    let interrupt = Interrupt::install().map_err(CliError::runtime)?;
    let stop = interrupt.stop();

    let per_model = setup.steps.len() + usize::from(setup.kind == SweepKind::Rate);
    let total = per_model * setup.models.len();
    let idle_total: usize = setup.steps.iter().map(|s| s.idle).sum::<usize>() * setup.models.len();
    let about = match setup.timing.estimate(total, idle_total).as_secs() {
        s if s < 90 => format!("{s} s"),
        s => format!("{} min", s.div_ceil(60)),
    };
    eprintln!(
        "iomodels sweep {}: {} × {} of {:?} (+{:?} warm-up), about {about}; writing {}",
        setup.kind.name(),
        count(setup.models.len(), "model"),
        count(per_model, "step"),
        setup.timing.duration,
        setup.timing.warmup,
        out.dir().display()
    );
    for w in &setup.warnings {
        eprintln!("iomodels: warning: {w}");
    }

    let t0 = Instant::now();
    let mut bar = Bar::new(total);
    let cx = Context {
        exe: &exe,
        timing: setup.timing,
        serve: &setup.serve,
        client_cpus: setup.client_cpus.as_deref(),
        stop,
    };
    let written = measure_all(&setup, &cx, &mut out, &mut bar);
    bar.clear();
    let interrupted = stop.is_stopped();
    let finished = out.finish(now_rfc3339(), interrupted);
    crate::run::end_line("sweep", written.and(finished), out.dir(), t0, interrupted)?;
    finish_outputs(&out)?;
    Ok(crate::run::exit_code(
        interrupted,
        out.summary().any_failed(),
    ))
}

/// The step's record before measuring: its name and shape.
fn planned(step: &Step, kind: SweepKind) -> StepRecord {
    let mut r = StepRecord::planned(step.name.clone(), step.connections);
    r.fraction = step.fraction;
    r.idle = (kind == SweepKind::Idle).then_some(step.idle);
    r
}

/// One line for the progress output.
fn outcome_line(o: &crate::run::measure::Outcome) -> String {
    match (&o.result, &o.failure) {
        (Some(r), None) => format!(
            "{:.0} req/s, p99 {:.1} µs, server {} µs/req{}",
            r.report.throughput_rps,
            r.report.latency_us.p99,
            r.server_cpu
                .map_or("?".to_owned(), |c| format!("{:.2}", c.us_per_request)),
            if r.report.saturated {
                " (saturated)"
            } else {
                ""
            }
        ),
        (_, Some(f)) => format!("FAILED: {f}"),
        (None, None) => "nothing measured".into(),
    }
}

/// Every step: for the rate sweep first each model's closed-loop maximum, then step by step,
/// the models in alternating order. Returns early (with the error) only when a file cannot be
/// written; a stop ends it after the current step.
fn measure_all(
    setup: &Setup,
    cx: &Context<'_>,
    out: &mut Output,
    bar: &mut Bar,
) -> std::io::Result<()> {
    let names: Vec<&str> = setup.models.iter().map(|m| m.name()).collect();
    let kind = setup.kind;
    // Rate sweep: each model's closed-loop maximum, or why there is none.
    let mut max: Vec<(&str, Result<f64, String>)> = Vec::new();
    if kind == SweepKind::Rate {
        let step = plan::rate_max();
        for model in plan::order(&names, 0) {
            if cx.stop.is_stopped() {
                return Ok(());
            }
            let what = format!("{} {model}", step.name);
            let rec = planned(&step, kind);
            if let Some(why) = over_limits(&step, setup.limit, setup.ports.as_ref()) {
                bar.finished(&what, &format!("skipped: {why}"));
                max.push((model, Err(why.clone())));
                out.record(
                    model,
                    StepRecord {
                        skipped: Some(why),
                        ..rec
                    },
                    None,
                    true,
                )?;
                continue;
            }
            bar.starting(&what);
            let o = measure::measure(cx, model, &step, None, &|p| bar.live(&what, p));
            bar.finished(&what, &outcome_line(&o));
            let rate = match (&o.result, &o.failure) {
                (Some(r), None) if r.report.requests > 0 && !r.report.interrupted => {
                    Ok(r.report.throughput_rps)
                }
                (_, Some(f)) => Err(format!("no closed-loop maximum to scale from: {f}")),
                _ => Err("no closed-loop maximum to scale from: nothing measured".to_owned()),
            };
            max.push((model, rate));
            let rec = StepRecord {
                failed: o.failure,
                ..rec
            };
            out.record(model, rec, o.result, true)?;
        }
    }
    for (i, step) in setup.steps.iter().enumerate() {
        for model in plan::order(&names, i + usize::from(kind == SweepKind::Rate)) {
            if cx.stop.is_stopped() {
                return Ok(());
            }
            let what = format!("{} {model}", step.name);
            let mut rec = planned(step, kind);
            let m = Model::from_name(model);
            let rate = match (step.fraction, max.iter().find(|(n, _)| *n == model)) {
                (Some(f), Some((_, Ok(r)))) => Ok(Some(r * f)),
                (Some(_), Some((_, Err(e)))) => Err(e.clone()),
                (Some(_), None) => Err("no closed-loop maximum to scale from".to_owned()),
                (None, _) => Ok(None),
            };
            rec.target_rps = rate.as_ref().ok().copied().flatten();
            let skip = rate
                .err()
                .or_else(|| m.and_then(|m| plan::over_model_limit(m, step)))
                .or_else(|| over_limits(step, setup.limit, setup.ports.as_ref()));
            if let Some(why) = skip {
                bar.finished(&what, &format!("skipped: {why}"));
                rec.skipped = Some(why);
                out.record(model, rec, None, false)?;
                continue;
            }
            bar.starting(&what);
            let o = measure::measure(cx, model, step, rec.target_rps, &|p| bar.live(&what, p));
            bar.finished(&what, &outcome_line(&o));
            rec.failed = o.failure;
            out.record(model, rec, o.result, false)?;
        }
    }
    Ok(())
}

/// `report.html` and the table on stdout, from what was written.
fn finish_outputs(out: &Output) -> Result<(), CliError> {
    let sweep = iomodels::export::sweep::load(out.dir()).map_err(CliError::runtime)?;
    let sweeps = [sweep];
    let path = out.dir().join("report.html");
    let html = iomodels::export::sweep::html(&sweeps);
    loadgen::write_atomically(&path, html.as_bytes())
        .map_err(|e| CliError::runtime(anyhow!("cannot write {}: {e}", path.display())))?;
    let table =
        iomodels::export::sweep::table(&sweeps, iomodels::export::table::Format::Table, None)
            .unwrap_or_default();
    // A closed stdout (`| head`) is not an error.
    let mut so = std::io::stdout().lock();
    let _ = writeln!(so, "{table}");
    let _ = writeln!(so, "report: {}", path.display());
    Ok(())
}
