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

    /// One datagram into `buf`: its length, and the socket's drop counter if it came along. The
    /// kernel attaches the count as it was when this datagram was queued, and only once it is
    /// above 0: drops after the last datagram received are never reported.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_s_own_drops_come_with_the_next_datagram() {
        // A receiver with the smallest receive buffer, sent far more than it holds while it
        // does not read: the kernel drops the rest. Each datagram carries the count as it was
        // when that datagram was queued (none while it is 0), so the queued ones say nothing
        // and the next one queued after the drops says how many.
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket2::SockRef::from(&rx).set_recv_buffer_size(1).unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        rx.connect(tx.local_addr().unwrap()).unwrap();
        rx.set_nonblocking(true).unwrap();
        let rx = UdpSocket::from_std(rx);
        assert!(Rx::enable(&rx));
        let d = [7u8; 512];
        for _ in 0..500 {
            let _ = tx.send(&d);
        }
        let mut r = Rx::new();
        let mut buf = [0u8; 1024];
        let mut queued = 0;
        while let Ok((n, drops)) = r.recv(&rx, &mut buf) {
            assert_eq!((n, drops), (512, None), "queued before any drop");
            queued += 1;
        }
        assert!(queued > 0 && queued < 500, "{queued}");
        tx.send(&d).unwrap();
        let (_, drops) = r.recv(&rx, &mut buf).unwrap();
        // Everything sent before was either queued (and read) or dropped.
        assert_eq!(drops, Some(500 - queued), "{queued} queued");
    }
}
