//! Linux: `recvmsg` with room for one `SO_RXQ_OVFL` control message (nix's safe wrappers).

use std::io;
use std::io::IoSliceMut;
use std::os::fd::AsRawFd;

use mio::net::UdpSocket;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};

/// A receiver with its control-message buffer (made once, before the run).
pub(in crate::engine) struct Rx {
    cmsg: Vec<u8>,
}

impl Rx {
    pub(in crate::engine) fn new() -> Self {
        Self {
            cmsg: nix::cmsg_space!(u32),
        }
    }

    /// Ask `s` to report its drop counter with every datagram; false if the kernel refused
    /// (then [`Rx::recv`] reports no count for it).
    pub(in crate::engine) fn enable(s: &UdpSocket) -> bool {
        setsockopt(s, sockopt::RxqOvfl, &1).is_ok()
    }

    /// One datagram into `buf`: its length, and the socket's drop counter if it came along (the
    /// kernel sends it once the socket has dropped at least one datagram).
    pub(in crate::engine) fn recv(
        &mut self,
        s: &UdpSocket,
        buf: &mut [u8],
    ) -> io::Result<(usize, Option<u32>)> {
        let mut iov = [IoSliceMut::new(buf)];
        let msg = recvmsg::<()>(
            s.as_raw_fd(),
            &mut iov,
            Some(&mut self.cmsg),
            MsgFlags::MSG_DONTWAIT,
        )
        .map_err(io::Error::from)?;
        let mut drops = None;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::RxqOvfl(n) = c {
                    drops = Some(n);
                }
            }
        }
        Ok((msg.bytes, drops))
    }
}
