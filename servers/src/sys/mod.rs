//! The thin layer over the OS that the shared code needs: which accept errors mean "out of
//! descriptors", listener socket options, and timeout conversion.
//!
//! `cfg` lives here, at module boundaries, so nothing above it branches on the platform. Model
//! code that is itself platform-specific (epoll, select, poll) makes its raw calls through the
//! `syscall!` macro from the Unix half, which only converts the result: the `unsafe` block and
//! its `// SAFETY:` line stay at each call site. Nothing here needs `unsafe` today; a raw call
//! that shared code needs would go here, under `#![allow(unsafe_code)]` in its own file.

use std::time::Duration;

#[cfg(unix)]
#[macro_use]
mod unix;
#[cfg(unix)]
pub(crate) use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::*;

/// A poll timeout in whole milliseconds, rounded *up* and clamped, so a 0.4 ms wait does not
/// become 0 ms and spin; `None` waits forever (-1).
pub(crate) fn timeout_ms(timeout: Option<Duration>) -> i32 {
    match timeout {
        None => -1,
        Some(d) => {
            let ms = d.as_nanos().div_ceil(1_000_000);
            ms.min(i32::MAX as u128) as i32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_round_up_and_clamp() {
        assert_eq!(timeout_ms(None), -1);
        assert_eq!(timeout_ms(Some(Duration::ZERO)), 0);
        assert_eq!(timeout_ms(Some(Duration::from_micros(400))), 1);
        assert_eq!(timeout_ms(Some(Duration::from_millis(7))), 7);
        assert_eq!(timeout_ms(Some(Duration::from_secs(u64::MAX))), i32::MAX);
    }
}
