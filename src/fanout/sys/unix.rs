//! Unix: `CLOCK_MONOTONIC` for the payload's timestamp and `getifaddrs` for interfaces (nix).
//!
//! CLOCK_MONOTONIC is one clock for every process on the host (and every network namespace:
//! they do not virtualise time), is never stepped by NTP, and is what `Instant` reads on Linux,
//! but `Instant`'s value is opaque, so it is read here as nanoseconds. Not a clock for two
//! hosts: fanout's sender and receivers always share one.

use std::net::Ipv4Addr;

use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;
use nix::time::{ClockId, clock_gettime};

use super::Iface;

/// The loopback interface's usual name here.
#[cfg(target_os = "macos")]
pub const DEFAULT_INTERFACE: &str = "lo0";
/// The loopback interface's usual name here.
#[cfg(not(target_os = "macos"))]
pub const DEFAULT_INTERFACE: &str = "lo";

/// CLOCK_MONOTONIC in nanoseconds (0 if the clock cannot be read, which POSIX rules out).
pub fn clock_ns() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|t| (t.tv_sec() as u64).wrapping_mul(1_000_000_000) + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// `name`'s first IPv4 address and broadcast address. A loopback interface has no broadcast
/// address of its own (no `IFF_BROADCAST`); its network's directed broadcast (127.255.255.255
/// for 127.0.0.1/8) is used, which Linux's local routing table delivers on `lo`.
///
/// # Errors
/// One line: no such interface, or no IPv4 address on it.
pub fn lookup_interface(name: &str) -> Result<Iface, String> {
    let addrs = getifaddrs().map_err(|e| format!("cannot list interfaces: {e}"))?;
    let mut seen = false;
    for a in addrs.filter(|a| a.interface_name == name) {
        seen = true;
        let v4 = |s: &Option<nix::sys::socket::SockaddrStorage>| {
            s.as_ref().and_then(|s| s.as_sockaddr_in()).map(|s| s.ip())
        };
        let Some(addr) = v4(&a.address) else { continue };
        let broadcast = if a.flags.contains(InterfaceFlags::IFF_BROADCAST) {
            v4(&a.broadcast)
        } else if a.flags.contains(InterfaceFlags::IFF_LOOPBACK) {
            v4(&a.netmask).map(|m| Ipv4Addr::from(addr.to_bits() | !m.to_bits()))
        } else {
            None
        };
        return Ok(Iface {
            name: name.to_owned(),
            addr,
            broadcast,
        });
    }
    Err(if seen {
        format!("interface {name} has no IPv4 address; give one with an IPv4 address")
    } else {
        format!("no interface {name:?} here; name one that exists (`ip -br addr`)")
    })
}
