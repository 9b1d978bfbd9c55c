//! `iomodels sweep` as a user runs it: inputs checked before anything is measured (exit 2, one
//! line), each sweep kind on tiny step lists writing the `run` layout and a summary with the
//! documented keys, steps skipped with their reason (a model's own ceiling, the open-file
//! limit), and `compare` reading a sweep folder. Not a test of the figures.

use std::path::{Path, PathBuf};

mod common;
use common::{iomodels, iomodels_ok, scratch};

/// A model that runs everywhere this builds, and a second one.
const FAST: &str = if cfg!(target_os = "linux") {
    "epoll"
} else {
    "mio"
};

fn out_dir(name: &str) -> PathBuf {
    // A folder that does not exist yet (sweep wants a new or empty one).
    scratch("cli-sweep", name).join("out")
}

fn read_json(p: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

/// Short steps: the tests check the layout, not the figures.
const SHORT: &[&str] = &["-t", "200ms", "--warmup", "50ms"];

fn sweep(args: &[&str], out: &Path) -> (serde_json::Value, String) {
    let mut a = vec!["sweep"];
    a.extend_from_slice(args);
    a.extend_from_slice(SHORT);
    a.extend_from_slice(&["--out", out.to_str().unwrap()]);
    let o = iomodels(&a);
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{args:?}\n{stdout}\n{stderr}");
    (read_json(&out.join("summary.json")), stdout)
}

/// Every documented key of a step, and a measured step's files.
fn check_step(dir: &Path, model: &str, st: &serde_json::Value) {
    for k in [
        "step",
        "file",
        "fraction",
        "target_rps",
        "idle",
        "connections",
        "achieved_rps",
        "latency_us",
        "server_cpu",
        "client_cpu",
        "saturated",
        "skipped",
        "failed",
        "interrupted",
        "notes",
    ] {
        assert!(st.get(k).is_some(), "{model}: step lacks {k}: {st}");
    }
    if st["skipped"].is_null() {
        assert!(st["failed"].is_null(), "{model}: {st}");
        let name = st["step"].as_str().unwrap();
        assert_eq!(st["file"], format!("{model}/{name}.json"));
        for ext in ["json", "hlog"] {
            assert!(
                dir.join(model).join(format!("{name}.{ext}")).is_file(),
                "missing {model}/{name}.{ext}"
            );
        }
        let r = read_json(&dir.join(model).join(format!("{name}.json")));
        assert_eq!(r["server"]["model"], model);
        assert!(r["server_cpu"].is_object(), "{r}");
        assert!(st["achieved_rps"].as_f64().unwrap() > 0.0);
        for p in ["p50", "p99", "p99_9"] {
            assert!(st["latency_us"][p].as_f64().unwrap() > 0.0, "{st}");
        }
    }
}

#[test]
fn bad_inputs_exit_2_with_one_line_before_measuring() {
    let busy = scratch("cli-sweep", "busy");
    std::fs::write(busy.join("x"), "x").unwrap();
    let busy = busy.to_str().unwrap();
    for (args, says) in [
        (
            &["sweep", "rate", "--from", "50", "--to", "20"][..],
            "under --from",
        ),
        (&["sweep", "rate", "--steps", "0"], "--steps"),
        (&["sweep", "idle", "--models", "nosuch"], "nosuch"),
        (&["sweep", "idle", "--models", ""], "model"),
        // Unix refuses it on the open-file limit; Windows, which has none, on the client ports.
        (
            &["sweep", "idle", "--idle-steps", "0,100000000"],
            if cfg!(unix) {
                "descriptors"
            } else {
                "client ports"
            },
        ),
        (&["sweep", "idle", "--steps", "3"], "sweep rate"),
        (
            &["sweep", "connections", "--connection-steps", "0"],
            "0 connections",
        ),
        (&["sweep", "connections", "--out", busy], "not empty"),
        (&["sweep", "sideways"], "sideways"),
    ] {
        let out = iomodels(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        if !args.contains(&"sideways") {
            assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
        }
        assert!(out.stdout.is_empty(), "{args:?} measured something");
    }
}

#[test]
fn a_rate_sweep_writes_the_layout_the_knee_and_the_report() {
    let dir = out_dir("rate");
    let (s, stdout) = sweep(
        &[
            "rate", "--models", FAST, "--steps", "2", "--from", "20", "--to", "60",
        ],
        &dir,
    );
    assert_eq!(s["schema"], "iomodels.sweep/1.1");
    assert_eq!(s["sweep"], "rate");
    assert!(s["finished"].is_string());
    assert_eq!(s["interrupted"], false);
    assert_eq!(s["p99_target_us"], 1000.0);
    let m = &s["models"][FAST];
    let max = &m["max"];
    assert_eq!(max["step"], "rate-max");
    check_step(&dir, FAST, max);
    let max_rps = max["achieved_rps"].as_f64().unwrap();
    let steps = m["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    for (st, f) in steps.iter().zip([0.2, 0.6]) {
        check_step(&dir, FAST, st);
        // Each step's rate is its fraction of the same sweep's maximum.
        let want = max_rps * f;
        let got = st["target_rps"].as_f64().unwrap();
        assert!((got - want).abs() < 1e-6 * want, "{got} vs {want}");
        assert!(st["idle"].is_null());
    }
    // The knee is null or one of the steps, never invented.
    assert!(m.get("knee_rps").is_some());
    if let Some(k) = m["knee_rps"].as_f64() {
        assert!(
            steps
                .iter()
                .any(|st| st["achieved_rps"].as_f64() == Some(k))
        );
    }
    assert!(stdout.contains("knee"), "{stdout}");
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.matches("<svg").count() >= 3 && !html.contains("could not be drawn"));
    let _ = std::fs::remove_dir_all(dir.parent().unwrap());
}

#[test]
fn an_idle_sweep_records_steps_past_select_fd_setsize_as_skipped() {
    let dir = out_dir("idle");
    let models = if cfg!(unix) {
        format!("{FAST},select")
    } else {
        FAST.to_owned()
    };
    let (s, stdout) = sweep(
        &["idle", "--models", &models, "--idle-steps", "0,20,1100"],
        &dir,
    );
    assert_eq!(s["sweep"], "idle");
    assert_eq!(s["connections"], 50);
    let fast = s["models"][FAST]["steps"].as_array().unwrap();
    assert_eq!(fast.len(), 3);
    for (st, n) in fast.iter().zip([0, 20, 1100]) {
        assert_eq!(st["idle"], n);
        assert!(st["skipped"].is_null(), "{st}");
        check_step(&dir, FAST, st);
        // What the server held, from its own count in the step's file.
        let r = read_json(&dir.join(FAST).join(format!("idle-{n}.json")));
        let peak = r["server"]["stats"]["peak_open"].as_u64().unwrap();
        assert_eq!(st["idle_held"], peak.saturating_sub(50).min(n), "{st}");
    }
    assert_eq!(s["schema"], "iomodels.sweep/1.1");
    let r = read_json(&dir.join(FAST).join("idle-1100.json"));
    assert_eq!(r["workload"]["idle"], 1100);
    // Every idle connection opened (the generator opens them in flight together; one after
    // another, a dropped SYN cost a second each and large counts did not fit --timeout).
    assert!(
        !r["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("not opened")),
        "{}",
        r["warnings"]
    );
    if cfg!(unix) {
        let sel = s["models"]["select"]["steps"].as_array().unwrap();
        assert!(sel[0]["skipped"].is_null() && sel[1]["skipped"].is_null());
        check_step(&dir, "select", &sel[1]);
        let why = sel[2]["skipped"].as_str().unwrap();
        assert!(why.contains("FD_SETSIZE"), "{why}");
        assert!(sel[2]["achieved_rps"].is_null());
        assert!(!dir.join("select/idle-1100.json").exists());
        assert!(stdout.contains("FD_SETSIZE"), "{stdout}");
    }
    let _ = std::fs::remove_dir_all(dir.parent().unwrap());
}

#[test]
fn a_connections_sweep_writes_every_step_and_compare_reads_it() {
    let dir = out_dir("connections");
    let (s, _) = sweep(
        &[
            "connections",
            "--models",
            &format!("{FAST},blocking"),
            "--connection-steps",
            "1,8",
        ],
        &dir,
    );
    assert_eq!(s["sweep"], "connections");
    assert!(s["connections"].is_null());
    for m in [FAST, "blocking"] {
        let steps = s["models"][m]["steps"].as_array().unwrap();
        let conns: Vec<u64> = steps
            .iter()
            .map(|st| st["connections"].as_u64().unwrap())
            .collect();
        assert_eq!(conns, [1, 8]);
        for st in steps {
            check_step(&dir, m, st);
        }
    }
    // compare reads the folder and its summary, in every format.
    for (fmt, says) in [
        ("table", "sweep connections"),
        ("markdown", "### sweep connections"),
        ("csv", "connections,"),
        ("json", "iomodels.compare-sweep/1"),
    ] {
        let o = iomodels(&["compare", dir.to_str().unwrap(), "--format", fmt]);
        let text = String::from_utf8_lossy(&o.stdout);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{fmt}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            text.contains(says) && text.contains("blocking"),
            "{fmt}: {text}"
        );
    }
    let html = dir.parent().unwrap().join("again.html");
    iomodels_ok(&[
        "compare",
        dir.join("summary.json").to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    assert!(std::fs::read_to_string(&html).unwrap().contains("<svg"));

    // --baseline: every step as ratios to the baseline's step of the same name.
    let text = iomodels_ok(&["compare", dir.to_str().unwrap(), "--baseline", "blocking"]);
    assert!(
        text.contains("req/s × blocking") && text.contains("1.00×"),
        "{text}"
    );
    let o = iomodels(&[
        "compare",
        dir.to_str().unwrap(),
        "--baseline",
        "blocking",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let r = &v["sweeps"][0]["ratios"];
    assert_eq!(r["blocking"]["connections-8"]["rps"], 1.0, "{r}");
    let (a, b) = (
        s["models"][FAST]["steps"][1]["achieved_rps"]
            .as_f64()
            .unwrap(),
        s["models"]["blocking"]["steps"][1]["achieved_rps"]
            .as_f64()
            .unwrap(),
    );
    let got = r[FAST]["connections-8"]["rps"].as_f64().unwrap();
    assert!((got - a / b).abs() < 1e-9, "{got} vs {}", a / b);
    let o = iomodels(&["compare", dir.to_str().unwrap(), "--baseline", "nosuch"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a model of sweep"));

    // A sweep has no kernel counts: --explain says so instead of printing nothing.
    let o = iomodels(&["compare", dir.to_str().unwrap(), "--explain"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("without kernel counters"));

    // A run (here one result file) and a sweep in one report.
    let both = dir.parent().unwrap().join("both.html");
    let step = dir.join("blocking").join("connections-8.json");
    iomodels_ok(&[
        "compare",
        step.to_str().unwrap(),
        dir.to_str().unwrap(),
        "--html",
        both.to_str().unwrap(),
    ]);
    let html = std::fs::read_to_string(&both).unwrap();
    assert!(html.contains("iomodels report") && html.contains("sweep connections"));
    let _ = std::fs::remove_dir_all(dir.parent().unwrap());
}

/// Under a small open-file limit (set on the sweep, and so on its server children), default
/// steps that need more are skipped with the reason and the rest are measured.
#[cfg(target_os = "linux")]
#[test]
fn steps_over_the_open_file_limit_are_skipped_with_the_reason() {
    let dir = out_dir("limit");
    let cmd = format!(
        "ulimit -n 400 && exec '{}' sweep idle --models epoll -t 200ms --warmup 50ms --out '{}'",
        env!("CARGO_BIN_EXE_iomodels"),
        dir.display()
    );
    let o = std::process::Command::new("sh")
        .args(["-c", &cmd])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let s = read_json(&dir.join("summary.json"));
    assert_eq!(s["descriptor_limit"], 400);
    let steps = s["models"]["epoll"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 5, "the default idle steps");
    for st in steps {
        let n = st["idle"].as_u64().unwrap();
        if n <= 100 {
            check_step(&dir, "epoll", st);
        } else {
            let why = st["skipped"].as_str().unwrap_or_default();
            assert!(why.contains("open-file limit is 400"), "{n}: {st}");
        }
    }
    // Given explicitly, a step over the limit is the user's mistake: exit 2 before measuring.
    let cmd = format!(
        "ulimit -n 400 && exec '{}' sweep idle --models epoll --idle-steps 0,1000 --out '{}'",
        env!("CARGO_BIN_EXE_iomodels"),
        dir.parent().unwrap().join("never").display()
    );
    let o = std::process::Command::new("sh")
        .args(["-c", &cmd])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("idle-1000") && err.contains("400"), "{err}");
    let _ = std::fs::remove_dir_all(dir.parent().unwrap());
}

/// Ctrl-C in the middle of a step: exit 130, the steps before it and the cut one kept (marked),
/// the summary marked, and the server child stopped.
#[cfg(target_os = "linux")]
#[test]
fn sigint_keeps_what_was_measured_and_exits_130() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let dir = out_dir("sigint");
    let mut sweep = Command::new(env!("CARGO_BIN_EXE_iomodels"))
        .args(["sweep", "connections", "--models", "epoll"])
        .args([
            "--connection-steps",
            "1,2",
            "-t",
            "30s",
            "--warmup",
            "100ms",
        ])
        .arg("--out")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let children = format!("/proc/{0}/task/{0}/children", sweep.id());
    let t = Instant::now();
    let server: u32 = loop {
        let c = std::fs::read_to_string(&children).unwrap_or_default();
        if let Some(pid) = c.split_whitespace().next() {
            break pid.parse().unwrap();
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no server child appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(1200));
    let kill = Command::new("kill")
        .args(["-INT", &sweep.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let t = Instant::now();
    let status = loop {
        if let Some(s) = sweep.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "sweep did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(sweep.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(
        !Path::new(&format!("/proc/{server}")).exists(),
        "the server child {server} was left running"
    );
    let s = read_json(&dir.join("summary.json"));
    assert_eq!(s["interrupted"], true);
    let steps = s["models"]["epoll"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "the second step never started: {s}");
    assert_eq!(steps[0]["interrupted"], true);
    let r = read_json(&dir.join("epoll/connections-1.json"));
    assert_eq!(r["interrupted"], true);
    assert!(r["requests"].as_u64().unwrap() > 0);
    assert!(dir.join("report.html").is_file());
    let _ = std::fs::remove_dir_all(dir.parent().unwrap());
}
