//! Not Linux: no `perf_event_open`, so every probe is refused with the reason, and nothing else
//! changes (a result's `explain` is null, its `warnings` say why).
//!
//! Deliberately no DTrace (macOS) or ETW (Windows) backend yet: both need privileges and a
//! different event model; this module is where one would go.

use super::{Counts, Refused};

pub fn unsupported_here() -> Option<String> {
    Some(refusal())
}

fn refusal() -> String {
    format!(
        "kernel counts per request need Linux perf_event_open; this is {}",
        std::env::consts::OS
    )
}

pub fn check_pid(_pid: u32) -> Result<(), String> {
    Ok(())
}

/// Never constructed: [`Probe::attach`] always refuses.
pub struct Probe {
    never: std::convert::Infallible,
}

impl Probe {
    pub fn attach(_pid: u32) -> Result<Self, Refused> {
        Err(Refused(refusal()))
    }

    pub fn unavailable(&self) -> Vec<String> {
        match self.never {}
    }

    pub fn start(&mut self) -> Result<(), Refused> {
        match self.never {}
    }

    pub fn stop(&mut self) -> Result<Counts, Refused> {
        match self.never {}
    }
}
