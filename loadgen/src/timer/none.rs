//! Platforms without a pollable precise timer: no timer, the engine spins the last millisecond.
//!
//! Deliberately empty rather than emulated with a helper thread: a thread waking the poll
//! would add its own wake-up jitter to every send.

use std::time::{Duration, Instant};

use mio::{Registry, Token};

pub(crate) enum Timer {}

impl Timer {
    pub(crate) fn new(_registry: &Registry, _token: Token) -> Option<Self> {
        None
    }

    pub(crate) fn armed_for(&self) -> Option<Instant> {
        match *self {}
    }

    pub(crate) fn arm(&mut self, _at: Instant, _after: Duration) -> bool {
        match *self {}
    }
}

/// No timer slack to tighten here: the engine spins through the last millisecond instead.
pub(crate) fn precise_wakeups() -> bool {
    true
}
