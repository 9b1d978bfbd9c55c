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
