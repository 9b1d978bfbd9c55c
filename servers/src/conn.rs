//! The connection state machine every readiness model shares.
//!
//! One fixed buffer per connection. Read into it, write it back, and while any of it is unsent
//! read nothing more: that is backpressure, and it bounds a connection's memory to one buffer
//! whatever the client does. After the client's FIN, what is pending is sent, then the write side
//! is shut and the connection is done. Any error (reset by peer included) ends the connection.
//!
//! It knows nothing of readiness APIs: [`Conn::drive`] runs until the socket would block and
//! says what it now waits for, which level-triggered models turn into interest and
//! edge-triggered models simply wait on. Completion models do not use it (their buffers belong
//! to the kernel while an operation is in flight).
//!
//! A *short read* (fewer bytes than the buffer holds) means the socket's receive queue was empty
//! at that moment, so the state machine does not read again just to be told `WouldBlock`: that
//! call would cost a third of an echo's system calls. It is safe wherever the next arrival
//! raises a new event: level-triggered `poll`/`select` report a readable socket on every wait,
//! epoll's `EPOLLET` "can generate multiple events upon receipt of multiple chunks of data"
//! (epoll(7)), kqueue's `EV_CLEAR` fires again on new data, and oneshot re-arming reports
//! current readiness. tokio and nginx make the same choice. Two exceptions: mio's Windows
//! backend re-arms a socket only after `WouldBlock` (those connections set `drain`), and a FIN
//! that arrived with the last bytes raises no further event, so once a loop has seen the peer
//! close ([`Conn::peer_closed`]) the connection reads until end of file.

use std::io::{self, Read, Write};
use std::net::Shutdown;

use crate::stats::{LoopCounters, Shared};

/// A reads-per-drive budget, so one client that keeps both directions busy cannot starve the
/// other connections of a loop.
const READ_BUDGET: usize = 16;

/// What a nonblocking socket must offer the state machine.
pub(crate) trait Socket: Read + Write {
    /// Shuts the write direction (sends FIN).
    fn shutdown_write(&self) -> io::Result<()>;
}

impl Socket for std::net::TcpStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

impl Socket for mio::net::TcpStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

/// What a connection waits for after [`Conn::drive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Nothing pending; a read would block.
    WantRead,
    /// Bytes pending; a write would block. Reading is paused (backpressure).
    WantWrite,
    /// Still ready (budget spent): drive it again on the next loop turn without waiting.
    Yield,
    /// Finished (half-close completed, reset, or error): deregister and drop it.
    Done,
}

/// One echo connection over a nonblocking socket.
pub(crate) struct Conn<S> {
    pub(crate) sock: S,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// A read returned 0: the client sent its FIN.
    read_closed: bool,
    /// A readiness event said the peer closed (sticky: that event does not come again).
    peer_closed: bool,
    /// Read until `WouldBlock` even after a short read (pollers that re-arm only then).
    drain: bool,
}

impl<S: Socket> Conn<S> {
    pub(crate) fn new(sock: S, buffer_size: usize) -> Self {
        Self {
            sock,
            buf: vec![0; buffer_size].into_boxed_slice(),
            start: 0,
            end: 0,
            read_closed: false,
            peer_closed: false,
            drain: false,
        }
    }

    /// For pollers that re-arm a socket only after an operation returned `WouldBlock`.
    pub(crate) fn draining(mut self) -> Self {
        self.drain = true;
        self
    }

    /// An event reported the peer's FIN (or an error): from now on read until end of file,
    /// since no further event will announce it.
    pub(crate) fn peer_closed(&mut self) {
        self.peer_closed = true;
    }

    /// Bytes read but not yet written back.
    pub(crate) fn pending(&self) -> usize {
        self.end - self.start
    }

