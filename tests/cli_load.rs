//! `iomodels load` as a user runs it: exit codes, the refused message, and the result JSON.
//!
//! Each case runs the real binary with bounded waits; the echo server is a std thread here so
//! these tests do not depend on the `servers` crate. Not a test of the measurements themselves
//! (`loadgen/tests` does that).

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{echo_server, echo_server_watched, iomodels};

/// A fresh, empty folder for one test.
fn scratch(name: &str) -> std::path::PathBuf {
    common::scratch("cli-load", name)
}

#[test]
fn bad_flags_exit_2() {
    for args in [
        &["load", "127.0.0.1:1", "--bogus"][..],
        &["load", "127.0.0.1:1", "-t", "1s", "-n", "5"],
        &["load", "127.0.0.1:1", "--depth", "0"],
        &["load", "127.0.0.1:1", "--size", "0"],
        &["load", "127.0.0.1:1", "--size-range", "9..3"],
        &["load", "127.0.0.1:1", "-R", "0"],
        &["load", "no-such-host.invalid:1"],
        &["load", "127.0.0.1:1", "-t", "ten"],
    ] {
        let out = iomodels(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stderr.is_empty());
    }
}

#[test]
fn a_rejected_value_names_its_flag_and_the_fix() {
    for (args, line) in [
        (
            &["load", "127.0.0.1:1", "-t", "0"][..],
            "iomodels: -t/--duration: must be longer than 0 s (e.g. 10s)\n",
        ),
        (
            &["load", "127.0.0.1:1", "-c", "0"],
            "iomodels: -c/--connections: must be at least 1\n",
        ),
    ] {
        let out = iomodels(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), line, "{args:?}");
    }
}

#[test]
fn nothing_listening_exits_1_quickly_with_a_clear_message() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let t = Instant::now();
    let out = iomodels(&["load", &addr, "-t", "1s"]);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "iomodels: connection refused by {addr}: is a server listening? (start one with iomodels serve MODEL)"
        )),
        "{err}"
    );
}

