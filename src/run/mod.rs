//! `iomodels run`: measure every model on this machine, point by point, in interleaved rounds,
//! and write the run folder, the summary, the report and the comparison table.
//!
//! This module checks every input before anything is measured (unknown or unavailable model,
//! unknown point, CPUs that are not here, an output folder that is not new), then drives the
//! matrix: [`plan`] says what and in which order, [`measure`] does one point against a `serve`
//! child, [`output`] writes it down at once. It deliberately computes no figure itself.

pub(crate) mod measure;
pub(crate) mod output;
pub(crate) mod plan;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use anyhow::anyhow;
use clap::Args;
use iomodels::record::{SUMMARY_SCHEMA, ServeConfig, Summary};
use servers::Model;

use crate::exit::{self, CliError, CliResult};
use crate::interrupt::Interrupt;
use crate::units::{CpuList, parse_cpus, parse_duration};
use measure::{Job, measure};
use output::Output;
use plan::{Point, Timing};

/// Flags of `iomodels run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Models to measure, comma-separated, or `all` (every model available here).
    #[arg(long, value_delimiter = ',', default_value = "all")]
    models: Vec<String>,
    /// Points to measure, comma-separated: latency, latency-spin, throughput, heavy, open,
    /// udp-latency, udp-open [default: all].
    #[arg(long, value_delimiter = ',')]
    points: Option<Vec<String>>,
    /// One short round (1 s per point after 250 ms warm-up) and the kernel-count pass: about 2 min for 10 models.
    #[arg(long)]
    quick: bool,
    /// Rounds; models alternate their order each round [default: 3; with --quick 1].
    #[arg(long)]
    rounds: Option<usize>,
    /// Output folder; must not exist or be empty [default: results/YYYYMMDDTHHMMSSZ-<host>].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// CPUs for every server thread [default: the first CPU this process may use, when it may
    /// use two or more].
    #[arg(long, value_name = "LIST", value_parser = parse_cpus)]
    server_cpus: Option<CpuList>,
    /// CPUs for the generator, one thread each [default: the others].
    #[arg(long, value_name = "LIST", value_parser = parse_cpus)]
    client_cpus: Option<CpuList>,
    /// Measured time per point and round [default: 3s; with --quick 1s].
    #[arg(short = 't', long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Warm-up before each measurement [default: 1s; with --quick 250ms].
    #[arg(long, value_parser = parse_duration)]
    warmup: Option<Duration>,
    /// Do not count kernel events per request (`explain` null): the counters add a little
    /// kernel work to every context switch of the counted threads.
    #[arg(long)]
    no_explain: bool,
}

/// The validated plan of a run.
struct Setup {
    models: Vec<Model>,
    points: Vec<Point>,
    timing: Timing,
    serve: ServeConfig,
    client_cpus: Option<Vec<usize>>,
    warnings: Vec<String>,
    /// Count kernel events per request (not `--no-explain`).
    explain: bool,
}

impl Setup {
    /// One measurement of `model` at `point` with this run's server and generator settings.
    #[allow(clippy::too_many_arguments)]
    fn job<'a>(
        &'a self,
        exe: &'a std::path::Path,
        model: &'a str,
        point: Point,
        rate: Option<f64>,
        timing: Timing,
        explain: bool,
        stop: &'a loadgen::Stop,
    ) -> Job<'a> {
        Job {
            exe,
            model,
            point,
            rate,
            timing,
            serve: &self.serve,
            client_cpus: self.client_cpus.as_deref(),
            explain,
            stop,
        }
    }
}

/// CPU ids this process may run on, in order.
fn usable_cpus() -> Vec<usize> {
    let mut ids: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    ids.sort_unstable();
    ids
}

/// The models of `--models` (names, or `all`: every model available here), in the order
/// given, without repeats. Errors (one line, the user's to fix): `all` mixed with names, an
/// unknown or unavailable model, no model at all.
pub(crate) fn select_models(names: &[String]) -> anyhow::Result<Vec<Model>> {
    let models: Vec<Model> = if names.iter().any(|m| m == "all") {
        if names.len() > 1 {
            return Err(anyhow!(
                "--models all cannot be combined with names: give `all` or a list"
            ));
        }
        Model::available().collect()
    } else {
        let mut v = Vec::new();
        for name in names {
            let m: Model = name.parse().map_err(|e: String| anyhow!(e))?;
            if let Err(u) = m.availability() {
                return Err(anyhow!(
                    "model {name} is unavailable here: {}; `iomodels models` lists what runs",
                    u.reason
                ));
            }
            if !v.contains(&m) {
                v.push(m);
            }
        }
        v
    };
    if models.is_empty() {
        return Err(anyhow!("no model to measure: give --models NAME[,NAME...]"));
    }
    Ok(models)
}

