//! Windows: the socket facts the shared code needs.

use std::io;

const WSAENOBUFS: i32 = 10055;
const WSAEMFILE: i32 = 10024;

/// Accept failed because the process or the system ran out of sockets or buffer space.
pub(crate) fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(WSAEMFILE | WSAENOBUFS))
}

/// Socket options every listener gets before `bind`. Nothing: on Windows `SO_REUSEADDR` lets a
/// second socket steal a bound port, which is the opposite of what a server wants.
pub(crate) fn prepare_listener(_socket: &socket2::Socket) -> io::Result<()> {
    Ok(())
}

/// Windows has no balancing `SO_REUSEPORT`; [`Config::validate`](crate::Config::validate)
/// refuses the mode before this could be reached.
pub(crate) fn set_reuse_port(_socket: &socket2::Socket) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// A socket's OS handle, as the level-triggered backends take it.
pub(crate) type RawSock = std::os::windows::io::RawSocket;

/// The OS handle of a socket.
pub(crate) fn raw<T: std::os::windows::io::AsRawSocket>(socket: &T) -> RawSock {
    socket.as_raw_socket()
}