#[test]
fn good_run_writes_contract_json_and_hlog() {
    let addr = echo_server();
    let dir = std::env::temp_dir().join(format!("cli-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("r.json");
    let hlog = dir.join("r.hlog");
    let out = iomodels(&[
        "load",
        &addr,
        "-c",
        "2",
        "-t",
        "500ms",
        "--warmup",
        "100ms",
        "--cpus",
        "0-1",
        "--size-range",
        "16..256",
        "--depth",
        "2",
        "--json",
        json.to_str().unwrap(),
        "--hlog",
        hlog.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // stderr is not a terminal here: no progress bar, and nothing else went wrong.
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("throughput") && stdout.contains("p99.99"),
        "{stdout}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // Every key of the contract is checked on the library's report (loadgen/tests/files.rs);
    // here, that the binary wrote that document, with what its flags asked for.
    assert_eq!(v["schema"], "iomodels.result/1.3");
    // Not asked for (no --explain): present and null, as the schema promises.
    assert!(v.get("explain").is_some_and(serde_json::Value::is_null));
    assert_eq!(v["workload"]["connections"], 2);
    assert_eq!(v["workload"]["duration"], 0.5);
    assert_eq!(v["workload"]["size_range"]["max"], 256);
    assert_eq!(v["pinning"], serde_json::json!([0, 1]));
    assert!(v["requests"].as_u64().unwrap() > 0);
    assert!(
        std::fs::read_to_string(&hlog)
            .unwrap()
            .contains("Tag=corrected,")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[test]
fn sigint_writes_what_was_measured_marked_interrupted_and_exits_130() {
    let addr = echo_server();
    let dir = std::env::temp_dir().join(format!("iomodels-sigint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("r.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_iomodels"))
        .args(["load", &addr, "-c", "2", "-t", "60s", "--warmup", "0s"])
        .arg("--json")
        .arg(&json)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "load did not stop after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["interrupted"], true);
    assert!(
        v["requests"].as_u64().unwrap() > 0,
        "what was measured is kept"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `iomodels ARGS` in a private mount namespace whose `/etc/hosts` lists `::1 localhost`
/// before `127.0.0.1 localhost` (most Linux distributions), or says why it cannot and returns
/// `None`: that needs root (or user namespaces) and a resolver that keeps that order.
#[cfg(target_os = "linux")]
fn with_ipv6_first_localhost(args: &[&str]) -> Option<std::process::Output> {
    let hosts = std::env::temp_dir().join(format!("iomodels-hosts-{}", std::process::id()));
    std::fs::write(&hosts, "::1 localhost\n127.0.0.1 localhost\n").unwrap();
    let in_namespace = |cmd: &[&str]| {
        Command::new("unshare")
            .args([
                "-m",
                "sh",
                "-c",
                r#"mount --bind "$0" /etc/hosts && exec "$@""#,
            ])
            .arg(&hosts)
            .args(cmd)
            .output()
    };
    let order = in_namespace(&["getent", "ahosts", "localhost"]);
    let out = (|| {
        let first = match &order {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_owned(),
            Ok(o) => {
                eprintln!(
                    "skipped: no private /etc/hosts here (unshare -m and mount --bind need root): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                return None;
            }
            Err(e) => {
                eprintln!("skipped: cannot run unshare: {e}");
                return None;
            }
        };
        if first != "::1" {
            eprintln!("skipped: this resolver puts {first} first for localhost, not ::1");
            return None;
        }
        let bin = env!("CARGO_BIN_EXE_iomodels");
        let cmd: Vec<&str> = std::iter::once(bin).chain(args.iter().copied()).collect();
        Some(in_namespace(&cmd).expect("run iomodels in the namespace"))
    })();
    let _ = std::fs::remove_file(&hosts);
    out
}

/// Issue 12, fault 1: `localhost` was tried at its first address only, so a server on
/// 127.0.0.1 was "refused" by [::1].
#[cfg(target_os = "linux")]
#[test]
fn localhost_reaches_a_server_on_127_0_0_1_when_hosts_lists_ipv6_first() {
    let addr = echo_server();
    let port = addr.rsplit(':').next().unwrap();
    let target = format!("localhost:{port}");
    let Some(out) =
        with_ipv6_first_localhost(&["load", &target, "-c", "1", "-t", "200ms", "--warmup", "0s"])
    else {
        return;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with(&format!("{addr}: closed loop")),
        "{stdout}"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn when_no_address_of_a_host_accepts_each_is_named_in_order() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let target = format!("localhost:{port}");
    let Some(out) = with_ipv6_first_localhost(&["load", &target, "-t", "1s"]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "iomodels: no address of {target} accepted a connection: [::1]:{port} ("
        )) && err.contains(&format!(
            "), 127.0.0.1:{port} (refused); is a server listening?"
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// Issue 12, fault 3: an output path that cannot be written used to be found only after the
/// whole measurement, which was then thrown away.
#[test]
fn an_unwritable_output_path_exits_2_before_connecting() {
    let (addr, accepted) = echo_server_watched();
    let dir = scratch("unwritable");
    let file = dir.join("plain");
    std::fs::write(&file, b"x").unwrap();
    let missing = dir.join("no/such/dir/r.json");
    let through_file = file.join("r.hlog");
    for (flag, path, says) in [
        (
            "--json",
            &missing,
            "does not exist: create it first or give another path",
        ),
        ("--hlog", &through_file, "is a file, not a folder"),
        ("--json", &dir, "is a folder: give a file in it"),
    ] {
        let t = Instant::now();
        let out = iomodels(&["load", &addr, "-t", "10s", flag, path.to_str().unwrap()]);
        assert!(
            t.elapsed() < Duration::from_secs(8),
            "{flag}: {:?}",
            t.elapsed()
        );
        assert_eq!(out.status.code(), Some(2), "{flag} {}", path.display());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with(&format!("iomodels: {flag} {}", path.display())) && err.contains(says),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(out.stdout.is_empty());
    }
    assert!(accepted.try_recv().is_err(), "nothing connected");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_run_that_cannot_connect_leaves_no_output_file_behind() {
    let refusing = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let dir = scratch("no-stray");
    let out = iomodels(&[
        "load",
        &refusing,
        "-t",
        "1s",
        "--json",
        dir.join("r.json").to_str().unwrap(),
        "--hlog",
        dir.join("r.hlog").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The folder passes the check, then disappears during the run: the summary is still printed,
/// the files are saved elsewhere and named, and the exit code says the files are missing.
#[test]
fn an_output_that_fails_at_the_end_keeps_the_summary_and_a_copy() {
    let (addr, accepted) = echo_server_watched();
    let dir = scratch("vanishing");
    let json = dir.join("r.json");
    let hlog = dir.join("r.hlog");
    let child = Command::new(env!("CARGO_BIN_EXE_iomodels"))
        .args(["load", &addr, "-c", "1", "-t", "300ms", "--warmup", "0s"])
        .arg("--json")
        .arg(&json)
        .arg("--hlog")
        .arg(&hlog)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A connection means the outputs were checked (that happens before connecting).
    accepted
        .recv_timeout(Duration::from_secs(10))
        .expect("load connected");
    std::fs::remove_dir_all(&dir).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("throughput") && stdout.contains("p99.99"),
        "{stdout}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    for (flag, path, ext) in [("--json", &json, "json"), ("--hlog", &hlog, "hlog")] {
        let start = format!("cannot write {flag} {} (", path.display());
        let at = err
            .find(&start)
            .unwrap_or_else(|| panic!("{flag} not named: {err}"));
        let copy = err[at..]
            .split("saved to ")
            .nth(1)
            .and_then(|r| r.split(" instead").next())
            .unwrap_or_else(|| panic!("no copy named: {err}"));
        assert!(copy.ends_with(&format!("r.{ext}")), "{copy}");
        let text = std::fs::read_to_string(copy).unwrap();
        if ext == "json" {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert!(v["requests"].as_u64().unwrap() > 0);
        }
        std::fs::remove_file(copy).unwrap();
    }
}

/// `load --busy-poll` against a server: it completes requests, says so in the summary and
/// records `workload.busy_poll: true` (the default run records `false`).
#[test]
fn busy_poll_loads_and_is_recorded_in_the_workload() {
    let addr = echo_server();
    let dir = common::scratch("cli-load", "busy-poll");
    for busy in [true, false] {
        let json = dir.join(format!("{busy}.json"));
        let mut args = vec![
            "load",
            &addr,
            "-c",
            "1",
            "-s",
            "64",
            "-t",
            "300ms",
            "--warmup",
            "50ms",
            "--json",
            json.to_str().unwrap(),
        ];
        if busy {
            args.push("--busy-poll");
        }
        let out = iomodels(&args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout.contains("busy-polling"), busy, "{stdout}");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(v["workload"]["busy_poll"], busy);
        assert!(
            v["requests"].as_u64().unwrap() > 0,
            "busy={busy}: nothing completed"
        );
        assert_eq!(v["errors"]["total"], 0);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
