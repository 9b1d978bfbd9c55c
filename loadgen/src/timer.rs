//! A precise one-shot wake-up for open-loop sends, registered in the worker's `mio` poll.
//!
//! `mio`'s poll timeout has millisecond granularity (rounded up), far too coarse for a schedule
//! with sub-millisecond gaps. Where the OS has a precise timer that fits in a poll set (Linux:
//! `timerfd`), the worker arms it for the next intended send and sleeps; elsewhere
//! [`Timer::new`] returns `None` and the engine spins through the last millisecond instead
//! (correct, but it costs CPU). This module deliberately knows nothing about schedules.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::{Timer, precise_wakeups};

#[cfg(not(target_os = "linux"))]
mod none;
#[cfg(not(target_os = "linux"))]
pub(crate) use none::{Timer, precise_wakeups};
