//! io_uring-specific cases the conformance suite cannot express: a submission queue far smaller
//! than the work of one turn (submissions must queue up and go in later, never panic or be
//! lost), a stop that has to cancel hundreds of operations through that small queue, and
//! (`uring-multishot`) a provided-buffer ring far smaller than a burst of connections.
#![cfg(target_os = "linux")]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use servers::{Config, Model, Server, UringOptions};

#[test]
fn a_tiny_submission_queue_serves_300_connections_and_stops_cleanly() {
    if let Err(e) = Model::Uring.availability() {
        eprintln!("skipped: {e}");
        return;
    }
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let config = Config {
        uring: UringOptions {
            ring_entries: 2,
            ..UringOptions::default()
        },
        ..Config::default()
    };
    let server =
        Server::start(Model::Uring, "127.0.0.1:0".parse().unwrap(), &config).expect("uring starts");
    let conns: Vec<TcpStream> = (0..300).map(|_| connect(server.local_addr())).collect();
    // Every message is sent before any echo is read: one turn may complete hundreds of
    // operations and want hundreds of submissions through a queue of 2.
    for (i, mut s) in conns.iter().enumerate() {
        s.write_all(&[i as u8; 700]).unwrap();
    }
    for (i, mut s) in conns.iter().enumerate() {
        let mut got = [0u8; 700];
        s.read_exact(&mut got).unwrap();
        assert!(got.iter().all(|&b| b == i as u8), "connection {i}");
    }
    assert_eq!(server.stats().settings["ring_entries"], "2");
    // 300 receives are in flight: the stop cancels them all through the same small queue.
    let t = Instant::now();
    let stats = server.stop().expect("stops");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        t.elapsed()
    );
    assert_eq!((stats.open, stats.accepted), (0, 300));
    assert_eq!((stats.bytes_in, stats.bytes_out), (300 * 700, 300 * 700));
}

#[test]
fn a_buffer_ring_of_4_serves_a_burst_of_200_connections() {
    burst_through_a_small_ring(4);
}

#[test]
fn a_buffer_ring_of_1_serves_a_burst_of_200_connections() {
    burst_through_a_small_ring(1);
}

fn burst_through_a_small_ring(ring_buffers: u16) {
    if let Err(e) = Model::UringMultishot.availability() {
        eprintln!("skipped: {e}");
        return;
    }
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let config = Config {
        uring: UringOptions {
            ring_buffers,
            ..UringOptions::default()
        },
        ..Config::default()
    };
    let server = Server::start(
        Model::UringMultishot,
        "127.0.0.1:0".parse().unwrap(),
        &config,
    )
    .expect("uring-multishot starts");
    let conns: Vec<TcpStream> = (0..200).map(|_| connect(server.local_addr())).collect();
    // 200 receives want a buffer at once and the ring has a few: most run it dry (ENOBUFS) and
    // must be re-armed as buffers come back, or their clients wait forever.
    for round in 0..3u8 {
        for (i, mut s) in conns.iter().enumerate() {
            s.write_all(&[i as u8 ^ round; 3000]).unwrap();
        }
        for (i, mut s) in conns.iter().enumerate() {
            let mut got = [0u8; 3000];
            s.read_exact(&mut got).unwrap();
            assert!(got.iter().all(|&b| b == i as u8 ^ round), "connection {i}");
        }
    }
    let stats = server.stats();
    assert_eq!(stats.settings["ring_buffers"], ring_buffers.to_string());
    assert_eq!(
        stats.settings["defer_taskrun"], "true",
        "this kernel takes it"
    );
    assert!(
        stats.peak_buffered_bytes <= ring_buffers as u64 * config.buffer_size as u64,
        "held more than the ring: {stats:?}"
    );
    // Every client leaves with a FIN, whose end of file also needs a free buffer to arrive.
    drop(conns);
    assert!(wait_until(Duration::from_secs(10), || server.stats().open == 0));
    let stats = server.stop().expect("stops");
    assert_eq!((stats.open, stats.accepted), (0, 200));
    assert_eq!(stats.bytes_in, stats.bytes_out);
}

