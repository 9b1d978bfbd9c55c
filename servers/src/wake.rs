//! A portable wake-up for loops that wait in `select`/`poll`: a loopback UDP datagram.
//!
//! A self-pipe would do on Unix, but Winsock's `select` and `WSAPoll` only take sockets, and one
//! mechanism everywhere is one mechanism to test. It is not used where the API brings its own
//! (epoll's eventfd, mio's `Waker`, `polling`'s `notify`, tokio's cancellation).

use std::io;
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::Arc;

/// The receiving end a loop polls, plus the sending end wakers share.
pub(crate) struct WakeSocket {
    rx: UdpSocket,
    tx: Arc<UdpSocket>,
}

impl WakeSocket {
    pub(crate) fn new() -> io::Result<Self> {
        let rx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        rx.set_nonblocking(true)?;
        let tx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        tx.connect(rx.local_addr()?)?;
        tx.set_nonblocking(true)?;
        Ok(Self {
            rx,
            tx: Arc::new(tx),
        })
    }

    /// A wake-up callable from any thread. A full socket buffer means a wake-up is already
    /// pending, so a failed send is fine.
    pub(crate) fn waker(&self) -> impl Fn() + Send + Sync + 'static {
        let tx = self.tx.clone();
        move || {
            let _ = tx.send(&[1]);
        }
    }

    /// Consumes every pending wake-up.
    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 16];
        while self.rx.recv(&mut buf).is_ok() {}
    }

    /// The socket to poll for readability.
    pub(crate) fn socket(&self) -> &UdpSocket {
        &self.rx
    }
}
