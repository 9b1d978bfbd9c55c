//! Elsewhere: a plain `recv`; no per-socket drop counter.

use std::io;

use mio::net::UdpSocket;

/// A plain receiver.
pub(in crate::engine) struct Rx;

impl Rx {
    pub(in crate::engine) fn new() -> Self {
        Self
    }

    /// No such option here: always false.
    pub(in crate::engine) fn enable(_s: &UdpSocket) -> bool {
        false
    }

    /// One datagram into `buf`; never a drop count.
    pub(in crate::engine) fn recv(
        &mut self,
        s: &UdpSocket,
        buf: &mut [u8],
    ) -> io::Result<(usize, Option<u32>)> {
        s.recv(buf).map(|n| (n, None))
    }
}
