//! `iomodels run` as a user runs it: inputs checked before anything is measured (exit 2), and
//! a short real run that writes the contract's layout, `summary.json`, `report.html` and the
//! table. Not a test of the figures (`loadgen/tests` checks the generator against known truth).

use std::path::{Path, PathBuf};
#[cfg(target_os = "linux")]
use std::process::Command;

mod common;
use common::iomodels;

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("iomodels-run-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn read_json(p: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn bad_inputs_exit_2_with_one_line_before_measuring() {
    let busy = temp("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("x"), "x").unwrap();
    let file = temp("file");
    std::fs::write(&file, "x").unwrap();
    let busy = busy.to_str().unwrap();
    let file = file.to_str().unwrap();
    for (args, says) in [
        (&["run", "--models", "nosuch"][..], "nosuch"),
        (&["run", "--points", "fast"], "fast"),
        (&["run", "--server-cpus", "999"], "999"),
        (&["run", "--client-cpus", "x"], "--client-cpus"),
        (&["run", "--rounds", "0"], "--rounds"),
        (&["run", "--out", busy], "not empty"),
        (&["run", "--out", file], "is a file"),
    ] {
        let out = iomodels(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?} measured something");
    }
    let _ = std::fs::remove_file(file);
    // `run --help` names every point there is (the refusal lists them from the plan itself).
    let err = String::from_utf8(iomodels(&["run", "--points", "fast"]).stderr).unwrap();
    let known = err
        .trim()
        .rsplit("choose among ")
        .next()
        .unwrap()
        .to_owned();
    let help = String::from_utf8(iomodels(&["run", "--help"]).stdout).unwrap();
    for point in known.split(", ") {
        assert!(help.contains(point), "run --help does not name {point}");
    }
}

#[test]
fn a_short_run_writes_every_file_of_the_layout() {
    let dir = temp("layout");
    // epoll is Linux only; mio runs everywhere.
    let models = if cfg!(target_os = "linux") {
        "epoll,blocking"
    } else {
        "mio,blocking"
    };
    let out = iomodels(&[
        "run",
        "--models",
        models,
        "--points",
        "latency,latency-spin,throughput,open",
        "--rounds",
        "2",
        "-t",
        "300ms",
        "--warmup",
        "100ms",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let s = read_json(&dir.join("summary.json"));
    assert_eq!(s["schema"], "iomodels.summary/1");
    assert!(s["finished"].is_string());
    assert_eq!(s["interrupted"], false);
    let names: Vec<&str> = models.split(',').collect();
    for m in &names {
        assert!(stdout.contains(m), "table lacks {m}: {stdout}");
        let ms = s["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["model"] == *m)
            .unwrap();
        assert_eq!(ms["failures"].as_array().unwrap().len(), 0, "{ms}");
        let mut server_cpu_s = 0.0;
        for p in ["latency", "latency-spin", "throughput", "open"] {
            for f in [
                format!("{m}/{p}.json"),
                format!("{m}/{p}.hlog"),
                format!("{m}/{p}.r1.json"),
                format!("{m}/{p}.r2.json"),
                format!("{m}/{p}.r2.hlog"),
            ] {
                assert!(dir.join(&f).is_file(), "missing {f}");
            }
            let r = read_json(&dir.join(format!("{m}/{p}.json")));
            assert_eq!(r["server"]["model"], *m);
            // Measured (the OS counts 10 ms ticks, so one short point on a loaded machine may
            // read 0; the model's points together must not).
            let cpu = &r["server_cpu"];
            assert!(cpu["us_per_request"].as_f64().unwrap() >= 0.0, "{p}: {cpu}");
            server_cpu_s += cpu["user_s"].as_f64().unwrap() + cpu["system_s"].as_f64().unwrap();
            assert!(r["server"]["stats"]["accepted"].as_u64().unwrap() >= 1);
            // Both sides' wait strategy is recorded: only latency-spin's generator busy-polls,
            // and run's servers always sleep.
            assert_eq!(r["workload"]["busy_poll"], p == "latency-spin", "{p}");
            assert_eq!(
                r["server"]["stats"]["settings"]["busy_poll"], "false",
                "{p}"
            );
            let ps = ms["points"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["point"] == p)
                .unwrap();
            assert_eq!(ps["rounds"], 2);
            // The copy is the round with the median throughput, plus the kernel counts of the
            // explain pass (counted apart: the rounds ran without counters).
            let k = ps["median_round"].as_u64().unwrap();
            let mut copy = read_json(&dir.join(format!("{m}/{p}.json")));
            let round = read_json(&dir.join(format!("{m}/{p}.r{k}.json")));
            assert!(
                round["explain"].is_null(),
                "{m}/{p}.r{k}: {}",
                round["explain"]
            );
            let pass_file = dir.join(format!("{m}/{p}.explain.json"));
            if cfg!(target_os = "linux") {
                let pass = read_json(&pass_file);
                assert_eq!(copy["explain"], pass["explain"], "{m}/{p}");
            } else {
                // No counters off Linux, so no pass that would measure again for nothing.
                assert!(!pass_file.exists(), "{}", pass_file.display());
                let said = s["warnings"].as_array().unwrap().iter().any(|w| {
                    w.as_str().is_some_and(|w| {
                        w.contains("perf_event_open") && w.contains("no kernel-count pass")
                    })
                });
                assert!(said, "{}", s["warnings"]);
            }
            copy["explain"] = serde_json::Value::Null;
            assert_eq!(copy, round, "{m}/{p}");
        }
        assert!(
            server_cpu_s > 0.0,
            "{m}: the server's CPU was never measured"
        );
        // The open point ran at half of the same round's throughput.
        for k in 1..=2 {
            let t = read_json(&dir.join(format!("{m}/throughput.r{k}.json")));
            let o = read_json(&dir.join(format!("{m}/open.r{k}.json")));
            let want = t["throughput_rps"].as_f64().unwrap() / 2.0;
            let got = o["target_rps"].as_f64().unwrap();
            assert!((got - want).abs() < 1e-6 * want.max(1.0), "{got} vs {want}");
        }
    }
    // The wake-up cost per round trip (latency − latency-spin) beside each model's latency.
    assert!(stdout.contains("wake-up cost per round trip"), "{stdout}");
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("<svg"));
    assert!(
        html.contains("id=\"wake-up\""),
        "no wake-up section in the report"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Ctrl-C in the middle of a point: exit 130, the point kept and marked, the summary marked,
/// and the server child stopped (not left behind).
#[cfg(target_os = "linux")]
#[test]
fn sigint_keeps_what_was_measured_stops_the_children_and_exits_130() {
    use std::time::{Duration, Instant};
    let dir = temp("sigint");
    let mut run = Command::new(env!("CARGO_BIN_EXE_iomodels"))
        .args([
            "run",
            "--models",
            "epoll",
            "--points",
            "throughput",
            "--rounds",
            "1",
        ])
        .args(["-t", "30s", "--warmup", "100ms", "--out"])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the server child exists and the measurement is under way.
    let children = format!("/proc/{0}/task/{0}/children", run.id());
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
    std::thread::sleep(Duration::from_millis(1500));
    let kill = Command::new("kill")
        .args(["-INT", &run.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let t = Instant::now();
    let status = loop {
        if let Some(s) = run.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "run did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(run.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(
        !Path::new(&format!("/proc/{server}")).exists(),
        "the server child {server} was left running"
    );
    let s = read_json(&dir.join("summary.json"));
    assert_eq!(s["interrupted"], true);
    let r = read_json(&dir.join("epoll/throughput.r1.json"));
    assert_eq!(r["interrupted"], true);
    assert!(r["requests"].as_u64().unwrap() > 0);
    assert!(r["duration_s"].as_f64().unwrap() < 10.0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// With one CPU there is nothing to pin apart: the run goes unpinned and says so in its results.
#[cfg(target_os = "linux")]
#[test]
fn one_cpu_runs_unpinned_with_a_warning() {
    if Command::new("taskset").arg("--version").output().is_err() {
        eprintln!("skipped: taskset (util-linux) is not installed");
        return;
    }
    let dir = temp("one-cpu");
    let out = Command::new("taskset")
        .args(["-c", "0", env!("CARGO_BIN_EXE_iomodels")])
        .args([
            "run", "--models", "epoll", "--points", "latency", "-t", "200ms",
        ])
        .args(["--warmup", "50ms", "--rounds", "1", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("not pinned"), "{err}");
    let s = read_json(&dir.join("summary.json"));
    assert!(
        s["server_cpus"].is_null() && s["client_cpus"].is_null(),
        "{s}"
    );
    let warnings = s["warnings"].to_string();
    assert!(warnings.contains("not pinned"), "{warnings}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The UDP points: the server started with `--proto udp`, the generator's loss in every result,
/// the summary's loss per point, and the report's TCP-and-UDP section beside the TCP point.
#[test]
fn udp_points_measure_datagram_echo_and_report_loss() {
    let dir = temp("udp");
    let model = if cfg!(target_os = "linux") {
        "epoll"
    } else {
        "mio"
    };
    let out = iomodels(&[
        "run",
        "--models",
        model,
        "--points",
        "latency,udp-latency,udp-open",
        "--rounds",
        "1",
        "-t",
        "300ms",
        "--warmup",
        "100ms",
        "--no-explain",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    for p in ["udp-latency", "udp-open"] {
        let r = read_json(&dir.join(model).join(format!("{p}.json")));
        assert_eq!(r["workload"]["proto"], "udp", "{p}");
        assert_eq!(r["server"]["stats"]["proto"], "udp", "{p}");
        let u = &r["udp"];
        let (sent, received, lost) = (
            u["sent"].as_u64().unwrap(),
            u["received"].as_u64().unwrap(),
            u["lost"].as_u64().unwrap(),
        );
        assert!(sent > 0 && received > 0, "{p}: {u}");
        assert_eq!(
            sent,
            received + lost + u["in_flight"].as_u64().unwrap(),
            "{p}: {u}"
        );
        // Every datagram the server echoed came from this generator (plus its probe).
        assert!(r["server"]["stats"]["datagrams_in"].as_u64().unwrap() >= received);
    }
    let open = read_json(&dir.join(model).join("udp-open.json"));
    assert_eq!(open["target_rps"], 20_000.0);
    let s = read_json(&dir.join("summary.json"));
    let points = s["points"].as_array().unwrap();
    let spec = points.iter().find(|p| p["name"] == "udp-open").unwrap();
    assert_eq!(
        (spec["proto"].as_str(), spec["rate_rps"].as_f64()),
        (Some("udp"), Some(20_000.0))
    );
    let ms = &s["models"][0]["points"];
    let udp_open = ms
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["point"] == "udp-open")
        .unwrap();
    assert!(
        udp_open["udp_loss_ratio"]["value"].is_number(),
        "{udp_open}"
    );
    assert!(
        stdout.contains("udp-open") && stdout.contains("UDP loss"),
        "{stdout}"
    );
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("TCP and UDP side by side") && html.contains("loss % (median)"));
    let _ = std::fs::remove_dir_all(&dir);
}
