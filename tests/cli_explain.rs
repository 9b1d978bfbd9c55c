//! Kernel counts per request (`explain`) as a user gets them: `run` fills them for every point,
//! `load --explain --pid` against a server and `compare --explain` shows them, and without the
//! privilege a run still succeeds with `explain` null and the reason in `warnings`.
//!
//! Counting needs root or `CAP_PERFMON` (tracepoints); the tests that need it say so and return
//! where it is missing. The refusal is tested by running the binary as `nobody` (`setpriv`),
//! which needs root to switch to. No speed is asserted: only counts a request cannot avoid.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

mod common;
use common::{iomodels, scratch};

fn root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("Uid:")?
                    .split_whitespace()
                    .next()?
                    .parse::<u32>()
                    .ok()
            })
        })
        == Some(0)
}

fn read_json(p: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

/// An echo's server and client each enter at least one receive and one send per request
/// (read-side batching can only merge receives when several requests are in flight on one
/// connection, which a closed loop at depth 1 never has).
fn assert_plausible(side: &serde_json::Value, what: &str, recv: &str, send: &str) {
    let f = |k: &str| {
        side[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{what}.{k}: {side}"))
    };
    let calls = f("syscalls_per_request");
    assert!((1.5..20.0).contains(&calls), "{what} syscalls/req {calls}");
    let by = &side["by_name"];
    for name in [recv, send] {
        let v = by[name]
            .as_f64()
            .unwrap_or_else(|| panic!("{what} lacks {name}: {by}"));
        assert!((0.9..3.0).contains(&v), "{what} {name}/req {v}");
    }
    assert!(f("context_switches_per_request") >= 0.0);
    assert!(f("wakeups_per_request") >= 0.0);
    assert!(side["totals"]["syscalls"].as_u64().unwrap() > 0);
}

#[test]
fn run_writes_plausible_kernel_counts_for_every_point() {
    if !root() {
        eprintln!("skipped: kernel counts need root or CAP_PERFMON here");
        return;
    }
    let dir = scratch("cli-explain", "run");
    std::fs::remove_dir(&dir).unwrap();
    let out = iomodels(&[
        "run",
        "--models",
        "epoll",
        "--points",
        "throughput",
        "-t",
        "300ms",
        "--warmup",
        "100ms",
        "--rounds",
        "1",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let r = read_json(&dir.join("epoll/throughput.json"));
    assert_eq!(r["schema"], "iomodels.result/1.3");
    // The counts come from a pass of their own after the rounds (the counters cost CPU): the
    // round itself was measured without them, its median copy carries the pass's counts.
    let round = read_json(&dir.join("epoll/throughput.r1.json"));
    assert!(round["explain"].is_null(), "{}", round["explain"]);
    let pass = read_json(&dir.join("epoll/throughput.explain.json"));
    let e = &r["explain"];
    assert!(e.is_object(), "explain is null: {}", pass["warnings"]);
    assert_eq!(e, &pass["explain"]);
    assert_eq!(e["requests"], pass["requests"]);
    let w = e["window_s"].as_f64().unwrap();
    assert!(w > 0.2 && w < 5.0, "window {w}");
    assert_plausible(&e["server"], "server", "recvfrom", "sendto");
    assert_plausible(&e["client"], "client", "recvfrom", "sendto");
    assert!(
        e["server"]["io_uring"].is_null(),
        "epoll does no io_uring work"
    );
    assert!(e["unavailable"].is_array());

    // compare --explain shows them, the report has its section.
    let c = iomodels(&["compare", dir.to_str().unwrap(), "--explain"]);
    let text = String::from_utf8_lossy(&c.stdout);
    assert_eq!(c.status.code(), Some(0));
    assert!(
        text.contains("kernel counts per request: throughput"),
        "{text}"
    );
    assert!(text.contains("recvfrom"), "{text}");
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("id=\"explain\""));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A newcomer found wake-ups ≈ 0.01 per request with the server and the generator on different
/// CPUs, though each side sleeps and is woken once per request at one connection: the counter
/// was `sched_wakeup`, which for a task on another CPU fires on that CPU. Counted where the
/// waker runs (`sched_waking`), each side wakes the other about once per request.
#[test]
fn wake_ups_are_counted_when_server_and_generator_run_on_different_cpus() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if !root() || cpus < 2 {
        eprintln!("skipped: needs root (or CAP_PERFMON) and two CPUs");
        return;
    }
    let mut server = Command::new(env!("CARGO_BIN_EXE_iomodels"))
        .args(["serve", "epoll", "--listen", "127.0.0.1:0", "--cpus", "0"])
        .arg("--stop-on-stdin-eof")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().strip_prefix("listening ").unwrap().to_owned();
    let json = scratch("cli-explain", "wakeups").join("r.json");
    let pid = server.id().to_string();
    let out = iomodels(&[
        "load",
        &addr,
        "-c",
        "1",
        "-t",
        "300ms",
        "--warmup",
        "100ms",
        "--cpus",
        "1",
        "--explain",
        "--pid",
        &pid,
        "--json",
        json.to_str().unwrap(),
    ]);
    drop(server.stdin.take());
    let _ = server.wait();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e = &read_json(&json)["explain"];
    for side in ["server", "client"] {
        let w = e[side]["wakeups_per_request"].as_f64().unwrap();
        // One per request in principle; a busy moment can let a side find its next request
        // without sleeping, so half is the bound, far above the 0.01 the wrong event read.
        assert!(w > 0.5, "{side}: {w} wake-ups per request: {e}");
    }
}

#[test]
fn load_explain_counts_a_server_by_pid_and_the_generator() {
    if !root() {
        eprintln!("skipped: kernel counts need root or CAP_PERFMON here");
        return;
    }
    let mut server = Command::new(env!("CARGO_BIN_EXE_iomodels"))
        .args([
            "serve",
            "epoll",
            "--listen",
            "127.0.0.1:0",
            "--stop-on-stdin-eof",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().strip_prefix("listening ").unwrap().to_owned();
    let dir = scratch("cli-explain", "load");
    let json = dir.join("r.json");
    let pid = server.id().to_string();
    let out = iomodels(&[
        "load",
        &addr,
        "-c",
        "4",
        "-t",
        "300ms",
        "--warmup",
        "100ms",
        "--explain",
        "--pid",
        &pid,
        "--json",
        json.to_str().unwrap(),
    ]);
    drop(server.stdin.take());
    let _ = server.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("kernel counts per request"), "{stdout}");
    let e = &read_json(&json)["explain"];
    assert_eq!(e["server"]["pid"].as_u64(), Some(u64::from(server.id())));
    assert_plausible(&e["server"], "server", "recvfrom", "sendto");
    assert_plausible(&e["client"], "client", "recvfrom", "sendto");

    // A PID that names nothing is the user's mistake: exit 2, one line naming the flag.
    let out = iomodels(&["load", &addr, "--explain", "--pid", "999999999"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--pid 999999999"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// As `nobody` (no `CAP_PERFMON`, `kernel.perf_event_paranoid` ≥ 0 on any sane system) the
/// kernel refuses the counters: the run must still succeed, with `explain` null and the reason
/// in `warnings`.
#[test]
fn without_the_privilege_a_run_succeeds_with_explain_null_and_the_reason() {
    let paranoid: i32 = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(2);
    let setpriv = Path::new("/usr/bin/setpriv");
    if !root() || !setpriv.exists() || paranoid < 0 {
        eprintln!("skipped: needs root, setpriv and kernel.perf_event_paranoid >= 0");
        return;
    }
    let parent = scratch("cli-explain", "refused");
    std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o777)).unwrap();
    let dir = parent.join("out");
    let out = Command::new(setpriv)
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_iomodels"))
        .args([
            "run", "--models", "epoll", "--points", "latency", "-t", "200ms", "--warmup", "50ms",
            "--rounds", "1", "--out",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let r = read_json(&dir.join("epoll/latency.json"));
    assert!(r["explain"].is_null(), "{}", r["explain"]);
    // The reason is in the explain pass's result and in the run's summary.
    let pass = read_json(&dir.join("epoll/latency.explain.json"));
    assert!(pass["explain"].is_null(), "{}", pass["explain"]);
    for warnings in [
        pass["warnings"].to_string(),
        read_json(&dir.join("summary.json"))["warnings"].to_string(),
    ] {
        assert!(
            warnings.contains("kernel counts (explain) unavailable"),
            "{warnings}"
        );
    }
    // Everything else is measured as usual.
    assert!(r["requests"].as_u64().unwrap() > 0);
    assert!(r["server_cpu"].is_object());
    let _ = std::fs::remove_dir_all(&parent);
}

/// `run --no-explain` measures as before: no counters, `explain` null, no warning about it.
#[test]
fn run_no_explain_leaves_explain_null_without_a_warning() {
    let dir = scratch("cli-explain", "off");
    let out = iomodels(&[
        "run",
        "--models",
        "epoll",
        "--points",
        "latency",
        "-t",
        "200ms",
        "--warmup",
        "50ms",
        "--rounds",
        "1",
        "--no-explain",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = read_json(&dir.join("epoll/latency.json"));
    assert!(r["explain"].is_null());
    assert!(
        !r["warnings"].to_string().contains("explain"),
        "{}",
        r["warnings"]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