#[test]
fn a_client_that_never_reads_holds_one_buffer_and_its_loop_keeps_serving() {
    if let Err(e) = Model::UringMultishot.availability() {
        eprintln!("skipped: {e}");
        return;
    }
    // A ring of 8: before the multishot receive was limited, a client writing without reading
    // took all 8 (48 of 256 in the 64 MiB case) and every other connection of its loop waited
    // for a buffer that never came back.
    let config = Config {
        uring: UringOptions {
            ring_buffers: 8,
            ..UringOptions::default()
        },
        ..Config::default()
    };
    let bound = Model::UringMultishot.held_per_connection(&config);
    if bound != config.buffer_size {
        eprintln!("skipped: this kernel has no multishot receive limit (Linux 6.17+)");
        return;
    }
    let server = Server::start(
        Model::UringMultishot,
        "127.0.0.1:0".parse().unwrap(),
        &config,
    )
    .expect("uring-multishot starts");
    let others: Vec<TcpStream> = (0..4).map(|_| connect(server.local_addr())).collect();
    let stuck = connect(server.local_addr());
    let mut w = stuck.try_clone().unwrap();
    w.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![7u8; 64 << 10];
        // Writes until every buffer between the two ends is full (the write times out).
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && w.write_all(&chunk).is_ok() {}
    });
    // The stuck connection's echo fills the client's receive buffer, then the server's send
    // buffer; wait until the server stops taking its bytes.
    let mut last = u64::MAX;
    assert!(wait_until(Duration::from_secs(20), || {
        std::thread::sleep(Duration::from_millis(300));
        let now = server.stats().bytes_in;
        std::mem::replace(&mut last, now) == now
    }));
    // The other connections of the same loop still echo, several buffers' worth each.
    for round in 0..3u8 {
        for (i, mut s) in others.iter().enumerate() {
            s.write_all(&[i as u8 ^ round; 40_000]).unwrap();
        }
        for (i, mut s) in others.iter().enumerate() {
            let mut got = vec![0u8; 40_000];
            s.read_exact(&mut got).unwrap();
            assert!(got.iter().all(|&b| b == i as u8 ^ round), "connection {i}");
        }
    }
    let stats = server.stats();
    let held: u64 = stats.settings["peak_connection_buffers"].parse().unwrap();
    assert!(
        held >= 1,
        "the stuck connection held its pending echo: {stats:?}"
    );
    assert!(held < 8, "one connection drained the ring: {stats:?}");
    // In bytes, one buffer per connection at most (the conformance suite's non-reading case
    // checks the single-connection bound exactly).
    assert!(
        stats.peak_buffered_bytes <= 5 * bound as u64,
        "held more than a buffer per connection: {stats:?}"
    );
    drop(stuck);
    writer.join().unwrap();
    let stats = server.stop().expect("stops");
    assert_eq!(stats.open, 0);
}

/// Starts `model` with `uring` options on port 0, or says why it is skipped.
fn start_with(model: Model, uring: UringOptions) -> Option<Server> {
    if let Err(e) = model.availability() {
        eprintln!("skipped: {e}");
        return None;
    }
    let config = Config {
        uring,
        ..Config::default()
    };
    Some(Server::start(model, "127.0.0.1:0".parse().unwrap(), &config).expect("starts"))
}

/// 20 connections echo 3 × 20 kB each, concurrently; one more half-closes and gets its EOF.
fn echo_some(server: &Server) {
    let conns: Vec<TcpStream> = (0..20).map(|_| connect(server.local_addr())).collect();
    let (mut rng, seed) = Rng::from_time();
    for _ in 0..3 {
        let data: Vec<Vec<u8>> = conns.iter().map(|_| rng.bytes(20_000)).collect();
        std::thread::scope(|s| {
            for (c, d) in conns.iter().zip(&data) {
                s.spawn(move || {
                    let got = echo_concurrently(c, d).unwrap();
                    assert_same(&got, d, &format!("20 kB echo (seed {seed})"));
                });
            }
        });
    }
    let last = connect(server.local_addr());
    let got = echo_then_half_close(&last, b"bye").unwrap();
    assert_eq!(got, b"bye");
}

#[test]
fn each_io_uring_option_echoes_and_is_recorded() {
    let sqpoll = UringOptions {
        sqpoll_idle_ms: Some(50),
        ..UringOptions::default()
    };
    let fixed = UringOptions {
        fixed_files: true,
        ..UringOptions::default()
    };
    let no_defer = UringOptions {
        defer_taskrun: false,
        ..UringOptions::default()
    };
    // A model, its options, and the settings they must be recorded as.
    type Case<'a> = (Model, UringOptions, &'a [(&'a str, &'a str)]);
    let cases: &[Case] = &[
        (Model::Uring, sqpoll, &[("sqpoll", "50 ms idle")]),
        (
            Model::UringMultishot,
            sqpoll,
            &[
                ("sqpoll", "50 ms idle"),
                ("defer_taskrun", "false (--sqpoll: the kernel refuses both)"),
            ],
        ),
        (
            Model::UringMultishot,
            fixed,
            &[("defer_taskrun", "true"), ("sqpoll", "off")],
        ),
        (
            Model::UringMultishot,
            no_defer,
            &[
                ("defer_taskrun", "false (--no-defer-taskrun)"),
                ("fixed_files", "off"),
            ],
        ),
        (
            Model::UringMultishot,
            UringOptions {
                fixed_files: true,
                ..sqpoll
            },
            &[("sqpoll", "50 ms idle")],
        ),
    ];
    for (model, options, want) in cases {
        let Some(server) = start_with(*model, *options) else {
            return;
        };
        echo_some(&server);
        let stats = server.stop().expect("stops");
        let what = format!("{model} {options:?}: {stats:?}");
        for (key, value) in *want {
            assert_eq!(
                stats.settings.get(*key).map(String::as_str),
                Some(*value),
                "{what}"
            );
        }
        if options.fixed_files {
            assert!(stats.settings["fixed_files"].ends_with(" slots"), "{what}");
        }
        assert_eq!((stats.open, stats.accepted), (0, 21), "{what}");
        assert_eq!(stats.bytes_in, stats.bytes_out, "{what}");
        assert_eq!(stats.bytes_in, 20 * 3 * 20_000 + 3, "{what}");
    }
}