    /// Reads and writes until the socket would block, the budget is spent, or the connection
    /// ends.
    pub(crate) fn drive(&mut self, counters: &LoopCounters) -> Status {
        let mut reads = 0;
        let mut drained = false;
        loop {
            if self.start < self.end {
                match self.sock.write(&self.buf[self.start..self.end]) {
                    Ok(0) => return Status::Done,
                    Ok(n) => {
                        counters.wrote(n);
                        self.start += n;
                        if self.start == self.end {
                            self.start = 0;
                            self.end = 0;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Status::WantWrite,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return Status::Done,
                }
                continue;
            }
            if self.read_closed {
                // Everything the client sent has gone back: finish the half-close.
                let _ = self.sock.shutdown_write();
                return Status::Done;
            }
            if drained {
                // The last read emptied the receive queue; the next arrival brings an event.
                return Status::WantRead;
            }
            if reads == READ_BUDGET {
                return Status::Yield;
            }
            match self.sock.read(&mut self.buf) {
                Ok(0) => self.read_closed = true,
                Ok(n) => {
                    reads += 1;
                    counters.read(n);
                    self.end = n;
                    drained = n < self.buf.len() && !self.drain && !self.peer_closed;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Status::WantRead,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Status::Done,
            }
        }
    }

    /// Closes the connection: releases its share of the buffered-bytes gauge and counts it
    /// closed. (Models that must deregister the socket first do so before calling this.)
    pub(crate) fn close(self, counters: &LoopCounters, shared: &Shared) {
        counters.dropped(self.pending());
        shared.closed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A scripted socket: reads come from `input` (then WouldBlock or EOF); writes accept at
    /// most `write_room` bytes before WouldBlock.
    struct Script {
        input: VecDeque<u8>,
        eof: bool,
        output: Vec<u8>,
        write_room: usize,
        shut: std::cell::Cell<bool>,
        reads: usize,
    }

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            if self.input.is_empty() {
                return if self.eof {
                    Ok(0)
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                };
            }
            let n = buf.len().min(self.input.len());
            for b in buf.iter_mut().take(n) {
                *b = self.input.pop_front().unwrap();
            }
            Ok(n)
        }
    }

    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.write_room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.write_room);
            self.write_room -= n;
            self.output.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Socket for Script {
        fn shutdown_write(&self) -> io::Result<()> {
            self.shut.set(true);
            Ok(())
        }
    }

    fn script(input: &[u8], eof: bool, write_room: usize) -> Script {
        Script {
            input: input.iter().copied().collect(),
            eof,
            output: vec![],
            write_room,
            shut: Default::default(),
            reads: 0,
        }
    }

    #[test]
    fn partial_writes_pause_reading_then_resume() {
        let counters = LoopCounters::default();
        let data: Vec<u8> = (0..100u8).collect();
        let mut conn = Conn::new(script(&data, false, 10), 32);
        assert_eq!(conn.drive(&counters), Status::WantWrite);
        assert_eq!(
            conn.pending(),
            22,
            "read one buffer, wrote 10, reads paused"
        );
        assert_eq!(conn.sock.input.len(), 68, "backpressure: nothing more read");
        conn.sock.write_room = usize::MAX;
        assert_eq!(conn.drive(&counters), Status::WantRead);
        assert_eq!(conn.sock.output, data);
    }

    #[test]
    fn half_close_flushes_then_finishes() {
        let counters = LoopCounters::default();
        let mut conn = Conn::new(script(b"hello", true, 2), 16);
        assert_eq!(conn.drive(&counters), Status::WantWrite);
        assert!(!conn.sock.shut.get(), "no FIN while bytes are pending");
        conn.sock.write_room = 100;
        assert_eq!(conn.drive(&counters), Status::Done);
        assert!(
            conn.sock.shut.get(),
            "write side shut after the pending bytes"
        );
    }

    #[test]
    fn a_short_read_costs_no_extra_read() {
        let counters = LoopCounters::default();
        let mut conn = Conn::new(script(b"ping", false, usize::MAX), 16);
        assert_eq!(conn.drive(&counters), Status::WantRead);
        assert_eq!(conn.sock.output, b"ping");
        assert_eq!(conn.sock.reads, 1, "no read just to be told WouldBlock");
        // A full buffer may have more behind it: read on.
        let mut conn = Conn::new(script(&[1; 16], false, usize::MAX), 16);
        assert_eq!(conn.drive(&counters), Status::WantRead);
        assert_eq!(conn.sock.reads, 2);
    }

    #[test]
    fn after_the_peer_closed_it_reads_to_eof_and_finishes() {
        // Bytes and FIN came in one event: no later event will announce the FIN.
        let counters = LoopCounters::default();
        let mut conn = Conn::new(script(b"bye", true, usize::MAX), 16);
        conn.peer_closed();
        assert_eq!(conn.drive(&counters), Status::Done);
        assert_eq!(conn.sock.output, b"bye");
        assert!(conn.sock.shut.get());
        // Pollers that re-arm only on WouldBlock read on after a short read too.
        let mut conn = Conn::new(script(b"x", false, usize::MAX), 16).draining();
        assert_eq!(conn.drive(&counters), Status::WantRead);
        assert_eq!(conn.sock.reads, 2);
    }

    #[test]
    fn budget_yields_a_busy_connection() {
        let counters = LoopCounters::default();
        let data = vec![7u8; 64 * 40];
        let mut conn = Conn::new(script(&data, false, usize::MAX), 64);
        assert_eq!(conn.drive(&counters), Status::Yield);
        assert_eq!(conn.sock.output.len(), 64 * READ_BUDGET);
        while conn.drive(&counters) == Status::Yield {}
        assert_eq!(conn.sock.output, data);
        conn.close(&counters, &Shared::default());
    }
}
