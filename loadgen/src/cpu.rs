//! Process CPU time (user and system, all threads) from the OS, for `client_cpu`.
//!
//! Platform code lives in one submodule per OS family; this file only picks one. It is
//! deliberately process-wide, not per thread: the figure users compare is what the whole
//! generator cost.

use std::time::Duration;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as sys;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as sys;

/// User and system CPU time consumed by this process so far.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Times {
    pub user: Duration,
    pub system: Duration,
}

pub(crate) fn process_times() -> std::io::Result<Times> {
    sys::process_times()
}