fn validate(a: &RunArgs) -> anyhow::Result<Setup> {
    let models = select_models(&a.models)?;
    let points = match &a.points {
        Some(names) => plan::select_points(names).map_err(|e| anyhow!(e))?,
        None => plan::POINTS.to_vec(),
    };
    if a.rounds == Some(0) {
        return Err(anyhow!("--rounds must be at least 1"));
    }
    if a.duration.is_some_and(|d| d.is_zero()) {
        return Err(anyhow!("-t/--duration must be longer than 0 s (e.g. 3s)"));
    }
    let timing = Timing::new(a.quick, a.rounds, a.duration, a.warmup);
    let (server_cpus, client_cpus, mut warnings) =
        pinning(a.server_cpus.as_ref(), a.client_cpus.as_ref())?;
    // Off Linux the explain pass would measure every point again and record nothing.
    let unsupported = iomodels::explain::unsupported_here().filter(|_| !a.no_explain);
    if let Some(why) = &unsupported {
        warnings.push(format!("{why}: no kernel-count pass"));
    }
    Ok(Setup {
        models,
        points,
        timing,
        serve: ServeConfig::defaults(server_cpus),
        client_cpus,
        warnings,
        explain: !a.no_explain && unsupported.is_none(),
    })
}

/// Server and generator CPUs from `--server-cpus` and `--client-cpus` (each checked against the
/// CPUs this process may use), defaults filled in (the first usable CPU for the server, the
/// others for the generator), and the warnings to record (not pinned, shared CPUs).
pub(crate) fn pinning(
    server: Option<&CpuList>,
    client: Option<&CpuList>,
) -> anyhow::Result<Pinning> {
    let usable = usable_cpus();
    let check = |flag: &str, list: &CpuList| -> anyhow::Result<Vec<usize>> {
        match list.0.iter().find(|c| !usable.contains(c)) {
            Some(c) if !usable.is_empty() => Err(anyhow!(
                "{flag}: CPU {c} is not one this process may use ({}); give CPUs from that list",
                usable
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            )),
            _ => Ok(list.0.clone()),
        }
    };
    let mut warnings = Vec::new();
    let server_cpus = server.map(|l| check("--server-cpus", l)).transpose()?;
    let client_cpus = client.map(|l| check("--client-cpus", l)).transpose()?;
    let (server_cpus, client_cpus) = match (server_cpus, client_cpus) {
        (None, None) if usable.len() >= 2 => (Some(vec![usable[0]]), Some(usable[1..].to_vec())),
        (None, None) => {
            warnings.push(format!(
                "not pinned: this process may use {} CPU(s), so the server and the generator share them and disturb each other",
                usable.len()
            ));
            (None, None)
        }
        (Some(s), None) => {
            let rest: Vec<usize> = usable.iter().copied().filter(|c| !s.contains(c)).collect();
            (Some(s), (!rest.is_empty()).then_some(rest))
        }
        (None, Some(c)) => {
            let rest: Vec<usize> = usable.iter().copied().filter(|x| !c.contains(x)).collect();
            ((!rest.is_empty()).then_some(rest), Some(c))
        }
        (Some(s), Some(c)) => (Some(s), Some(c)),
    };
    if let (Some(s), Some(c)) = (&server_cpus, &client_cpus)
        && s.iter().any(|x| c.contains(x))
    {
        warnings.push(
            "the server and the generator share CPUs: each disturbs the other's figures".into(),
        );
    }
    Ok((server_cpus, client_cpus, warnings))
}

/// Server CPUs, generator CPUs (each null: unpinned), and warnings about them.
pub(crate) type Pinning = (Option<Vec<usize>>, Option<Vec<usize>>, Vec<String>);

/// `1 model`, `3 models`.
pub(crate) fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// Now, RFC 3339 UTC to the second.
pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// The live view: a bar on a terminal, otherwise one line per finished measurement (stderr).
pub(crate) struct Bar {
    bar: Option<indicatif::ProgressBar>,
    total: usize,
    done: usize,
}

