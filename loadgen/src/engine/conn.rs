//! One load connection as the worker keeps it: its socket, where it is in its life (down,
//! connecting, open, or free for a connect-per-request slot), its failure epoch and backoff, and
//! the byte FIFO of its requests.
//!
//! Deliberately only the state: the I/O on it and every timestamp are the worker's.

use std::time::{Duration, Instant};

use mio::net::TcpStream;

use super::pipe::Pipe;

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
    /// Disconnected; reconnect (or, connect per request, become free) at `retry_at`.
    Down {
        retry_at: Instant,
    },
    /// A nonblocking connect is under way since `since`.
    Connecting {
        since: Instant,
    },
    Open,
    /// Connect per request only: no socket, ready for the next request.
    Free,
}

/// One connection (or connect-per-request slot) of a worker.
pub(super) struct Conn {
    pub(super) stream: Option<TcpStream>,
    pub(super) state: State,
    /// Bumped on every failure so stale free-slot entries are recognised.
    pub(super) epoch: u32,
    pub(super) backoff: Duration,
    pub(super) pipe: Pipe,
}

/// The first reconnect delay; it doubles on every failure up to [`BACKOFF_MAX`].
pub(super) const BACKOFF_MIN: Duration = Duration::from_millis(10);
pub(super) const BACKOFF_MAX: Duration = Duration::from_secs(1);

impl Conn {
    /// A connection not connected yet, whose FIFO already holds room for `bytes` bytes of
    /// `requests` requests (so its first requests allocate nothing).
    pub(super) fn new(state: State, bytes: usize, requests: usize) -> Self {
        Self {
            stream: None,
            state,
            epoch: 0,
            backoff: BACKOFF_MIN,
            pipe: Pipe::with_capacity(bytes, requests),
        }
    }
}
