//! Counters a server keeps while it runs, and the [`ServerStats`] it hands back.
//!
//! Byte counters live per loop (one writer each, on their own cache line), so a loop never
//! contends with another on its hot path; connection counters are server-wide atomics touched
//! only on accept and close. This is not a metrics system: no histograms, no rates.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::config::Config;
use crate::datagram::DropReader;
use crate::models::Proto;

/// What a server did, returned when it stops (and available live from
/// [`Server::stats`](crate::Server::stats)). Keys are part of the `serve` stdout contract.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStats {
    /// The model's registry name.
    pub model: String,
    /// Connections accepted.
    pub accepted: u64,
    /// Connections open now (0 after a clean stop).
    pub open: u64,
    /// Most connections open at once.
    pub peak_open: u64,
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes written back.
    pub bytes_out: u64,
    /// Most bytes held read-but-unsent at once: exact for one loop; with several loops, the sum
    /// of each loop's peak (an upper bound). Bounded by open connections × `buffer_size`
    /// (for `uring-multishot` on a kernel before Linux 6.17, by each loop's provided-buffer
    /// ring instead: see `Model::held_per_connection`).
    pub peak_buffered_bytes: u64,
    /// Accept calls that failed (peer reset before accept, `EMFILE`, a descriptor `select`
    /// cannot hold); never fatal.
    pub accept_errors: u64,
    /// Loops (or runtime workers).
    pub threads: usize,
    /// Per-connection buffer.
    pub buffer_size: usize,
    /// Listen backlog.
    pub backlog: i32,
    /// How loops share the port.
    pub accept_mode: String,
    /// The transport served: `tcp` or `udp`. For UDP, `accepted`, `open`, `peak_open`,
    /// `peak_buffered_bytes` and `accept_errors` stay 0 (no connections, and a datagram is
    /// sent back as soon as it is read, or dropped).
    #[serde(default = "tcp")]
    pub proto: String,
    /// UDP: datagrams received (zero-length ones included).
    #[serde(default)]
    pub datagrams_in: u64,
    /// UDP: datagrams echoed (the send succeeded).
    #[serde(default)]
    pub datagrams_out: u64,
    /// UDP: echoes dropped because the send failed (`EAGAIN`/`ENOBUFS`: a full send buffer;
    /// or any other send error). Never retried: UDP has no backpressure to apply.
    #[serde(default)]
    pub send_drops: u64,
    /// UDP: datagrams the kernel dropped before the server could read them (its sockets'
    /// receive buffers were full), over the run, summed over the server's sockets. On Linux
    /// exact per socket: `SO_RXQ_OVFL` with each datagram, and `/proc/net/udp`'s `drops` when
    /// the stats are taken (drops after a socket's last datagram);
    /// `null` where the OS does not count them (`settings.rcvbuf_drops_source` says which).
    #[serde(default)]
    pub rcvbuf_drops: Option<u64>,
    /// The model's own settings (ring sizes, limits), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, String>,
}

fn tcp() -> String {
    "tcp".into()
}

/// Server-wide counters, touched on accept and close only.
#[derive(Default)]
pub(crate) struct Shared {
    accepted: AtomicU64,
    open: AtomicU64,
    peak_open: AtomicU64,
    accept_errors: AtomicU64,
    loops: Mutex<Vec<Arc<LoopCounters>>>,
    /// UDP: one kernel drop count per socket (clones of one socket share theirs): the highest
    /// `SO_RXQ_OVFL` seen, and a reader of the count now where the OS has one.
    socket_drops: Mutex<Vec<(Arc<AtomicU64>, Option<DropReader>)>>,
    settings: Mutex<BTreeMap<String, String>>,
}

impl Shared {
    pub(crate) fn opened(&self) {
        self.accepted.fetch_add(1, Relaxed);
        let now = self.open.fetch_add(1, Relaxed) + 1;
        self.peak_open.fetch_max(now, Relaxed);
    }

    pub(crate) fn closed(&self) {
        self.open.fetch_sub(1, Relaxed);
    }

    pub(crate) fn accept_error(&self) {
        self.accept_errors.fetch_add(1, Relaxed);
    }

    /// Counters for one more loop (or one group of threads that share them).
    pub(crate) fn new_loop(&self) -> Arc<LoopCounters> {
        let counters = Arc::new(LoopCounters::default());
        self.loops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(counters.clone());
        counters
    }

    /// A kernel drop count for one more UDP socket (highest value seen, see
    /// [`ServerStats::rcvbuf_drops`]).
    pub(crate) fn new_socket_drops(&self, reader: Option<DropReader>) -> Arc<AtomicU64> {
        let drops = Arc::new(AtomicU64::new(0));
        self.socket_drops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((drops.clone(), reader));
        drops
    }

