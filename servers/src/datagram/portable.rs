//! Everywhere but Linux: a plain `recvfrom`; the OS offers no per-socket drop count
//! (`SO_RXQ_OVFL` is Linux's), so `rcvbuf_drops` is `null` in the stats. The echo's `sendto`
//! carries `MSG_DONTWAIT` on macOS; Winsock has no per-call flag for it, so there the one
//! blocking socket (the `blocking` model's) waits for room in a full send buffer.
#![allow(unsafe_code)] // one slice cast for socket2's recv_from: the FFI edge, with its SAFETY line

use std::io;
use std::mem::MaybeUninit;

use socket2::SockRef;

use super::{DropReader, Received};

/// The flag that makes one send fail instead of waiting for room (none in Winsock).
#[cfg(unix)]
const DONTWAIT: std::ffi::c_int = libc::MSG_DONTWAIT;
#[cfg(not(unix))]
const DONTWAIT: std::ffi::c_int = 0;

/// The kernel's drops are not counted here.
pub(crate) const COUNTS_DROPS: bool = false;
/// What `SO_RCVBUF`/`SO_SNDBUF` read back is what was granted.
pub(crate) const GRANT_SHARE: usize = 1;
/// Said in the stats' settings.
pub(crate) const DROPS_SOURCE: &str = "none (SO_RXQ_OVFL is Linux only)";

/// No per-socket count to read.
pub(crate) fn drop_reader(_socket: &std::net::UdpSocket) -> io::Result<Option<DropReader>> {
    Ok(None)
}

/// Nothing to enable.
pub(crate) fn enable_drop_count(_sock: &SockRef<'_>) -> io::Result<()> {
    Ok(())
}

/// One `recvfrom`.
pub(crate) fn recv(sock: SockRef<'_>, buf: &mut [u8]) -> io::Result<Received> {
    // SAFETY: MaybeUninit<u8> has u8's layout, and recv_from only writes initialised bytes
    // into an already initialised buffer.
    let uninit = unsafe {
        std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<MaybeUninit<u8>>(), buf.len())
    };
    let (len, from) = sock.recv_from(uninit)?;
    let from = from
        .as_socket()
        .ok_or_else(|| io::Error::other("recvfrom: the sender is not an IP address"))?;
    Ok(Received {
        len,
        from,
        drops: None,
    })
}

/// One `sendto`, not waiting for room where the OS allows it (see the module doc).
pub(crate) fn send_to(
    sock: SockRef<'_>,
    buf: &[u8],
    to: std::net::SocketAddr,
) -> io::Result<usize> {
    sock.send_to_with_flags(buf, &socket2::SockAddr::from(to), DONTWAIT)
}