impl Bar {
    /// A bar over `total` measurements.
    pub(crate) fn new(total: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(total as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:24}] {pos}/{len} {msg}  (about {eta} left)",
            ) {
                b.set_style(style.progress_chars("=> "));
            }
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Self {
            bar,
            total,
            done: 0,
        }
    }

    /// A new measurement begins: no figures yet (the last point's would be stale).
    pub(crate) fn starting(&self, what: &str) {
        if let Some(b) = &self.bar {
            b.set_message(format!("{what}  starting the server"));
        }
    }

    /// The generator's live view of the current measurement.
    pub(crate) fn live(&self, what: &str, p: &loadgen::Progress) {
        if let Some(b) = &self.bar {
            b.set_message(format!(
                "{what}  {} {:>8.0} req/s  p99 {:>8.1} µs",
                if p.measuring {
                    "measuring"
                } else {
                    "warm-up  "
                },
                p.interval_rps,
                p.interval_p99_us
            ));
        }
    }

    /// One measurement done (or skipped): the bar moves on and `outcome` is printed above it.
    pub(crate) fn finished(&mut self, what: &str, outcome: &str) {
        self.done += 1;
        match &self.bar {
            Some(b) => {
                b.set_position(self.done as u64);
                b.println(format!("{what}: {outcome}"));
            }
            None => eprintln!("[{}/{}] {what}: {outcome}", self.done, self.total),
        }
    }

    /// Remove the bar (the lines printed above it stay).
    pub(crate) fn clear(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Run the `run` command.
pub fn run(args: RunArgs) -> CliResult {
    let setup = validate(&args).map_err(CliError::usage)?;
    let exe = std::env::current_exe()
        .map_err(|e| CliError::runtime(anyhow!("cannot find this program's path: {e}")))?;
    let started = now_rfc3339();
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| output::default_dir(&started));
    // 500 connections and as many server-side sockets in one process pair.
    crate::limits::raise_nofile();

    let summary = Summary {
        schema: SUMMARY_SCHEMA.to_owned(),
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        git_commit: option_env!("IOMODELS_GIT_COMMIT")
            .filter(|c| !c.is_empty())
            .map(str::to_owned),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        started: started.clone(),
        finished: None,
        host: loadgen::host(),
        server_cpus: setup.serve.cpus.clone(),
        client_cpus: setup.client_cpus.clone(),
        rounds: setup.timing.rounds,
        duration_s: setup.timing.duration.as_secs_f64(),
        warmup_s: setup.timing.warmup.as_secs_f64(),
        points: setup.points.iter().map(Point::spec).collect(),
        models: setup
            .models
            .iter()
            .map(|m| iomodels::record::ModelSummary {
                model: m.name().to_owned(),
                description: m.description().to_owned(),
                points: Vec::new(),
                failures: Vec::new(),
            })
            .collect(),
        interrupted: false,
        warnings: setup.warnings.clone(),
    };
    let mut out = Output::create(dir, summary).map_err(CliError::usage)?;
    let interrupt = Interrupt::install().map_err(CliError::runtime)?;
    let stop = interrupt.stop();

    let names: Vec<&str> = setup.models.iter().map(|m| m.name()).collect();
    let estimate = setup
        .timing
        .estimate(names.len(), setup.points.len(), setup.explain);
    let about = match estimate.as_secs() {
        s if s < 90 => format!("{s} s"),
        s => format!("{} min", s.div_ceil(60)),
    };
    eprintln!(
        "iomodels run: {} × {} × {} of {:?} (+{:?} warm-up), about {about}; writing {}",
        count(names.len(), "model"),
        count(setup.points.len(), "point"),
        count(setup.timing.rounds, "round"),
        setup.timing.duration,
        setup.timing.warmup,
        out.dir().display()
    );
    for w in &setup.warnings {
        eprintln!("iomodels: warning: {w}");
    }

    let t0 = Instant::now();
    let passes = setup.timing.rounds + usize::from(setup.explain);
    let mut bar = Bar::new(names.len() * setup.points.len() * passes);
    let written = measure_all(&setup, &exe, &names, stop, &mut out, &mut bar);
    bar.clear();
    let interrupted = stop.is_stopped();
    let finished = out.finish(now_rfc3339(), interrupted);
    end_line("run", written.and(finished), out.dir(), t0, interrupted)?;
    finish_outputs(&out)?;
    Ok(exit_code(
        interrupted,
        out.summary().failed_models().next().is_some(),
    ))
}