/// Connections whose echoes cannot be sent (their clients never read) all reset at once: the
/// sends in flight fail, every connection is closed, every ring buffer comes back, and the
/// server goes on serving.
fn close_while_sending(model: Model, uring: UringOptions) {
    let Some(server) = start_with(model, uring) else {
        return;
    };
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let conns: Vec<TcpStream> = (0..100).map(|_| connect(server.local_addr())).collect();
    std::thread::scope(|s| {
        for c in &conns {
            s.spawn(move || {
                let mut c = c;
                c.set_write_timeout(Some(Duration::from_millis(300)))
                    .unwrap();
                let chunk = vec![5u8; 64 << 10];
                // Until both directions' buffers are full: the server's send is then pending.
                for _ in 0..200 {
                    if c.write_all(&chunk).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let before = server.stats();
    assert!(
        before.bytes_in > before.bytes_out,
        "echoes pending: {before:?}"
    );
    for c in conns {
        // SO_LINGER 0: the close sends a reset, so the pending sends fail at once.
        socket2::SockRef::from(&c)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }
    assert!(
        wait_until(Duration::from_secs(10), || server.stats().open == 0),
        "connections left open: {:?}",
        server.stats()
    );
    echo_some(&server);
    let stats = server.stop().expect("stops");
    assert_eq!(stats.open, 0);
    if model == Model::UringMultishot {
        assert_eq!(stats.settings["buffers_out_at_stop"], "0", "{stats:?}");
    }
}

#[test]
fn uring_closes_100_connections_with_sends_in_flight() {
    close_while_sending(Model::Uring, UringOptions::default());
}

#[test]
fn uring_multishot_closes_100_connections_with_sends_in_flight() {
    close_while_sending(Model::UringMultishot, UringOptions::default());
    let fixed = UringOptions {
        fixed_files: true,
        ..UringOptions::default()
    };
    close_while_sending(Model::UringMultishot, fixed);
}

/// Stop with receives, stuck sends and idle connections in flight: after it, nothing is held
/// (`connections_at_stop`, `buffers_out_at_stop`) and every client sees its connection end,
/// which also shows the descriptors (and fixed-file slots) were released.
fn stop_with_operations_pending(model: Model, uring: UringOptions) {
    let Some(server) = start_with(model, uring) else {
        return;
    };
    let idle: Vec<TcpStream> = (0..50).map(|_| connect(server.local_addr())).collect();
    let stuck: Vec<TcpStream> = (0..4).map(|_| connect(server.local_addr())).collect();
    for mut s in &stuck {
        s.set_write_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let chunk = vec![9u8; 64 << 10];
        while s.write_all(&chunk).is_ok() {}
    }
    assert!(wait_until(Duration::from_secs(10), || server
        .stats()
        .accepted
        == 54));
    let t = Instant::now();
    let stats = server.stop().expect("stops");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        t.elapsed()
    );
    assert_eq!(stats.open, 0, "{stats:?}");
    if model == Model::UringMultishot {
        assert_eq!(stats.settings["connections_at_stop"], "0", "{stats:?}");
        assert_eq!(stats.settings["buffers_out_at_stop"], "0", "{stats:?}");
    }
    for c in idle.iter().chain(&stuck) {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut c = c;
        // The stuck ones first drain what was echoed, then see the end (EOF or reset); a
        // read timeout means the server still holds the connection.
        let ended = loop {
            match c.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(e) => {
                    break !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    );
                }
            }
        };
        assert!(ended, "a client still connected after the stop");
    }
}

#[test]
fn uring_stops_with_operations_pending_and_leaves_nothing() {
    stop_with_operations_pending(Model::Uring, UringOptions::default());
}

#[test]
fn uring_multishot_stops_with_operations_pending_and_leaves_nothing() {
    stop_with_operations_pending(Model::UringMultishot, UringOptions::default());
    let fixed = UringOptions {
        fixed_files: true,
        ..UringOptions::default()
    };
    stop_with_operations_pending(Model::UringMultishot, fixed);
}
