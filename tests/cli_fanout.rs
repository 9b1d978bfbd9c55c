//! `iomodels fanout` as a user runs it on loopback: every mode at N = 3 delivers to every
//! receiver, as threads and as processes; the JSON has its documented keys; send calls per
//! message are what each mode makes (N or 1); the wire counter grows at least as each mode
//! implies; multicast joins and leaves are counted and messages sent while a receiver was out
//! are not counted lost; broadcast without SO_BROADCAST fails with EACCES named; bad inputs exit
//! 2 before anything runs; Ctrl-C ends a run with 130 and a partial record. Not a test of the
//! figures (that is scripts/netns.sh --compare, on a wire of its own).

use std::path::Path;
use std::time::{Duration, Instant};

mod common;
use common::{iomodels, scratch};

fn read_json(p: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

/// A low rate: far below where loopback drops datagrams (tens of thousands per second).
const RATE: &str = "200";

/// Run fanout with `args` plus `--json`, expect exit 0, return the record.
fn fanout(name: &str, args: &[&str]) -> serde_json::Value {
    let dir = scratch("cli-fanout", name);
    let json = dir.join("fanout.json");
    let mut a = vec!["fanout", "-R", RATE, "--json", json.to_str().unwrap()];
    if !args.contains(&"-t") {
        a.extend_from_slice(&["-t", "1s"]);
    }
    a.extend_from_slice(args);
    let o = iomodels(&a);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{args:?}\n{stdout}\n{stderr}");
    assert!(stdout.contains("sender CPU µs / message"), "{stdout}");
    read_json(&json)
}

/// The documented keys, every receiver served, and the mode's own send-call count.
fn check(r: &serde_json::Value, mode: &str, n: u64, calls_per_message: f64) {
    for k in [
        "schema",
        "mode",
        "receivers",
        "size",
        "rate",
        "duration_s",
        "sent",
        "delivered_ratio",
        "sender_cpu",
        "sender_syscalls_per_message",
        "wire_packets",
        "latency_us",
        "per_receiver",
        "joins",
        "leaves",
    ] {
        assert!(r.get(k).is_some(), "key {k} missing: {r}");
    }
    for k in ["user_s", "system_s", "us_per_message"] {
        assert!(r["sender_cpu"].get(k).is_some(), "sender_cpu.{k} missing");
    }
    for k in ["p50", "p99", "max"] {
        assert!(r["latency_us"].get(k).is_some(), "latency_us.{k} missing");
    }
    assert_eq!(r["schema"], "iomodels.fanout/1");
    assert_eq!(r["mode"], mode);
    assert_eq!(r["receivers"].as_u64(), Some(n));
    let sent = r["sent"].as_u64().unwrap();
    // 1 s at 200/s: a liveness bound with 4× slack, not a rate claim.
    assert!(sent >= 50, "sent {sent}");
    let ratio = r["delivered_ratio"].as_f64().unwrap();
    assert!(ratio >= 0.99, "delivered ratio {ratio}: {r}");
    let per = r["per_receiver"].as_array().unwrap();
    assert_eq!(per.len() as u64, n);
    for x in per {
        assert!(
            x["delivered"].as_u64().unwrap() * 100 >= sent * 99,
            "receiver {x} of {sent}"
        );
        assert!(x["latency_us"]["max"].as_f64().unwrap() > 0.0, "{x}");
    }
    let calls = r["sender_syscalls_per_message"].as_f64().unwrap();
    if mode == "tcp" {
        // A partial write adds a call; never fewer than one per receiver.
        assert!(calls >= calls_per_message, "{calls}");
    } else {
        assert_eq!(calls, calls_per_message, "{mode}");
    }
    if cfg!(target_os = "linux") {
        // lo counts every sender on the host: only a lower bound holds. Every datagram of ours
        // crosses lo once: N per message by unicast, at least one by multicast or broadcast.
        let wire = r["wire_packets"]
            .as_u64()
            .expect("lo's tx_packets on Linux");
        let floor = if mode == "udp" || mode == "tcp" {
            n * sent
        } else {
            sent
        };
        assert!(wire >= floor, "{mode}: wire {wire} < {floor}");
    }
}

#[test]
fn tcp_threads_deliver_to_every_receiver() {
    check(&fanout("tcp", &["-n", "3", "--mode", "tcp"]), "tcp", 3, 3.0);
}

#[test]
fn udp_threads_deliver_to_every_receiver() {
    check(&fanout("udp", &["-n", "3", "--mode", "udp"]), "udp", 3, 3.0);
}

#[test]
fn multicast_threads_deliver_to_every_receiver_with_one_send() {
    let r = fanout("multicast", &["-n", "3", "--mode", "multicast"]);
    check(&r, "multicast", 3, 1.0);
    assert_eq!(r["joins"].as_u64(), Some(3), "each receiver joined once");
    assert_eq!(r["leaves"].as_u64(), Some(0));
}

// Loopback has no broadcast address of its own; Linux's local table routes 127.255.255.255.
#[cfg(target_os = "linux")]
#[test]
fn broadcast_on_loopback_delivers_to_every_receiver_with_one_send() {
    check(
        &fanout("broadcast", &["-n", "3", "--mode", "broadcast"]),
        "broadcast",
        3,
        1.0,
    );
}

#[test]
fn receivers_as_processes_deliver_too() {
    check(
        &fanout("udp-proc", &["-n", "3", "--mode", "udp", "--processes"]),
        "udp",
        3,
        3.0,
    );
    let r = fanout(
        "mc-proc",
        &["-n", "3", "--mode", "multicast", "--processes"],
    );
    check(&r, "multicast", 3, 1.0);
    assert_eq!(r["processes"], true);
}

#[test]
fn multicast_joins_and_leaves_are_counted_and_absence_is_not_loss() {
    let r = fanout(
        "churn",
        &[
            "-n",
            "3",
            "--mode",
            "multicast",
            "--churn",
            "250ms",
            "-t",
            "1500ms",
        ],
    );
    let sent = r["sent"].as_u64().unwrap();
    for x in r["per_receiver"].as_array().unwrap() {
        let (joins, leaves) = (x["joins"].as_u64().unwrap(), x["leaves"].as_u64().unwrap());
        // The first join, then a leave and a rejoin alternating.
        assert!(leaves >= 1, "{x}");
        assert!(joins == leaves || joins == leaves + 1, "{x}");
        let delivered = x["delivered"].as_u64().unwrap();
        assert!(delivered < sent, "left the group yet read all {sent}: {x}");
        // Out of the group for about half the run: what it missed is not loss.
        assert!(x["lost"].as_u64().unwrap() * 50 <= sent, "{x}");
    }
    assert_eq!(r["churn_s"].as_f64(), Some(0.25));
}

#[cfg(target_os = "linux")]
#[test]
fn broadcast_without_so_broadcast_is_refused_with_eacces_named() {
    let o = iomodels(&[
        "fanout",
        "-n",
        "2",
        "--mode",
        "broadcast",
        "-t",
        "500ms",
        "--without-so-broadcast",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("EACCES") && err.contains("SO_BROADCAST"),
        "{err}"
    );
}

#[test]
fn bad_inputs_exit_2_with_one_line_before_anything_runs() {
    for (args, says) in [
        (vec!["-n", "0", "--mode", "udp"], "--receivers 0"),
        (vec!["-n", "2", "--mode", "udp", "-R", "0"], "--rate 0"),
        (vec!["-n", "2", "--mode", "udp", "-s", "65508"], "65507"),
        (
            vec!["-n", "2", "--mode", "multicast", "-s", "65508"],
            "65507",
        ),
        (vec!["-n", "2", "--mode", "tcp", "-s", "10"], "at least 24"),
        (
            vec!["-n", "2", "--mode", "multicast", "--group", "10.1.2.3"],
            "224.0.0.0/4",
        ),
        (
            vec![
                "-n",
                "2",
                "--mode",
                "broadcast",
                "--interface",
                "no-such-if0",
            ],
            "no-such-if0",
        ),
        (
            vec!["-n", "2", "--mode", "udp", "--churn", "1s"],
            "multicast only",
        ),
    ] {
        let mut a = vec!["fanout", "-t", "30s"];
        a.extend_from_slice(&args);
        let started = Instant::now();
        let o = iomodels(&a);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        // Refused before the 30 s run: liveness with 5× slack on a noisy machine.
        assert!(started.elapsed() < Duration::from_secs(6), "{args:?} ran");
    }
}

#[cfg(unix)]
#[test]
fn ctrl_c_ends_a_run_with_130_and_a_partial_record() {
    use std::process::Command;
    let dir = scratch("cli-fanout", "interrupt");
    let json = dir.join("fanout.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_iomodels"))
        .args([
            "fanout",
            "-n",
            "3",
            "--mode",
            "udp",
            "--processes",
            "-R",
            RATE,
            "-t",
            "60s",
        ])
        .arg("--json")
        .arg(&json)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("fanout did not stop within 20 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130));
    let r = read_json(&json);
    assert_eq!(r["interrupted"], true);
    assert!(r["sent"].as_u64().unwrap() > 0);
    assert!(r["delivered_ratio"].as_f64().unwrap() >= 0.99, "{r}");
}

#[test]
fn compare_tables_and_charts_fanout_records() {
    let dir = scratch("cli-fanout", "compare");
    let mut files = Vec::new();
    for (mode, n) in [
        ("udp", "1"),
        ("udp", "2"),
        ("multicast", "1"),
        ("multicast", "2"),
    ] {
        let f = dir.join(format!("{mode}-{n}.json"));
        let o = iomodels(&[
            "fanout",
            "-n",
            n,
            "--mode",
            mode,
            "-R",
            RATE,
            "-t",
            "300ms",
            "--json",
            f.to_str().unwrap(),
        ]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        files.push(f.to_str().unwrap().to_owned());
    }
    let html = dir.join("report.html");
    let mut a = vec![
        "compare",
        "--format",
        "csv",
        "--html",
        html.to_str().unwrap(),
    ];
    a.extend(files.iter().map(String::as_str));
    let o = iomodels(&a);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        out.lines().count(),
        5,
        "a header and a row per mode × N: {out}"
    );
    assert!(
        out.contains("\nudp,2,1,") && out.contains("\nmulticast,1,1,"),
        "{out}"
    );
    let h = std::fs::read_to_string(&html).unwrap();
    assert_eq!(h.matches("<svg").count(), 2, "CPU and wire charts");
    assert!(h.contains("receivers (N)"));
}
