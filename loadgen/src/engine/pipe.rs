//! One connection's FIFO of request bytes (queued, sent, awaiting their echo) and the requests
//! they belong to, with each request's timestamps.
//!
//! It deliberately does no I/O and reads no clock: the worker generates the payloads, writes,
//! reads and takes every timestamp (the timestamp contract is in [`mod@super::worker`]); the pipe
//! only records which requests a write covered and whether what came back is the echo.

use std::collections::VecDeque;
use std::time::Instant;

/// Bytes of one connection that are queued, sent or awaiting their echo, as one FIFO.
///
/// `buf[head..]` holds stream bytes from offset `echoed` to `queued`; `sent` is how far writes
/// got. An echo must equal the oldest unechoed bytes, which is how pipelined responses are
/// checked byte for byte without per-request buffers.
#[derive(Default)]
pub(super) struct Pipe {
    pub(super) buf: Vec<u8>,
    pub(super) head: usize,
    pub(super) echoed: u64,
    pub(super) sent: u64,
    pub(super) queued: u64,
    pub(super) reqs: VecDeque<Req>,
    /// Index in `reqs` of the first request whose first byte has not been written yet.
    pub(super) unstamped: usize,
}

pub(super) struct Req {
    pub(super) first: u64,
    pub(super) end: u64,
    /// Open loop: the schedule's time for this request.
    pub(super) intended: Option<Instant>,
    /// Timestamp taken right before the write (or, connect per request, the connect) that
    /// sent its first byte.
    pub(super) sent: Option<Instant>,
    /// When it was handed to its connection: the request timeout counts from here.
    pub(super) dispatched: Instant,
    pub(super) measured: bool,
    /// Open loop: it found every connection busy and waited in the thread's queue.
    pub(super) queued: bool,
}

impl Pipe {
    pub(super) fn clear(&mut self) {
        self.buf.clear();
        self.head = 0;
        self.reqs.clear();
        self.unstamped = 0;
        self.echoed = 0;
        self.sent = 0;
        self.queued = 0;
    }

    pub(super) fn unsent(&self) -> bool {
        self.sent < self.queued
    }

    /// Mark every request whose first byte is now written with `t`, the pre-write timestamp.
    pub(super) fn stamp(&mut self, t: Instant) {
        while let Some(r) = self.reqs.get_mut(self.unstamped) {
            if r.first >= self.sent {
                break;
            }
            r.sent = Some(t);
            self.unstamped += 1;
        }
    }

    /// Account for `data` just read; false if it is not the echo of what was sent.
    pub(super) fn take_echo(&mut self, data: &[u8], verify: bool) -> bool {
        let n = data.len();
        if self.echoed + n as u64 > self.sent {
            return false;
        }
        if verify && self.buf[self.head..self.head + n] != *data {
            return false;
        }
        self.head += n;
        self.echoed += n as u64;
        if self.head == self.buf.len() {
            self.buf.clear();
            self.head = 0;
        } else if self.head >= 64 * 1024 && self.head * 2 >= self.buf.len() {
            // Compact rarely and only when most of the buffer is dead, so the memmove is
            // amortised over at least as many bytes as it moves.
            self.buf.drain(..self.head);
            self.head = 0;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_stamps_and_verifies() {
        let mut p = Pipe::default();
        let t = Instant::now();
        for _ in 0..2 {
            let at = p.buf.len();
            p.buf.extend_from_slice(&[1, 2, 3, 4]);
            p.reqs.push_back(Req {
                first: at as u64,
                end: at as u64 + 4,
                intended: None,
                sent: None,
                dispatched: t,
                measured: true,
                queued: false,
            });
            p.queued += 4;
        }
        p.sent = 5; // a partial write: request 2's first byte went out
        p.stamp(t);
        assert_eq!(p.unstamped, 2);
        assert!(p.take_echo(&[1, 2, 3], true));
        assert!(!p.take_echo(&[4, 1, 9], true), "more than was sent");
        assert!(!p.take_echo(&[9], true), "flipped byte");
        assert!(p.take_echo(&[4, 1], true));
        assert_eq!(p.echoed, 5);
    }
}
