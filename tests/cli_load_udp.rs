//! `iomodels load --proto udp` as a user runs it: the loss line and the `udp` object against a
//! server with known faults, a silent server, nothing listening, and every bad input refused
//! with one line and exit 2 before anything runs.
//!
//! The UDP servers are the engine tests' own (`loadgen/tests/common/udp.rs`, included by path
//! so there is one copy), run as threads of this test process.

use std::time::{Duration, Instant};

mod common;
use common::{iomodels, iomodels_ok};

#[path = "../loadgen/tests/common/udp.rs"]
mod udp_server;
use udp_server::{UdpBehavior, UdpServer};

fn scratch(name: &str) -> std::path::PathBuf {
    common::scratch("cli-load-udp", name)
}

#[test]
fn bad_udp_input_is_one_line_and_exit_2_before_anything_runs() {
    // A live server, so that any run at all would be seen in its counts.
    let srv = UdpServer::start(UdpBehavior::Echo);
    let addr = srv.addr.to_string();
    for (flags, starts) in [
        (
            &["-s", "65508"][..],
            "iomodels: -s/--size: 65508 bytes exceeds",
        ),
        (
            &["-s", "100000"],
            "iomodels: -s/--size: 100000 bytes exceeds",
        ),
        (&["-s", "8"], "iomodels: -s/--size: 8 bytes cannot hold"),
        (
            &["--size-range", "4..64"],
            "iomodels: --size-range: 4 bytes",
        ),
        (
            &["--connect-per-request"],
            "iomodels: --connect-per-request is TCP only",
        ),
        (&["--idle", "5"], "iomodels: --idle is TCP only"),
        (
            &["-R", "1000", "--depth", "4"],
            "iomodels: --depth applies to closed loop only",
        ),
    ] {
        let mut args = vec!["load", "--proto", "udp", &addr, "-t", "1s"];
        args.extend_from_slice(flags);
        let out = iomodels(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {err}");
        assert!(err.starts_with(starts), "{flags:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{flags:?}: one line: {err}");
    }
    let out = iomodels(&["load", "--proto", "sctp", &addr]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(srv.counts().received, 0, "nothing was sent");
}

#[test]
fn the_loss_line_and_the_udp_object_count_what_the_server_did() {
    let srv = UdpServer::start(UdpBehavior::Faulty);
    let dir = scratch("faulty");
    let json = dir.join("r.json");
    let stdout = iomodels_ok(&[
        "load",
        &srv.addr.to_string(),
        "--proto",
        "udp",
        "-c",
        "3",
        "--depth",
        "4",
        "-n",
        "600",
        "--warmup",
        "0s",
        "--timeout",
        "300ms",
        "--json",
        json.to_str().unwrap(),
    ]);
    let s = srv.counts();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["schema"], loadgen::SCHEMA);
    assert_eq!(v["workload"]["proto"], "udp");
    let u = &v["udp"];
    assert_eq!(u["sent"], 600);
    assert_eq!(u["sent"], s.received);
    assert_eq!(u["lost"], s.dropped, "{u} {s:?}");
    assert_eq!(u["duplicated"], s.duplicated, "{u} {s:?}");
    assert_eq!(u["reordered"], s.swapped, "{u} {s:?}");
    assert_eq!(u["received"], s.received - s.dropped);
    let line = format!(
        "  loss         {:.3}%  sent 600  received {}  lost {}  in flight 0  duplicated {}  reordered {}  late 0",
        s.dropped as f64 * 100.0 / 600.0,
        s.received - s.dropped,
        s.dropped,
        s.duplicated,
        s.swapped
    );
    assert!(stdout.contains(&line), "{line}\n{stdout}");
    assert!(stdout.starts_with(&format!("{} (udp): closed loop", srv.addr)));
    if cfg!(target_os = "linux") {
        assert!(
            stdout.contains("kernel UDP   host-wide: RcvbufErrors"),
            "{stdout}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_silent_server_exits_1_on_time_and_nothing_listening_is_refused() {
    let srv = UdpServer::start(UdpBehavior::Silent);
    let t = Instant::now();
    let out = iomodels(&[
        "load",
        &srv.addr.to_string(),
        "--proto",
        "udp",
        "-t",
        "500ms",
        "--warmup",
        "0s",
        "--timeout",
        "200ms",
    ]);
    // Probe (200 ms) + 500 ms + drain (200 ms), with 5x slack and process start-up.
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("iomodels: no datagram answered by"),
        "{err}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("  loss         100.000%"), "{stdout}");
    drop(srv);

    let dead = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().to_string()
    };
    let out = iomodels(&["load", &dead, "--proto", "udp", "-t", "1s"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("refused the UDP probe"), "{err}");
}

/// A server that dies mid-run: its refusals are counted, the figures of what it answered are
/// printed and written, and the run exits 1 (the exit-code contract: the server died), naming
/// when it stopped answering instead of blaming the generator. Before, it exited 0 and said the
/// generator could not send more.
#[test]
fn a_server_that_dies_mid_run_exits_1_with_what_it_answered() {
    let srv = UdpServer::start(UdpBehavior::Echo);
    let json = scratch("died").join("r.json");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_iomodels"))
        .args(["load", &srv.addr.to_string(), "--proto", "udp", "-c", "4"])
        .args([
            "-R",
            "2000",
            "-t",
            "3s",
            "--warmup",
            "0s",
            "--timeout",
            "300ms",
        ])
        .arg("--json")
        .arg(&json)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Past the start-up probe and into the window, then the server goes (its port then
    // answers with ICMP port unreachable: refused).
    std::thread::sleep(Duration::from_millis(1000));
    drop(srv);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{err}");
    assert!(
        err.contains("stopped answering") && err.trim().lines().count() == 1,
        "{err}"
    );
    assert!(
        !stdout.contains("the most this generator could send"),
        "{stdout}"
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(r["requests"].as_u64().unwrap() > 0, "{r}");
    assert!(r["errors"]["refused"].as_u64().unwrap() > 0, "{r}");
}
