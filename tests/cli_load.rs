//! `iomodels load` as a user runs it: exit codes, the refused message, and the result JSON.
//!
//! Each case runs the real binary with bounded waits; the echo server is a std thread here so
//! these tests do not depend on the `servers` crate. Not a test of the measurements themselves
//! (`loadgen/tests` does that).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn iomodels(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_iomodels"))
        .args(args)
        .output()
        .expect("run iomodels")
}

/// A plain echo server that lives as long as the test process; threads end when clients close.
fn echo_server() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let _ = s.set_nodelay(true);
                let mut buf = [0u8; 65536];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
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
fn a_zero_duration_says_what_is_wrong_with_its_unit_and_flag() {
    for t in ["0", "0s"] {
        let out = iomodels(&["load", "127.0.0.1:1", "-t", t]);
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "iomodels: duration must be longer than 0 s (--duration)\n"
        );
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
    assert_eq!(v["schema"], "iomodels.result/1");
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
