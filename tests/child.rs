//! The `serve` child-process helper against stand-ins that break the contract on purpose (a
//! server that never stops, one that dies before listening, one that prints garbage), and
//! against the real `serve`. Unix only for the stand-ins: they are shell scripts.

use std::time::Duration;

use iomodels::child::ServeChild;

const EXE: &str = env!("CARGO_BIN_EXE_iomodels");

#[test]
fn real_serve_listens_echoes_and_stops_with_stats() {
    use std::io::{Read, Write};
    let child = ServeChild::spawn(EXE.as_ref(), "epoll", &[], Duration::from_secs(10))
        .or_else(|_| ServeChild::spawn(EXE.as_ref(), "mio", &[], Duration::from_secs(10)))
        .expect("serve starts");
    let mut s = std::net::TcpStream::connect(child.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"hello").unwrap();
    let mut back = [0u8; 5];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"hello");
    drop(s);
    let stats = child.stop(Duration::from_secs(10)).expect("stats line");
    assert_eq!(stats.accepted, 1);
    assert_eq!(stats.bytes_in, 5);
}

#[cfg(unix)]
mod stand_ins {
    use super::*;
    use iomodels::child::ChildError;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;
    use std::time::Instant;

    /// A shell script standing in for `iomodels` (it ignores its arguments).
    fn script(name: &str, body: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("iomodels-child-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn a_server_that_ignores_stdin_eof_is_killed_after_the_timeout() {
        let p = script(
            "stubborn",
            "echo 'listening 127.0.0.1:9'; trap '' INT TERM; while :; do sleep 1; done",
        );
        let child = ServeChild::spawn(&p, "x", &[], Duration::from_secs(10)).unwrap();
        assert_eq!(child.addr().port(), 9);
        let t = Instant::now();
        let e = child.stop(Duration::from_millis(300)).unwrap_err();
        assert!(matches!(e, ChildError::DidNotStop(_)), "{e}");
        // Liveness, with slack: the kill happens, the call returns.
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_server_that_dies_before_listening_is_reported_with_its_stderr() {
        let p = script("dies", "echo 'port 7700 is in use' >&2; exit 2");
        let e = match ServeChild::spawn(&p, "x", &[], Duration::from_secs(10)) {
            Err(e) => e,
            Ok(_) => panic!("a server that exits cannot be listening"),
        };
        let msg = e.to_string();
        assert!(matches!(e, ChildError::ExitedEarly { .. }), "{msg}");
        assert!(msg.contains("port 7700 is in use"), "{msg}");
    }

    #[test]
    fn a_wrong_first_line_is_named() {
        let p = script("garbage", "echo 'hello there'; sleep 5");
        let e = ServeChild::spawn(&p, "x", &[], Duration::from_secs(10))
            .err()
            .expect("not the listening line");
        assert!(e.to_string().contains("hello there"), "{e}");
    }

    #[test]
    fn a_server_that_exits_without_stats_is_reported() {
        let p = script(
            "nostats",
            "echo 'listening 127.0.0.1:9'; read line; echo 'boom' >&2; exit 1",
        );
        let child = ServeChild::spawn(&p, "x", &[], Duration::from_secs(10)).unwrap();
        let e = child.stop(Duration::from_secs(10)).unwrap_err();
        assert!(matches!(e, ChildError::NoStats { .. }), "{e}");
    }
}
