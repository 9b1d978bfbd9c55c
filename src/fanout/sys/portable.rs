//! Systems without `getifaddrs` and `CLOCK_MONOTONIC` (Windows): the wall clock for the
//! payload's timestamp, and the loopback interface only.
//!
//! The wall clock is shared by every process on the host, which one-way latency needs; it can
//! be stepped (a step during a run shows as a latency outlier, clamped at 0). Interfaces other
//! than loopback are refused rather than guessed.

use std::net::Ipv4Addr;
use std::time::{SystemTime, UNIX_EPOCH};

use super::Iface;

/// The name fanout gives the loopback interface here.
pub const DEFAULT_INTERFACE: &str = "lo";

/// Nanoseconds since the Unix epoch (0 before it).
pub fn clock_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// `lo` (127.0.0.1, no broadcast address); any other name is refused.
///
/// # Errors
/// One line naming the cause and the fix.
pub fn lookup_interface(name: &str) -> Result<Iface, String> {
    if name == DEFAULT_INTERFACE {
        return Ok(Iface {
            name: name.to_owned(),
            addr: Ipv4Addr::LOCALHOST,
            broadcast: None,
        });
    }
    Err(format!(
        "fanout on this OS knows only the loopback interface ({DEFAULT_INTERFACE}); interface lookup needs getifaddrs (Unix)"
    ))
}