/// The end of a measuring command (`run`, `sweep`): a failed write becomes one line that says
/// the files already written are valid; otherwise the "done in" (or "interrupted after") line.
pub(crate) fn end_line(
    command: &str,
    written: std::io::Result<()>,
    dir: &std::path::Path,
    t0: Instant,
    interrupted: bool,
) -> Result<(), CliError> {
    if let Err(e) = written {
        return Err(CliError::runtime(anyhow!(
            "cannot write the results in {}: {e}; measuring stopped, the files already written are valid",
            dir.display()
        )));
    }
    eprintln!(
        "iomodels {command}: {} {:.0} s; results in {}",
        if interrupted {
            "interrupted after"
        } else {
            "done in"
        },
        t0.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(())
}

/// A measuring command's exit code: 130 when interrupted, 3 when something failed, else 0.
pub(crate) fn exit_code(interrupted: bool, failed: bool) -> ExitCode {
    if interrupted {
        ExitCode::from(exit::INTERRUPTED)
    } else if failed {
        ExitCode::from(exit::SOME_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

/// The matrix: rounds, then points, then models in the round's order. Returns early (with the
/// error) only when a file cannot be written; a stop ends it after the current point.
fn measure_all(
    setup: &Setup,
    exe: &std::path::Path,
    names: &[&str],
    stop: &loadgen::Stop,
    out: &mut Output,
    bar: &mut Bar,
) -> std::io::Result<()> {
    let rounds = setup.timing.rounds;
    // Each model's `throughput` rate in the last round, for the explain pass's `open` point.
    let mut last_rates: Vec<(&str, f64)> = Vec::new();
    for round in 1..=rounds {
        // Each model's `throughput` rate in this round, for its `open` point.
        let mut rates: Vec<(&str, f64)> = Vec::new();
        for point in &setup.points {
            for model in plan::order(names, round) {
                if stop.is_stopped() {
                    return Ok(());
                }
                let what = format!("round {round}/{rounds} {} {model}", point.name);
                if let Some(why) = not_served(model, *point) {
                    if round == 1 {
                        bar.finished(&what, &format!("skipped: {why}"));
                        out.warn(format!("{model}: {} skipped: {why}", point.name));
                    }
                    continue;
                }
                let rate = match point.rate_of_throughput {
                    None => point.fixed_rate,
                    Some(f) => match rates.iter().find(|(m, _)| *m == model) {
                        Some((_, r)) => Some(r * f),
                        None => match calibrate(setup, exe, model, stop) {
                            Ok(r) => {
                                out.warn(format!(
                                    "{model} round {round}: the open point's rate comes from a 1 s calibration (no throughput result this round)"
                                ));
                                Some(r * f)
                            }
                            Err(e) => {
                                bar.finished(&what, &format!("FAILED: {e}"));
                                out.fail(model, point.name, round, e)?;
                                continue;
                            }
                        },
                    },
                };
                // Kernel counts come from a pass of their own (below): they cost server CPU.
                let job = setup.job(exe, model, *point, rate, setup.timing, false, stop);
                bar.starting(&what);
                let outcome = measure(&job, &|p| bar.live(&what, p));
                let line = match (&outcome.result, &outcome.failure) {
                    (Some(r), None) => format!(
                        "{:.0} req/s, p50 {:.1} µs, p99 {:.1} µs{}",
                        r.report.throughput_rps,
                        r.report.latency_us.p50,
                        r.report.latency_us.p99,
                        if r.report.saturated {
                            " (saturated)"
                        } else {
                            ""
                        }
                    ),
                    (_, Some(f)) => format!("FAILED: {f}"),
                    (None, None) => "nothing measured".into(),
                };
                bar.finished(&what, &line);
                if let Some(r) = outcome.result {
                    if point.name == "throughput" && r.report.requests > 0 {
                        rates.push((model, r.report.throughput_rps));
                    }
                    out.record(model, point.name, round, r)?;
                }
                if let Some(f) = outcome.failure {
                    out.fail(model, point.name, round, f)?;
                }
            }
        }
        last_rates = rates;
    }
    if setup.explain {
        explain_pass(setup, exe, names, &last_rates, stop, out, bar)?;
    }
    Ok(())
}

/// Why `model` cannot be measured at `point` (a UDP point and a model that serves only TCP,
/// from the registry), or `None`.
fn not_served(model: &str, point: plan::Point) -> Option<String> {
    let proto = match point.proto {
        loadgen::Proto::Tcp => servers::Proto::Tcp,
        loadgen::Proto::Udp => servers::Proto::Udp,
    };
    servers::Model::from_name(model).and_then(|m| m.serves(proto).err())
}

/// Kernel counts per request (`explain`), in one short measurement per model × point after
/// the rounds, so the counters' own cost (≈ 0.3 µs of server CPU per request for `epoll`,
/// +8 %, more for models that make more system calls: every call passes a tracepoint) never
/// enters the rounds' throughput, latency and CPU figures. Its result is kept whole in
/// `<model>/<point>.explain.json`; its `explain` is copied into `<point>.json`. A failure
/// here costs only that point's counts (a warning), never a measured figure.
fn explain_pass(
    setup: &Setup,
    exe: &std::path::Path,
    names: &[&str],
    rates: &[(&str, f64)],
    stop: &loadgen::Stop,
    out: &mut Output,
    bar: &mut Bar,
) -> std::io::Result<()> {
    let timing = setup.timing.explain_pass();
    for point in &setup.points {
        for model in plan::order(names, setup.timing.rounds + 1) {
            if stop.is_stopped() {
                return Ok(());
            }
            let what = format!("kernel counts {} {model}", point.name);
            if not_served(model, *point).is_some() {
                continue;
            }
            let rate = match point.rate_of_throughput {
                None => point.fixed_rate,
                Some(f) => match rates.iter().find(|(m, _)| *m == model) {
                    Some((_, r)) => Some(r * f),
                    None => {
                        bar.finished(&what, "skipped: no throughput result for its rate");
                        continue;
                    }
                },
            };
            let job = setup.job(exe, model, *point, rate, timing, true, stop);
            bar.starting(&what);
            let outcome = measure(&job, &|p| bar.live(&what, p));
            match (outcome.result, outcome.failure) {
                (Some(r), None) => {
                    let line = match r.explain.as_ref().and_then(|e| e.server.as_ref()) {
                        Some(s) => format!(
                            "server: {:.2} syscalls, {:.2} context switches per request",
                            s.syscalls_per_request, s.context_switches_per_request
                        ),
                        None => "unavailable".into(),
                    };
                    bar.finished(&what, &line);
                    out.record_explain(model, point.name, r)?;
                }
                (_, failure) => {
                    let why = failure.unwrap_or_else(|| "nothing measured".into());
                    bar.finished(&what, &format!("FAILED: {why}"));
                    out.warn(format!("{model} {}: no kernel counts: {why}", point.name));
                }
            }
        }
    }
    Ok(())
}

/// A 1 s closed-loop `throughput` measurement, for an `open` point without one this round.
fn calibrate(
    setup: &Setup,
    exe: &std::path::Path,
    model: &str,
    stop: &loadgen::Stop,
) -> Result<f64, String> {
    let point = plan::POINTS
        .iter()
        .find(|p| p.name == "throughput")
        .copied()
        .ok_or("no throughput point")?;
    let timing = Timing {
        rounds: 1,
        duration: Duration::from_secs(1),
        warmup: Duration::from_millis(250),
    };
    let job = setup.job(exe, model, point, None, timing, false, stop);
    let o = measure(&job, &|_| {});
    match (o.result, o.failure) {
        (Some(r), None) if r.report.throughput_rps > 0.0 => Ok(r.report.throughput_rps),
        (_, Some(f)) => Err(format!("calibration for the open rate failed: {f}")),
        _ => Err("calibration for the open rate measured nothing".into()),
    }
}

/// `report.html` and the table on stdout, from what was written.
fn finish_outputs(out: &Output) -> Result<(), CliError> {
    let run = iomodels::export::load(out.dir()).map_err(CliError::runtime)?;
    let runs = [run];
    let path = out.dir().join("report.html");
    crate::compare::write_html(&path, &runs)?;
    let table = iomodels::export::table::render(
        &runs,
        &iomodels::export::table::TableOptions {
            format: iomodels::export::table::Format::Table,
            baseline: None,
            styled: std::io::stdout().is_terminal(),
        },
    )
    .map_err(CliError::runtime)?;
    // A closed stdout (`| head`) is not an error.
    let mut so = std::io::stdout().lock();
    let _ = writeln!(so, "{table}");
    let _ = writeln!(so, "report: {}", path.display());
    Ok(())
}
