//! Helpers the binary's integration tests share: run `iomodels`, a plain echo server, a scratch
//! folder. Deliberately independent of the `servers` crate, so a CLI test does not depend on
//! the thing another suite tests.
#![allow(dead_code)] // each test file uses its own subset

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::mpsc;

/// Run the built `iomodels` with `args` to completion.
pub fn iomodels(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_iomodels"))
        .args(args)
        .output()
        .expect("run iomodels")
}

/// Run the built `iomodels` with `args`, assert it exited 0 (showing its stderr if not), and
/// return its stdout.
pub fn iomodels_ok(args: &[&str]) -> String {
    let o = iomodels(args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "iomodels {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A plain echo server that lives as long as the test process; threads end when clients close.
pub fn echo_server() -> String {
    echo_server_watched().0
}

/// [`echo_server`], plus a receiver that gets one message per accepted connection.
pub fn echo_server_watched() -> (String, mpsc::Receiver<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let _ = tx.send(());
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
    (addr, rx)
}

/// A fresh, empty folder for one test, named after the test file (`group`) and `name`.
pub fn scratch(group: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("{group}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
