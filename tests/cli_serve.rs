//! `iomodels models` and `iomodels serve` as a user (or `run`, or a script) sees them: exit
//! codes, the stdout contract, signals, and the cases that need a server with its own
//! descriptor limit (EMFILE, select's FD_SETSIZE, 10,000 connections), run as child processes.
//!
//! Time bounds here are liveness checks with generous slack, never speed claims.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::iomodels;

const BIN: &str = env!("CARGO_BIN_EXE_iomodels");

/// A `serve` child with its stdout reader, killed on drop if still running.
struct Serve {
    child: Child,
    stdout: BufReader<ChildStdout>,
    addr: SocketAddr,
}

impl Serve {
    fn start(args: &[&str]) -> Self {
        Self::start_with(Command::new(BIN), args)
    }

    fn start_with(mut cmd: Command, args: &[&str]) -> Self {
        let mut child = cmd
            .arg("serve")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read listening line");
        let addr = iomodels::child::parse_listening(&line)
            .unwrap_or_else(|| panic!("expected `listening ADDR`, got {line:?}"));
        Self {
            child,
            stdout,
            addr,
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} failed");
    }

    /// Waits (bounded) for exit; returns the exit code and the rest of stdout.
    fn finish(mut self) -> (i32, String) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut rest = String::new();
                self.stdout.read_to_string(&mut rest).unwrap();
                return (status.code().unwrap_or(-1), rest);
            }
            assert!(Instant::now() < deadline, "serve did not exit within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops `model`'s server `how`: `eof` closes its stdin, anything else is a signal name
    /// for kill(1) (`INT`, `TERM`). Asserts it then exits 0; returns the rest of its stdout.
    fn stop_ok(mut self, model: &str, how: &str) -> String {
        match how {
            "eof" => drop(self.child.stdin.take()),
            sig => self.signal(&format!("-{sig}")),
        }
        let (code, rest) = self.finish();
        assert_eq!(code, 0, "{model} stopped by {how}");
        rest
    }

    /// CPU seconds (user + system) the server has used, from the OS (as `run` reads it).
    #[cfg(target_os = "linux")]
    fn cpu_seconds(&self) -> f64 {
        let (user, system) = loadgen::child_cpu_times(&self.child).unwrap();
        (user + system).as_secs_f64()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn echo_once(addr: SocketAddr, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(msg)?;
    let mut got = vec![0; msg.len()];
    s.read_exact(&mut got)?;
    Ok(got)
}

fn stats_of(stdout_rest: &str) -> serde_json::Value {
    let line = stdout_rest
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no stats line in {stdout_rest:?}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("stats line is not JSON ({e}): {line}"))
}

#[test]
fn models_names_lists_exactly_the_available_models() {
    let out = iomodels(&["models", "--names"]);
    assert!(out.status.success());
    let names: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let want: Vec<String> = servers::Model::available()
        .map(|m| m.name().to_string())
        .collect();
    assert_eq!(names, want);
    #[cfg(target_os = "linux")]
    for m in [
        "blocking", "select", "poll", "epoll", "mio", "polling", "tokio", "tokio-mt",
    ] {
        assert!(
            names.iter().any(|n| n == m),
            "{m} missing from models --names on Linux"
        );
    }
    let table = String::from_utf8(iomodels(&["models"]).stdout).unwrap();
    for m in servers::Model::ALL {
        assert!(
            table.contains(m.name()) && table.contains(m.description()),
            "{m} missing from the table"
        );
    }
    // Every column is explained under the table.
    for column in ["HERE ", "BUSY-POLL ", "PROTO "] {
        assert!(
            table.lines().skip(1).any(|l| l.starts_with(column)),
            "{column} not explained: {table}"
        );
    }
}

#[test]
fn unknown_model_is_a_usage_error() {
    let out = iomodels(&["serve", "nope", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("unknown model 'nope'"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line on stderr: {err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn unavailable_models_are_refused_with_their_reason() {
    // On Linux every model runs; elsewhere (macOS, Windows) this exercises the refusal.
    for m in servers::Model::ALL
        .iter()
        .filter(|m| m.availability().is_err())
    {
        let out = iomodels(&["serve", m.name(), "--listen", "127.0.0.1:0"]);
        assert_eq!(out.status.code(), Some(2), "{m}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains("not available here"), "{err}");
    }
}

#[test]
fn bad_flags_are_usage_errors() {
    for args in [
        &[
            "serve",
            "epoll",
            "--threads",
            "0",
            "--listen",
            "127.0.0.1:0",
        ][..],
        &[
            "serve",
            "blocking",
            "--threads",
            "2",
            "--listen",
            "127.0.0.1:0",
        ],
        &["serve", "poll", "--buffer", "0", "--listen", "127.0.0.1:0"],
        &["serve", "poll", "--buffer", "12q"],
        &["serve", "poll", "--listen", "not-an-address"],
        &["serve", "poll", "--accept", "sideways"],
    ] {
        let out = iomodels(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("panicked"),
            "{args:?}"
        );
    }
}

/// Issue 12: `--listen` took only `IP:PORT`. A host name binds the first of its addresses that
/// can be bound here and says which in the `listening` line.
#[test]
#[cfg_attr(not(target_os = "linux"), ignore = "serves epoll: Linux only")]
fn listen_takes_a_host_name_and_prints_the_address_it_bound() {
    let server = Serve::start(&["epoll", "--listen", "localhost:0", "--stop-on-stdin-eof"]);
    assert!(server.addr.ip().is_loopback(), "{}", server.addr);
    assert_ne!(server.addr.port(), 0);
    assert_eq!(echo_once(server.addr, b"host").unwrap(), b"host");
    let mut server = server;
    drop(server.child.stdin.take());
    let (code, rest) = server.finish();
    assert_eq!(code, 0);
    assert_eq!(stats_of(&rest)["accepted"], 1);
}

#[test]
fn listen_on_a_name_that_does_not_resolve_says_so_in_one_line() {
    let out = iomodels(&["serve", "epoll", "--listen", "no-such-host.invalid:7700"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("iomodels: --listen no-such-host.invalid:7700: cannot resolve")
            && err
                .trim_end()
                .ends_with("give HOST:PORT, e.g. 127.0.0.1:7700"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
#[cfg_attr(not(target_os = "linux"), ignore = "serves epoll: Linux only")]
fn port_in_use_is_a_usage_error_even_with_reuseport() {
    let first = Serve::start(&["epoll", "--listen", "127.0.0.1:0", "--threads", "2"]);
    let port = first.addr.to_string();
    for model_args in [
        &["poll"][..],
        &["epoll", "--threads", "2"],
        &["mio", "--threads", "2"],
        &["tokio-mt", "--threads", "2"],
    ] {
        let mut args = model_args.to_vec();
        args.extend(["--listen", &port]);
        let mut full = vec!["serve"];
        full.extend(args);
        let out = iomodels(&full);
        assert_eq!(out.status.code(), Some(2), "{model_args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains("already in use"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    // The first server is untouched.
    assert_eq!(echo_once(first.addr, b"still mine").unwrap(), b"still mine");
}

#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "serves epoll and signals with kill(1): Linux only"
)]
fn serve_prints_listening_then_stats_on_sigint_sigterm_and_stdin_eof() {
    for (model, how) in [
        ("epoll", "INT"),
        ("tokio", "TERM"),
        ("blocking", "INT"),
        ("mio", "eof"),
    ] {
        let server = Serve::start(&[model, "--listen", "127.0.0.1:0", "--stop-on-stdin-eof"]);
        assert_eq!(echo_once(server.addr, b"hello").unwrap(), b"hello");
        let rest = server.stop_ok(model, how);
        let stats = stats_of(&rest);
        assert_eq!(stats["model"], model);
        assert_eq!(stats["accepted"], 1);
        assert_eq!(stats["bytes_in"], 5);
        assert_eq!(stats["bytes_out"], 5);
        assert_eq!(stats["open"], 0);
        for key in [
            "peak_open",
            "peak_buffered_bytes",
            "accept_errors",
            "threads",
            "buffer_size",
        ] {
            assert!(stats.get(key).is_some(), "stats lack {key}: {stats}");
        }
        assert_eq!(
            rest.lines().count(),
            1,
            "stdout has exactly the stats line after `listening`"
        );
    }
}

#[test]
fn cpus_this_process_cannot_use_are_a_usage_error_before_binding() {
    let out = iomodels(&["serve", "epoll", "--cpus", "999", "--listen", "127.0.0.1:0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("CPU 999") && err.contains("--cpus"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(out.stdout.is_empty(), "nothing was bound or printed");
}

/// `Cpus_allowed_list` of `/proc/<task>/status`, e.g. `0` or `0-1`.
#[cfg(target_os = "linux")]
fn cpus_allowed(status_path: &std::path::Path) -> String {
    let status = std::fs::read_to_string(status_path).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap_or_else(|| panic!("no Cpus_allowed_list in {}", status_path.display()))
        .trim()
        .to_string()
}

#[cfg(target_os = "linux")]
#[test]
fn serve_cpus_pins_every_thread_the_server_makes() {
    // The first CPU this test may use (0 unless the test itself runs under taskset).
    let own = cpus_allowed("/proc/self/status".as_ref());
    let cpu: String = own.chars().take_while(char::is_ascii_digit).collect();
    for (model, extra) in [
        ("epoll", &[][..]),
        ("tokio-mt", &["--threads", "2"][..]),
        ("blocking", &[][..]),
    ] {
        let mut args = vec![model, "--cpus", &cpu, "--listen", "127.0.0.1:0"];
        args.extend(extra);
        args.push("--stop-on-stdin-eof");
        let server = Serve::start(&args);
        // A live client, so `blocking` has its per-client thread too.
        let mut client = TcpStream::connect(server.addr).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        client.write_all(b"hi").unwrap();
        let mut got = [0u8; 2];
        client.read_exact(&mut got).unwrap();

        let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{}/task", server.child.id()))
            .unwrap()
            .map(|t| t.unwrap().path())
            .collect();
        assert!(
            tasks.len() >= 3,
            "{model}: expected main, loop and helper threads, saw {}",
            tasks.len()
        );
        for task in &tasks {
            assert_eq!(
                cpus_allowed(&task.join("status")),
                cpu,
                "{model}: thread {} is not pinned",
                task.display()
            );
        }
        drop(client);
        let mut server = server;
        drop(server.child.stdin.take());
        let (code, _) = server.finish();
        assert_eq!(code, 0, "{model} with --cpus stops cleanly");
    }
}

/// Connects `n` clients (bounded), returning those that connected.
#[cfg(target_os = "linux")]
fn connect_many(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok())
        .collect()
}

#[cfg(target_os = "linux")]
#[test]
fn emfile_pauses_accepting_without_spinning_and_recovers() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    for model in [
        "blocking",
        "select",
        "poll",
        "epoll",
        "mio",
        "polling",
        "tokio",
        "tokio-mt",
        "uring",
        "uring-multishot",
    ] {
        // A server limited to 64 descriptors, asked to hold 100 connections.
        let mut cmd = Command::new("prlimit");
        cmd.args(["--nofile=64:64", BIN]);
        let server = Serve::start_with(cmd, &[model, "--listen", "127.0.0.1:0"]);
        let mut clients = connect_many(server.addr, 100);
        assert_eq!(clients.len(), 100, "{model}: the backlog takes them all");
        std::thread::sleep(Duration::from_millis(300));
        let before = server.cpu_seconds();
        std::thread::sleep(Duration::from_secs(1));
        let spent = server.cpu_seconds() - before;
        assert!(
            spent < 0.3,
            "{model}: {spent:.2} s of CPU in 1 s at the descriptor limit (spinning?)"
        );
        // The last client is still in the backlog; free descriptors and it must be served.
        let mut last = clients.pop().unwrap();
        clients.truncate(10);
        last.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        last.write_all(b"late").unwrap();
        let mut got = [0u8; 4];
        last.read_exact(&mut got)
            .unwrap_or_else(|e| panic!("{model}: no recovery after fds freed: {e}"));
        assert_eq!(&got, b"late");
        drop(clients);
        drop(last);
        server.signal("-INT");
        let (code, rest) = server.finish();
        assert_eq!(code, 0, "{model}");
        let stats = stats_of(&rest);
        assert!(
            stats["accept_errors"].as_u64().unwrap() >= 1,
            "{model}: EMFILE not counted: {stats}"
        );
    }
}

#[cfg(target_os = "linux")]
#[test]
fn select_refuses_descriptors_past_fd_setsize_and_keeps_serving() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let server = Serve::start(&["select", "--listen", "127.0.0.1:0"]);
    let clients = connect_many(server.addr, 1100);
    assert_eq!(clients.len(), 1100);
    // The first connections fit below FD_SETSIZE and are served.
    for (i, c) in clients.iter().take(900).enumerate().step_by(100) {
        let mut c = c;
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(b"ok?").unwrap();
        let mut got = [0u8; 3];
        c.read_exact(&mut got)
            .unwrap_or_else(|e| panic!("client {i}: {e}"));
    }
    // The last ones were refused: the server closed them.
    let mut last = clients.last().unwrap();
    last.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = last.write_all(b"x");
    let mut buf = [0u8; 1];
    assert!(
        matches!(last.read(&mut buf), Ok(0) | Err(_)),
        "a connection past FD_SETSIZE was not refused"
    );
    drop(clients);
    assert_eq!(echo_once(server.addr, b"after").unwrap(), b"after");
    server.signal("-INT");
    let (code, rest) = server.finish();
    assert_eq!(code, 0);
    let stats = stats_of(&rest);
    assert!(
        stats["accept_errors"].as_u64().unwrap() >= 70,
        "refusals not counted: {stats}"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn ten_thousand_connections() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    // One model at a time: the test process holds the 10,000 client ends itself.
    for model in [
        "blocking", "poll", "epoll", "mio", "polling", "tokio", "tokio-mt", "uring",
    ] {
        let server = Serve::start(&[model, "--listen", "127.0.0.1:0"]);
        let clients = connect_many(server.addr, 10_000);
        assert_eq!(clients.len(), 10_000, "{model}");
        // Every 97th client, and the last: the accept queue is FIFO, so once the last one is
        // echoed every connection has been accepted and is open at once.
        let sample = (0..clients.len()).step_by(97).chain([clients.len() - 1]);
        for (i, mut c) in sample.map(|i| (i, &clients[i])) {
            c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            c.write_all(&(i as u32).to_le_bytes()).unwrap();
            let mut got = [0u8; 4];
            c.read_exact(&mut got)
                .unwrap_or_else(|e| panic!("{model} client {i}: {e}"));
            assert_eq!(u32::from_le_bytes(got), i as u32);
        }
        drop(clients);
        server.signal("-INT");
        let (code, rest) = server.finish();
        assert_eq!(code, 0, "{model}");
        let stats = stats_of(&rest);
        assert_eq!(stats["peak_open"], 10_000, "{model}: {stats}");
        assert_eq!(stats["accept_errors"], 0, "{model}: {stats}");
    }
}

/// Issue 13: the io_uring options are typed and refused in one line, with exit 2, when the
/// value is bad or the model does not take them.
#[test]
fn io_uring_options_are_refused_in_one_line() {
    for (args, says) in [
        (
            &["epoll", "--sqpoll"][..],
            "--sqpoll applies to uring and uring-multishot only",
        ),
        (
            &["uring", "--fixed-files"],
            "--fixed-files applies to uring-multishot only",
        ),
        (
            &["poll", "--no-defer-taskrun"],
            "--no-defer-taskrun applies to uring-multishot only",
        ),
        (
            &["uring", "--sqpoll=0ms"],
            "--sqpoll idle time must be between 1 ms and 60 s",
        ),
        (
            &["uring-multishot", "--sqpoll=61s"],
            "--sqpoll idle time must be between",
        ),
    ] {
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        all.extend(["--listen", "127.0.0.1:0"]);
        let out = iomodels(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        let model = servers::Model::from_name(args[0]).unwrap();
        if model.availability().is_err() {
            // Not Linux, or no io_uring: refused for that reason first.
            assert!(err.contains("not available here"), "{args:?}: {err}");
            continue;
        }
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
    }
}

/// Issue 13: a kernel without io_uring (simulated through the models' probe) lists both io_uring
/// models as unavailable with the kernel's reason, and `serve` refuses them with it (exit 2).
#[test]
fn a_kernel_without_io_uring_is_named_as_the_reason() {
    if servers::Model::Uring.availability().is_err() {
        return; // already unavailable for a real reason, checked by the test above
    }
    for (errno, says) in [
        ("ENOSYS", "ENOSYS: this kernel has no io_uring"),
        ("EPERM", "kernel.io_uring_disabled"),
        ("IORING_OP_SHUTDOWN", "the kernel lacks IORING_OP_SHUTDOWN"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_iomodels"))
            .arg("models")
            .env("IOMODELS_URING_PROBE", errno)
            .output()
            .unwrap();
        let table = String::from_utf8_lossy(&out.stdout);
        for name in ["uring", "uring-multishot"] {
            let row = table
                .lines()
                .find(|l| l.split_whitespace().next() == Some(name))
                .unwrap_or_else(|| panic!("{name} not listed: {table}"));
            assert!(row.contains(says), "{errno}: {row}");
        }
        let out = Command::new(env!("CARGO_BIN_EXE_iomodels"))
            .args(["serve", "uring-multishot", "--listen", "127.0.0.1:0"])
            .env("IOMODELS_URING_PROBE", errno)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{errno}: {err}");
        assert!(
            err.contains(says) && err.trim().lines().count() == 1,
            "{errno}: {err}"
        );
    }
}

/// Issue 17: a kernel whose io_uring lacks what UDP echo needs (simulated through the probe)
/// still runs the io_uring models over TCP, lists them as TCP only with the missing piece
/// named, and refuses `--proto udp` with it in one line (exit 2), not a failure after start.
#[test]
fn a_kernel_without_udp_io_uring_runs_tcp_and_refuses_udp() {
    if servers::Model::UringMultishot.availability().is_err() {
        return; // unavailable for a real reason, checked above
    }
    for (simulated, refused, says) in [
        (
            "NO_MULTISHOT_RECVMSG",
            &["uring-multishot"][..],
            "lacks multishot IORING_OP_RECVMSG (Linux 6.0)",
        ),
        (
            "IORING_OP_RECVMSG",
            &["uring", "uring-multishot"],
            "the kernel lacks IORING_OP_RECVMSG",
        ),
        (
            "IORING_OP_SENDMSG",
            &["uring", "uring-multishot"],
            "the kernel lacks IORING_OP_SENDMSG",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_iomodels"))
            .args(["models", "--names", "--proto", "udp"])
            .env("IOMODELS_URING_PROBE", simulated)
            .output()
            .unwrap();
        let udp = String::from_utf8_lossy(&out.stdout).to_string();
        for name in ["uring", "uring-multishot"] {
            let listed = udp.lines().any(|l| l == name);
            assert_eq!(listed, !refused.contains(&name), "{simulated}: {udp}");
        }
        let out = Command::new(env!("CARGO_BIN_EXE_iomodels"))
            .arg("models")
            .env("IOMODELS_URING_PROBE", simulated)
            .output()
            .unwrap();
        let table = String::from_utf8_lossy(&out.stdout).to_string();
        for &name in refused {
            let row = table
                .lines()
                .find(|l| l.split_whitespace().next() == Some(name))
                .unwrap_or_else(|| panic!("{name} not listed: {table}"));
            let cols: Vec<&str> = row.split_whitespace().collect();
            assert_eq!(cols[1], "yes", "{simulated}: TCP still runs: {row}");
            assert!(
                row.contains("[no udp:") && row.contains(says),
                "{simulated}: {row}"
            );
            assert!(!row.contains("tcp,udp"), "{simulated}: {row}");
            let out = Command::new(env!("CARGO_BIN_EXE_iomodels"))
                .args(["serve", name, "--proto", "udp", "--listen", "127.0.0.1:0"])
                .env("IOMODELS_URING_PROBE", simulated)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{simulated} {name}: {err}");
            assert!(
                err.contains(says) && err.trim().lines().count() == 1,
                "{simulated} {name}: {err}"
            );
        }
    }
}

/// `serve --busy-poll`: every model whose registry row allows it serves while spinning, records
/// it in its stats, and stops promptly on stdin EOF (a liveness bound with ≥ 5× slack: its stop
/// flag is read every turn); every other model is refused with one line naming the model and
/// its reason, exit 2, before anything is bound.
#[test]
fn serve_busy_poll_spins_where_the_registry_allows_and_is_refused_elsewhere() {
    for &m in servers::Model::ALL {
        if m.availability().is_err() {
            continue; // refused for that reason instead (unavailable_models_are_refused…)
        }
        let name = m.name();
        match m.busy_poll() {
            Ok(()) => {
                let mut server = Serve::start(&[
                    name,
                    "--busy-poll",
                    "--listen",
                    "127.0.0.1:0",
                    "--stop-on-stdin-eof",
                ]);
                for msg in [&b"spin"[..], &[7u8; 100_000][..]] {
                    assert_eq!(echo_once(server.addr, msg).unwrap(), msg, "{name}");
                }
                let t = Instant::now();
                drop(server.child.stdin.take());
                let (code, rest) = server.finish();
                let took = t.elapsed();
                assert_eq!(code, 0, "{name}");
                assert!(
                    took < Duration::from_secs(5),
                    "{name}: stop while busy-polling took {took:?}"
                );
                let stats = stats_of(&rest);
                assert_eq!(stats["settings"]["busy_poll"], "true", "{name}: {stats}");
                assert_eq!(stats["bytes_out"], 100_004, "{name}: {stats}");
            }
            Err(reason) => {
                let out = iomodels(&["serve", name, "--busy-poll", "--listen", "127.0.0.1:0"]);
                let err = String::from_utf8_lossy(&out.stderr);
                assert_eq!(out.status.code(), Some(2), "{name}: {err}");
                assert_eq!(err.trim().lines().count(), 1, "{name}: one line: {err}");
                assert!(
                    err.contains(name) && err.contains(reason) && err.contains("--busy-poll"),
                    "{name}: {err}"
                );
                assert!(out.stdout.is_empty(), "{name}: nothing was bound");
            }
        }
    }
}

/// Issue 17: `serve MODEL --proto udp`: the same stdout contract (`listening`, then one stats
/// line with the UDP counters), and the models that serve UDP are the ones `models --names
/// --proto udp` lists.
#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "signals with kill(1) and serves epoll: Linux only"
)]
fn serve_proto_udp_keeps_the_stdout_contract() {
    let out = iomodels(&["models", "--names", "--proto", "udp"]);
    assert_eq!(out.status.code(), Some(0));
    let udp: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let want: Vec<&str> = servers::Model::available()
        .filter(|m| m.serves(servers::Proto::Udp).is_ok())
        .map(|m| m.name())
        .collect();
    assert_eq!(udp, want);
    for (model, how) in [("epoll", "INT"), ("blocking", "TERM"), ("tokio", "eof")] {
        if !udp.iter().any(|m| m == model) {
            continue;
        }
        let server = Serve::start(&[
            model,
            "--proto",
            "udp",
            "--listen",
            "127.0.0.1:0",
            "--stop-on-stdin-eof",
        ]);
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        sock.send_to(b"hello", server.addr).unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = sock.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"hello"[..], server.addr), "{model}");
        let rest = server.stop_ok(model, how);
        let stats = stats_of(&rest);
        assert_eq!(stats["proto"], "udp");
        assert_eq!(stats["datagrams_in"], 1);
        assert_eq!(stats["datagrams_out"], 1);
        assert_eq!(stats["bytes_out"], 5);
        assert_eq!(stats["send_drops"], 0);
        assert_eq!(stats["accepted"], 0);
        assert_eq!(rest.lines().count(), 1, "{rest}");
    }
}

/// UDP's flags are checked like every other: one line, exit 2.
#[test]
#[cfg_attr(not(target_os = "linux"), ignore = "serves epoll: Linux only")]
fn udp_flags_are_checked_in_one_line() {
    for (args, says) in [
        (
            &["serve", "epoll", "--proto", "udp", "--rcvbuf", "0"][..],
            "--rcvbuf must be between",
        ),
        (
            &["serve", "epoll", "--proto", "udp", "--sndbuf", "2048m"],
            "--sndbuf must be between",
        ),
        (
            &["serve", "epoll", "--rcvbuf", "1m"],
            "--rcvbuf applies to --proto udp only",
        ),
        (&["serve", "epoll", "--proto", "sctp"], "not a protocol"),
        (&["models", "--proto", "udp"], "--names"),
    ] {
        let mut full = args.to_vec();
        if args[0] == "serve" {
            full.extend(["--listen", "127.0.0.1:0"]);
        }
        let out = iomodels(&full);
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        if args[0] == "serve" && !says.contains("protocol") {
            assert_eq!(err.trim().lines().count(), 1, "{err}");
        }
    }
}

/// A model without UDP would be refused by its registry row's reason; every model serves UDP
/// today, so this checks the other half: none is refused, and `models` says `tcp,udp`.
#[test]
fn models_marks_the_protocols_each_model_serves() {
    let out = iomodels(&["models"]);
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.lines().next().unwrap().contains("PROTO"), "{table}");
    for m in servers::Model::ALL {
        let line = table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(m.name()))
            .unwrap();
        let protos: Vec<&str> = m.protocols().iter().map(|p| p.name()).collect();
        assert!(line.contains(&protos.join(",")), "{line}");
        assert_eq!(
            line.contains("[no udp:"),
            m.serves(servers::Proto::Udp).is_err(),
            "{line}"
        );
    }
}

/// Two network namespaces joined by a veth pair, removed on drop (root only).
#[cfg(target_os = "linux")]
struct Wire {
    server: String,
    client: String,
}

#[cfg(target_os = "linux")]
impl Wire {
    /// Creates the pair, the server side at 10.201.0.1/24 and the client at .2; `None` (with
    /// the reason) where namespaces cannot be made: not root, or no `ip`/`tc`.
    fn new(tag: &str) -> Result<Self, String> {
        let id = std::process::id();
        let wire = Wire {
            server: format!("iomodels-{tag}-s-{id}"),
            client: format!("iomodels-{tag}-c-{id}"),
        };
        let run = |args: &[&str]| -> Result<(), String> {
            let out = Command::new(args[0])
                .args(&args[1..])
                .output()
                .map_err(|e| format!("{}: {e}", args[0]))?;
            match out.status.success() {
                true => Ok(()),
                false => Err(format!(
                    "`{}`: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
            }
        };
        let (s, c) = (wire.server.as_str(), wire.client.as_str());
        run(&["ip", "netns", "add", s])?;
        run(&["ip", "netns", "add", c])?; // `wire` is built: drop removes both from here on
        run(&[
            "ip", "link", "add", "vs", "netns", s, "type", "veth", "peer", "name", "vc", "netns", c,
        ])?;
        for (ns, dev, addr) in [(s, "vs", "10.201.0.1/24"), (c, "vc", "10.201.0.2/24")] {
            run(&["ip", "-n", ns, "addr", "add", addr, "dev", dev])?;
            run(&["ip", "-n", ns, "link", "set", dev, "up"])?;
            run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(wire)
    }

    /// A command that runs `BIN` inside namespace `ns`.
    fn exec(ns: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, BIN]);
        cmd
    }
}

#[cfg(target_os = "linux")]
impl Drop for Wire {
    fn drop(&mut self) {
        for ns in [&self.server, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Issue 17: a full send buffer drops the echo and counts it (`send_drops`) in every UDP
/// model; none waits for room while its receive buffer overflows (`blocking`'s blocking socket
/// did, until its sends carried `MSG_DONTWAIT`: it reported 0 send drops and the loss as
/// receive-buffer drops). A send buffer fills only where the kernel holds what was sent, so
/// the echoes leave through a slow `tbf` qdisc (1 MB/s) on a veth pair between two namespaces
/// (root only: CI runs as root; elsewhere this says why and checks nothing). Every datagram is
/// accounted for: the server read it or the kernel counted it dropped, and each one read was
/// echoed or counted as a send drop.
#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "network namespaces, tbf and SO_RXQ_OVFL: Linux only"
)]
fn a_full_send_buffer_drops_and_counts_echoes_in_every_udp_model() {
    #[cfg(target_os = "linux")]
    {
        let wire = match Wire::new("sndbuf") {
            Ok(wire) => wire,
            Err(why) => {
                eprintln!("skipped: cannot make network namespaces here ({why})");
                return;
            }
        };
        let tbf = Command::new("tc")
            .args([
                "-n",
                &wire.server,
                "qdisc",
                "add",
                "dev",
                "vs",
                "root",
                "tbf",
            ])
            .args(["rate", "8mbit", "burst", "16kb", "limit", "4mb"])
            .status()
            .unwrap();
        assert!(tbf.success(), "tc tbf on the server's side");
        let dir = common::scratch("cli_serve", "sndbuf");
        let models: Vec<&str> = servers::Model::available()
            .filter(|m| m.serves(servers::Proto::Udp).is_ok())
            .map(|m| m.name())
            .collect();
        for model in models {
            let server = Serve::start_with(
                Wire::exec(&wire.server),
                &[
                    model,
                    "--proto",
                    "udp",
                    "--listen",
                    "10.201.0.1:0",
                    "--sndbuf",
                    "4096",
                ],
            );
            let json = dir.join(format!("{model}.json"));
            // 10,000 datagrams/s × 1,000 B for 0.5 s: ten times what the qdisc lets out.
            let out = Wire::exec(&wire.client)
                .args(["load", "--proto", "udp", &server.addr.to_string()])
                .args(["-c", "1", "-R", "10000", "-t", "500ms", "--warmup", "0s"])
                .args(["-s", "1000", "--timeout", "300ms", "--json"])
                .arg(&json)
                .output()
                .unwrap();
            assert_eq!(
                out.status.code(),
                Some(0),
                "{model}: load: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let result: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
            let sent = result["udp"]["sent"].as_u64().unwrap();
            let stats = stats_of(&server.stop_ok(model, "INT"));
            let n = |k: &str| {
                stats[k]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{model}: {k} in {stats}"))
            };
            assert!(n("send_drops") > 0, "{model}: no send drops: {stats}");
            assert_eq!(
                n("datagrams_out") + n("send_drops"),
                n("datagrams_in"),
                "{model}: {stats}"
            );
            // The generator's one probe datagram before the run, then what it sent.
            assert_eq!(
                n("datagrams_in") + n("rcvbuf_drops"),
                sent + 1,
                "{model}: every datagram read or counted dropped: {stats}"
            );
            assert!(
                result["udp"]["lost"].as_u64().unwrap() >= n("send_drops"),
                "{model}: an echo dropped at the server cannot arrive: {} vs {stats}",
                result["udp"]
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A second UDP server on a port in use fails (exit 2), with `SO_REUSEPORT` groups too.
#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "serves epoll and uring with SO_REUSEPORT groups: Linux only"
)]
fn a_udp_port_in_use_is_a_usage_error_even_with_reuseport() {
    let first = Serve::start(&[
        "epoll",
        "--proto",
        "udp",
        "--listen",
        "127.0.0.1:0",
        "--threads",
        "2",
    ]);
    let port = first.addr.to_string();
    for model_args in [
        &["poll"][..],
        &["epoll", "--threads", "2"],
        &["uring", "--threads", "2"],
    ] {
        let mut full = vec!["serve", "--proto", "udp", "--listen", &port];
        full.extend(model_args);
        let out = iomodels(&full);
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{model_args:?}: {err}");
        assert!(err.contains("already in use"), "{err}");
    }
}
