//! What fanout needs from the OS, one submodule per platform: the clock in the payload, an
//! interface's IPv4 and broadcast addresses, the sending thread's CPU, the interface's
//! transmitted-packet counter.
//!
//! Only the picking is here; each submodule says what it does on its OS. Nothing here sends or
//! receives.

use std::net::Ipv4Addr;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::{DEFAULT_INTERFACE, clock_ns, lookup_interface};

#[cfg(not(unix))]
mod portable;
#[cfg(not(unix))]
pub use portable::{DEFAULT_INTERFACE, clock_ns, lookup_interface};

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::{CPU_SCOPE, own_groups_only, sender_cpu, thread_cpu_ns, tx_packets};

#[cfg(not(target_os = "linux"))]
mod process;
#[cfg(not(target_os = "linux"))]
pub use process::{CPU_SCOPE, own_groups_only, sender_cpu, thread_cpu_ns, tx_packets};

/// An interface as fanout uses it: its name, its first IPv4 address, and where a broadcast to
/// its network goes (none when it has no broadcast address).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub addr: Ipv4Addr,
    pub broadcast: Option<Ipv4Addr>,
}
