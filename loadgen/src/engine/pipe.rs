//! One connection's FIFO of request bytes (queued, sent, awaiting their echo) and the requests
//! they belong to, with each request's timestamps.
//!
//! It deliberately does no I/O and reads no clock: the worker generates the payloads, writes,
//! reads and takes every timestamp (the timestamp contract is in [`mod@super::worker`]); the pipe
//! only records which requests a write covered and whether what came back is the echo. Its
//! offsets are private and change only through its methods, so the invariants below hold in one
//! place.

use std::collections::VecDeque;
use std::time::Instant;

/// Bytes of one connection that are queued, sent or awaiting their echo, as one FIFO.
///
/// `buf[head..]` holds stream bytes from offset `echoed` to `queued`; `sent` is how far writes
/// got. An echo must equal the oldest unechoed bytes, which is how pipelined responses are
/// checked byte for byte without per-request buffers.
#[derive(Default)]
pub(super) struct Pipe {
    buf: Vec<u8>,
    head: usize,
    echoed: u64,
    sent: u64,
    queued: u64,
    reqs: VecDeque<Req>,
    /// Index in `reqs` of the first request whose first byte has not been written yet.
    unstamped: usize,
}

pub(super) struct Req {
    /// Stream offsets of its first byte and one past its last.
    first: u64,
    end: u64,
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
    /// An empty FIFO with room for `bytes` bytes of `requests` requests.
    pub(super) fn with_capacity(bytes: usize, requests: usize) -> Self {
        Self {
            buf: Vec::with_capacity(bytes),
            reqs: VecDeque::with_capacity(requests),
            ..Self::default()
        }
    }

    /// Append a request of `len` bytes and return where its payload goes; the caller fills it
    /// (before any timestamp: payloads are generated before a request's clock starts).
    pub(super) fn push(
        &mut self,
        len: usize,
        intended: Option<Instant>,
        dispatched: Instant,
        measured: bool,
        queued: bool,
    ) -> &mut [u8] {
        self.reqs.push_back(Req {
            first: self.queued,
            end: self.queued + len as u64,
            intended,
            sent: None,
            dispatched,
            measured,
            queued,
        });
        self.queued += len as u64;
        let at = self.buf.len();
        self.buf.resize(at + len, 0);
        &mut self.buf[at..]
    }

    /// Requests queued, in flight or awaiting their echo.
    pub(super) fn requests(&self) -> usize {
        self.reqs.len()
    }

    /// How many of them are measured (not warm-up).
    pub(super) fn measured(&self) -> usize {
        self.reqs.iter().filter(|r| r.measured).count()
    }

    /// The oldest request: the one the timeout watches.
    pub(super) fn oldest(&self) -> Option<&Req> {
        self.reqs.front()
    }

    /// The bytes not written yet, in order.
    pub(super) fn unsent_bytes(&self) -> &[u8] {
        &self.buf[self.head + (self.sent - self.echoed) as usize..]
    }

    /// `n` more bytes were written by a write that `t` was taken right before: every request
    /// whose first byte it carried starts at `t`.
    pub(super) fn wrote(&mut self, n: usize, t: Instant) {
        self.sent += n as u64;
        self.stamp(t);
    }

    /// Connect per request: every request starts at the connect, taken at `t`; the write that
    /// follows does not restamp them.
    pub(super) fn stamp_all(&mut self, t: Instant) {
        for r in self.reqs.iter_mut() {
            r.sent = Some(t);
        }
        self.unstamped = self.reqs.len();
    }

    /// Every byte written has come back.
    pub(super) fn caught_up(&self) -> bool {
        self.echoed == self.sent
    }

    /// The oldest request, if its whole echo is in.
    pub(super) fn pop_completed(&mut self) -> Option<Req> {
        if self.reqs.front()?.end > self.echoed {
            return None;
        }
        self.unstamped = self.unstamped.saturating_sub(1);
        self.reqs.pop_front()
    }

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
    fn stamp(&mut self, t: Instant) {
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
            p.push(4, None, t, true, false)
                .copy_from_slice(&[1, 2, 3, 4]);
        }
        assert_eq!(p.unsent_bytes(), [1, 2, 3, 4, 1, 2, 3, 4]);
        p.wrote(5, t); // a partial write: request 2's first byte went out
        assert_eq!(p.unstamped, 2);
        assert!(p.reqs.iter().all(|r| r.sent == Some(t)));
        assert_eq!(p.unsent_bytes(), [2, 3, 4]);
        assert!(p.take_echo(&[1, 2, 3], true));
        assert!(p.pop_completed().is_none(), "request 1 is not all back");
        assert!(!p.take_echo(&[4, 1, 9], true), "more than was sent");
        assert!(!p.take_echo(&[9], true), "flipped byte");
        assert!(p.take_echo(&[4, 1], true));
        assert!(p.caught_up());
        assert!(p.pop_completed().is_some());
        assert!(p.pop_completed().is_none(), "request 2 is not all back");
        assert_eq!((p.requests(), p.unstamped), (1, 1));
    }
}
