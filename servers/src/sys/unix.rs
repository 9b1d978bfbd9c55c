//! Unix: raw-call helper and the few socket facts the shared code needs.

use std::io;

/// Turns a raw call's `-1` into `io::Error::last_os_error()`. The call itself, `unsafe` block
/// included, is written at the call site, where its `// SAFETY:` comment says why it is sound:
/// `syscall!(unsafe { libc::close(fd) })`.
macro_rules! syscall {
    ($call:expr) => {{
        let res = $call;
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

/// Accept failed because the process or the system ran out of descriptors.
pub(crate) fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Socket options every listener gets before `bind`: `SO_REUSEADDR`, so a restarted server can
/// bind while old connections sit in `TIME_WAIT` (it does not let two listeners share a port).
pub(crate) fn prepare_listener(socket: &socket2::Socket) -> io::Result<()> {
    socket.set_reuse_address(true)
}

/// Joins the listener to a `SO_REUSEPORT` group.
pub(crate) fn set_reuse_port(socket: &socket2::Socket) -> io::Result<()> {
    socket.set_reuse_port(true)
}

/// A socket's OS handle, as the level-triggered backends take it.
pub(crate) type RawSock = std::os::fd::RawFd;

/// The OS handle of a socket.
pub(crate) fn raw<T: std::os::fd::AsRawFd>(socket: &T) -> RawSock {
    socket.as_raw_fd()
}
