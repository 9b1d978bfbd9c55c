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