    /// Records a model-specific setting for the stats.
    pub(crate) fn setting(&self, key: &str, value: impl ToString) {
        self.settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), value.to_string());
    }

    /// Records a model-specific count as a setting, keeping the largest value any loop reported
    /// (a peak, such as the most ring buffers one connection held).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))] // io_uring's only, today
    pub(crate) fn setting_max(&self, key: &str, value: u64) {
        let mut settings = self.settings.lock().unwrap_or_else(|e| e.into_inner());
        let entry = settings
            .entry(key.to_string())
            .or_insert_with(|| "0".into());
        if entry.parse::<u64>().is_ok_and(|old| value > old) {
            *entry = value.to_string();
        }
    }

    pub(crate) fn snapshot(&self, model: &str, config: &Config) -> ServerStats {
        let loops = self.loops.lock().unwrap_or_else(|e| e.into_inner());
        let sum =
            |f: fn(&LoopCounters) -> &AtomicU64| loops.iter().map(|l| f(l).load(Relaxed)).sum();
        ServerStats {
            model: model.to_string(),
            accepted: self.accepted.load(Relaxed),
            open: self.open.load(Relaxed),
            peak_open: self.peak_open.load(Relaxed),
            bytes_in: sum(|l| &l.bytes_in),
            bytes_out: sum(|l| &l.bytes_out),
            peak_buffered_bytes: sum(|l| &l.peak_buffered),
            accept_errors: self.accept_errors.load(Relaxed),
            threads: config.threads,
            buffer_size: config.buffer_size,
            backlog: config.backlog,
            accept_mode: config.accept.name().to_string(),
            proto: config.proto.name().to_string(),
            datagrams_in: sum(|l| &l.datagrams_in),
            datagrams_out: sum(|l| &l.datagrams_out),
            send_drops: sum(|l| &l.send_drops),
            rcvbuf_drops: (config.proto == Proto::Udp && crate::datagram::COUNTS_DROPS).then(
                || {
                    self.socket_drops
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .iter()
                        .map(|(seen, now)| {
                            let now = now.as_ref().and_then(|read| read()).unwrap_or(0);
                            seen.load(Relaxed).max(now)
                        })
                        .sum()
                },
            ),
            settings: {
                let mut settings = self
                    .settings
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                // The server's wait strategy, for every model: results record both sides'.
                settings.insert("busy_poll".to_owned(), config.busy_poll.to_string());
                settings
            },
        }
    }
}

/// One loop's byte counters, padded to their own cache lines so loops never share one.
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct LoopCounters {
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    buffered: AtomicU64,
    peak_buffered: AtomicU64,
    datagrams_in: AtomicU64,
    datagrams_out: AtomicU64,
    send_drops: AtomicU64,
}

impl LoopCounters {
    /// `n` bytes read and now held until written.
    #[inline]
    pub(crate) fn read(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Relaxed);
        let now = self.buffered.fetch_add(n as u64, Relaxed) + n as u64;
        self.peak_buffered.fetch_max(now, Relaxed);
    }

    /// `n` held bytes written back.
    #[inline]
    pub(crate) fn wrote(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Relaxed);
        self.buffered.fetch_sub(n as u64, Relaxed);
    }

    /// Bytes held read-but-unsent now (tests of the state machines).
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> u64 {
        self.buffered.load(Relaxed)
    }

    /// UDP: one datagram of `n` bytes received (held only until its echo is sent or dropped,
    /// so it does not count as buffered).
    #[inline]
    pub(crate) fn datagram_in(&self, n: usize) {
        self.datagrams_in.fetch_add(1, Relaxed);
        self.bytes_in.fetch_add(n as u64, Relaxed);
    }

    /// UDP: one echo of `n` bytes sent.
    #[inline]
    pub(crate) fn datagram_out(&self, n: usize) {
        self.datagrams_out.fetch_add(1, Relaxed);
        self.bytes_out.fetch_add(n as u64, Relaxed);
    }

    /// UDP: one echo dropped (the send failed).
    #[inline]
    pub(crate) fn send_drop(&self) {
        self.send_drops.fetch_add(1, Relaxed);
    }

    /// Datagrams received so far (tests).
    #[cfg(test)]
    pub(crate) fn datagrams_in_now(&self) -> u64 {
        self.datagrams_in.load(Relaxed)
    }

    /// Echoes dropped so far (tests).
    #[cfg(test)]
    pub(crate) fn send_drops_now(&self) -> u64 {
        self.send_drops.load(Relaxed)
    }

    /// A connection closed while still holding `n` bytes (reset by peer, stop).
    pub(crate) fn dropped(&self, n: usize) {
        if n > 0 {
            self.buffered.fetch_sub(n as u64, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_across_loops() {
        let shared = Shared::default();
        let a = shared.new_loop();
        let b = shared.new_loop();
        shared.opened();
        shared.opened();
        shared.closed();
        a.read(10);
        a.wrote(4);
        a.dropped(6);
        b.read(3);
        b.wrote(3);
        shared.accept_error();
        let s = shared.snapshot("x", &Config::default());
        assert_eq!((s.accepted, s.open, s.peak_open), (2, 1, 2));
        assert_eq!(
            (s.bytes_in, s.bytes_out, s.peak_buffered_bytes),
            (13, 7, 13)
        );
        assert_eq!(s.accept_errors, 1);
        assert_eq!(a.buffered.load(Relaxed), 0);
    }
}
