//! One measurement: start the model's server as a child process, load it with the in-process
//! generator, sample the child's CPU over exactly the measured window, stop it, and put both
//! halves into one [`PointResult`].
//!
//! It deliberately decides nothing about files or rounds; a failure comes back as one line for
//! the summary, with whatever was measured before it.

use std::cell::RefCell;
use std::path::Path;
use std::time::Duration;

use iomodels::child::ServeChild;
use iomodels::explain::Session;
use iomodels::record::{PointResult, ServeConfig, ServerSide};
use loadgen::{Cpu, Hooks, LoadError, Options, Progress, Proto, Stop, Window};

use super::plan::{Point, Timing};

/// How long a server may take to print `listening`, and to stop after stdin EOF, before it is
/// reported (and killed).
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything one measurement needs.
pub struct Job<'a> {
    pub exe: &'a Path,
    pub model: &'a str,
    pub point: Point,
    /// Open loop: requests per second; closed loop: `None`.
    pub rate: Option<f64>,
    pub timing: Timing,
    pub serve: &'a ServeConfig,
    /// CPUs for the generator's threads (one thread per CPU), or unpinned.
    pub client_cpus: Option<&'a [usize]>,
    /// Count kernel events per request (`explain`); false: `--no-explain`.
    pub explain: bool,
    pub stop: &'a Stop,
}

/// What came of a measurement: a result (possibly partial), and a failure line when something
/// went wrong (the server would not start or died, errors were counted, nothing completed).
pub struct Outcome {
    pub result: Option<PointResult>,
    pub failure: Option<String>,
}

impl Outcome {
    fn failed(why: String) -> Self {
        Self {
            result: None,
            failure: Some(why),
        }
    }
}

/// The generator's `--timeout` for UDP points: an echo later than this is a lost datagram
/// (1,000× a loopback round trip), and a run's end-of-window drain waits at most this long.
pub const UDP_TIMEOUT: Duration = Duration::from_secs(1);

/// The `serve` flags that reproduce `config` exactly.
pub fn serve_args(config: &ServeConfig) -> Vec<String> {
    let mut a = vec![
        "--threads".into(),
        config.threads.to_string(),
        "--buffer".into(),
        config.buffer_size.to_string(),
        "--backlog".into(),
        config.backlog.to_string(),
        "--accept".into(),
        config.accept.clone(),
    ];
    if let Some(c) = &config.cpus {
        a.push("--cpus".into());
        a.push(
            c.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    a
}

/// Run one job. `progress` receives the generator's live view.
pub fn measure(job: &Job, progress: &dyn Fn(&Progress)) -> Outcome {
    measure_with(job, &|_| {}, progress)
}

/// [`measure`], with `shape` adjusting the generator's options (built from the job) before they
/// are validated: `sweep` adds idle connections this way.
pub fn measure_with(
    job: &Job,
    shape: &dyn Fn(&mut Options),
    progress: &dyn Fn(&Progress),
) -> Outcome {
    let p = job.point;
    let mut args = serve_args(job.serve);
    if p.proto == Proto::Udp {
        args.extend(["--proto".to_owned(), "udp".to_owned()]);
    }
    let mut child = match ServeChild::spawn(job.exe, job.model, &args, CHILD_TIMEOUT) {
        Ok(c) => c,
        Err(e) => return Outcome::failed(format!("server did not start: {e}")),
    };
    let mut o = Options::new(child.addr());
    o.connections = p.connections;
    o.size = p.size;
    o.rate = job.rate;
    o.duration = Some(job.timing.duration);
    o.warmup = job.timing.warmup;
    o.cpus = job.client_cpus.map(<[usize]>::to_vec);
    o.threads = job.client_cpus.map_or(1, <[usize]>::len).min(p.connections);
    o.busy_poll = p.busy_poll;
    o.proto = p.proto;
    if p.proto == Proto::Udp {
        // A datagram is lost when its echo is this late; a duration run drains for at most
        // this long at its end, so the default 5 s would add 5 s to every lossy point.
        o.timeout = UDP_TIMEOUT;
    }
    shape(&mut o);
    let workload = match o.validate() {
        Ok(w) => w,
        Err(e) => return Outcome::failed(format!("invalid workload: {e}")),
    };

    // Kernel counts (`explain`): attached before the generator starts, so its workers inherit
    // the counters; enabled and disabled at the same edges as the CPU samples.
    let explain = job
        .explain
        .then(|| RefCell::new(Session::attach(Some(child.process().id()))));
    // The child's CPU at the window's two edges, sampled right next to the generator's own.
    let samples: RefCell<Vec<std::io::Result<(Duration, Duration)>>> = RefCell::new(Vec::new());
    let window = |edge: Window| {
        samples
            .borrow_mut()
            .push(loadgen::child_cpu_times(child.process()));
        match (edge, &explain) {
            (Window::Opened, Some(s)) => s.borrow_mut().start(),
            (Window::Closed, Some(s)) => s.borrow_mut().stop(),
            (_, None) => {}
        }
    };
    let hooks = Hooks {
        progress: Some(progress),
        window: Some(&window),
    };
    let measured = loadgen::run_with_hooks(&workload, job.stop, &hooks);
    let died = child.has_exited();
    let stderr = child.stderr_tail();
    let stats = child.stop(CHILD_TIMEOUT);

    let mut report = match measured {
        Ok(r) => r,
        Err(LoadError::Refused { addr }) => {
            return Outcome::failed(format!("connection refused by {addr}: {stderr}"));
        }
        Err(e) => return Outcome::failed(format!("load failed: {e}")),
    };
    let explain = match explain.map(|s| s.into_inner().finish(report.requests)) {
        None => None,
        Some(Ok(e)) => Some(e),
        Some(Err(why)) => {
            report
                .warnings
                .push(format!("kernel counts (explain) unavailable: {why}"));
            None
        }
    };
    let samples = samples.into_inner();
    let server_cpu = match samples.as_slice() {
        [Ok(a), Ok(b)] => Some(Cpu::new(
            b.0.saturating_sub(a.0),
            b.1.saturating_sub(a.1),
            report.requests,
        )),
        _ => {
            let why = samples
                .iter()
                .find_map(|s| s.as_ref().err().map(ToString::to_string))
                .unwrap_or_else(|| "window not reported".into());
            report
                .warnings
                .push(format!("server CPU time unavailable: {why}"));
            None
        }
    };
    let mut failure = None;
    let stats = match stats {
        Ok(s) => Some(s),
        Err(e) => {
            failure = Some(if died {
                format!("server died during the measurement: {e}")
            } else {
                format!("server did not stop cleanly: {e}")
            });
            None
        }
    };
    let e = &report.errors;
    if failure.is_none() && e.total > 0 {
        failure = Some(format!(
            "{} errors (refused {}, reset {}, timeout {}, mismatch {}, addr_unavailable {}, other {})",
            e.total, e.refused, e.reset, e.timeout, e.mismatch, e.addr_unavailable, e.other
        ));
    }
    if failure.is_none() && report.requests == 0 && !report.interrupted {
        failure = Some("no request completed".into());
    }
    Outcome {
        result: Some(PointResult {
            report,
            server_cpu,
            server: Some(ServerSide {
                model: job.model.to_owned(),
                config: job.serve.clone(),
                stats,
            }),
            explain,
        }),
        failure,
    }
}
