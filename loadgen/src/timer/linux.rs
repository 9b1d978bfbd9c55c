//! Linux: a non-blocking `CLOCK_MONOTONIC` timerfd (nix's safe wrapper), registered READABLE.
//!
//! Edge-triggered use without reads: re-arming with `timerfd_settime` resets the expiry count,
//! so each new deadline produces a fresh readiness edge. Not a general timer wheel.

use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

pub(crate) struct Timer {
    fd: TimerFd,
    armed_for: Option<Instant>,
}

impl Timer {
    /// `None` if the kernel refuses a timerfd; the caller then falls back to spinning.
    pub(crate) fn new(registry: &Registry, token: Token) -> Option<Self> {
        let fd = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .ok()?;
        registry
            .register(
                &mut SourceFd(&fd.as_fd().as_raw_fd()),
                token,
                Interest::READABLE,
            )
            .ok()?;
        Some(Self {
            fd,
            armed_for: None,
        })
    }

    /// Wake the poll at `at` (`after` from now). Re-arms only when the deadline moved, so a
    /// loop turn that changes nothing costs no syscall. False if arming failed.
    pub(crate) fn arm(&mut self, at: Instant, after: Duration) -> bool {
        if self.armed_for == Some(at) {
            return true;
        }
        // A zero expiry would disarm the timer: wait at least 1 µs.
        let spec = TimeSpec::from_duration(after.max(Duration::from_micros(1)));
        let ok = self
            .fd
            .set(Expiration::OneShot(spec), TimerSetTimeFlags::empty())
            .is_ok();
        self.armed_for = ok.then_some(at);
        ok
    }
}
