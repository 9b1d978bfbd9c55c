//! How a run issues requests and carries them: the two independent axes of a load mode.
//!
//! [`Pacing`] says *when* a request is issued (closed loop: when an answer frees its slot; open
//! loop: at its intended time from the schedule), [`Carrier`] *how* it travels (a persistent
//! connection, or a connection of its own). They combine freely (`--rate` with
//! `--connect-per-request` is an open-loop connect-per-request run), so a mode is the pair
//! rather than one enum of every combination. A new way of waiting (busy polling) is a field next
//! to these, matched where it matters instead of a boolean every branch has to remember. UDP
//! datagrams are not a third [`Carrier`]: a datagram socket has no connection life (connect,
//! fail, reconnect) for these branches to share, so it has a worker of its own
//! ([`super::udp`]) over the same schedule, timer, intervals and report.
//!
//! Deliberately only the classification: the state each mode needs (the open loop's owed
//! arrivals and timer) lives in the worker.

use crate::workload::Workload;

/// When requests are issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pacing {
    /// A connection's next request goes as soon as an answer frees a slot (up to `depth`).
    Closed,
    /// Requests go at their intended times; latency counts from those.
    Open,
}

/// How a request travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Carrier {
    /// Connections opened before the run and kept (reconnected after a failure).
    Persistent,
    /// A connection per request: connect, one request, one answer, close.
    PerRequest,
}

/// A run's mode: its pacing and its carrier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Mode {
    pub(super) pacing: Pacing,
    pub(super) carrier: Carrier,
}

impl Mode {
    pub(super) fn of(w: &Workload) -> Self {
        let o = w.options();
        Self {
            pacing: if o.rate.is_some() {
                Pacing::Open
            } else {
                Pacing::Closed
            },
            carrier: if o.connect_per_request {
                Carrier::PerRequest
            } else {
                Carrier::Persistent
            },
        }
    }

    /// Requests one connection (slot) carries at once.
    pub(super) fn slots(self, depth: usize) -> usize {
        match self.carrier {
            Carrier::Persistent => depth,
            Carrier::PerRequest => 1,
        }
    }
}
