//! Receiving one echo datagram, and where the OS can tell it, how many datagrams the socket's
//! own receive queue has dropped since it was made (Linux `SO_RXQ_OVFL`: a counter delivered
//! as control data with every datagram received). That count is exactly the generator's own
//! receive-buffer loss, which the host-wide `RcvbufErrors` cannot tell apart from the server's.
//!
//! Deliberately only the receive call: classifying the echo is [`super::datagram`]'s.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(super) use linux::Rx;

#[cfg(not(target_os = "linux"))]
mod other;
#[cfg(not(target_os = "linux"))]
pub(super) use other::Rx;
