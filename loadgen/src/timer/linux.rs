//! Linux: a non-blocking `CLOCK_MONOTONIC` timerfd (nix's safe wrapper), registered READABLE.
//!
//! Also the thread's timer slack ([`precise_wakeups`]).
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

    /// The deadline the timer was last armed for (it may have fired since).
    pub(crate) fn armed_for(&self) -> Option<Instant> {
        self.armed_for
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

/// Make this thread's timers (the timerfd and `epoll_wait`'s own timeout) expire when asked
/// rather than up to the default 50 µs later: timer slack 1 ns (`PR_SET_TIMERSLACK`; 0 would
/// mean "back to the default"). The kernel lets a timer fire anywhere in [deadline, deadline +
/// slack] so it can batch wake-ups; for a generator every µs of that is charged to the server.
/// Per thread, so it changes nothing for the rest of the process. False if the kernel refused.
pub(crate) fn precise_wakeups() -> bool {
    nix::sys::prctl::set_timerslack(1).is_ok()
}
