//! Winsock `select`: the same level-triggered loop as `select(2)`, on Windows.
//!
//! Winsock's `fd_set` is not a bitmap: it is a count followed by an array of socket handles,
//! and `FD_SETSIZE` (64 by default) is how many sockets it can hold, whatever their handle
//! values. This module uses its own `#[repr(C)]` set of [`SET_SIZE`] (1,024) entries, the
//! layout Winsock documents for a program that defines a larger `FD_SETSIZE`, so one loop
//! serves the same hundreds of connections as `select` elsewhere. A loop that already watches
//! `SET_SIZE` sockets refuses the next connection (closes it, counts it in `accept_errors`,
//! logs why) instead of writing past the array. It is not `WSAPoll` (that is `poll` here).
#![allow(unsafe_code)] // the raw Winsock select call: the FFI edge, with its SAFETY line

use std::io;
use std::time::Duration;

use windows_sys::Win32::Networking::WinSock::{
    FD_SET, SOCKET, SOCKET_ERROR, TIMEVAL, WSAEINTR, WSAGetLastError, select,
};

use crate::ctx::Ctx;
use crate::datagram::Endpoint;
use crate::listen::Incoming;
use crate::sys::RawSock;

use super::level::{self, Backend};

/// How many sockets one loop's set holds: the wake-up socket, the listener and the connections.
const SET_SIZE: usize = 1024;

/// The model's ceiling ([`Model::descriptor_limit`]): on Windows a count of sockets per loop,
/// not a highest descriptor number. The shared figure is conservative here (the loop holds
/// two sockets of its own, the count leaves room for the eight a Unix process holds).
///
/// [`Model::descriptor_limit`]: crate::Model::descriptor_limit
pub(crate) const DESCRIPTOR_LIMIT: Option<usize> = Some(SET_SIZE);

pub(crate) fn availability() -> Result<(), String> {
    Ok(())
}

pub(crate) fn run(incoming: Incoming, ctx: &Ctx) -> io::Result<()> {
    level::run(Select::new(), incoming, ctx)
}

/// UDP echo (`--proto udp`) over the same backend: the wake-up and the datagram socket.
pub(crate) fn run_udp(endpoint: Endpoint, ctx: &Ctx) -> io::Result<()> {
    level::run_udp(Select::new(), endpoint, ctx)
}

/// Winsock's `fd_set` layout with room for [`SET_SIZE`] sockets: `select` reads `fd_count`
/// and that many handles, so a longer array is what a larger `FD_SETSIZE` compiles to in C.
#[repr(C)]
struct BigSet {
    fd_count: u32,
    fd_array: [SOCKET; SET_SIZE],
}

impl BigSet {
    fn new() -> Box<Self> {
        Box::new(Self {
            fd_count: 0,
            fd_array: [0; SET_SIZE],
        })
    }

    fn push(&mut self, s: SOCKET) {
        // `admits` keeps the entries (one set per socket: read or write) within SET_SIZE.
        self.fd_array[self.fd_count as usize] = s;
        self.fd_count += 1;
    }

    fn contains(&self, s: SOCKET) -> bool {
        self.fd_array[..self.fd_count as usize].contains(&s)
    }

    fn as_ptr(&mut self) -> *mut FD_SET {
        (self as *mut Self).cast()
    }
}

struct Select {
    entries: Vec<(RawSock, bool, bool)>,
    read: Box<BigSet>,
    write: Box<BigSet>,
    /// Sockets ready last wait, for `is_ready` without scanning a set per entry.
    ready: Vec<bool>,
}

impl Select {
    fn new() -> Self {
        Self {
            entries: Vec::new(),
            read: BigSet::new(),
            write: BigSet::new(),
            ready: Vec::new(),
        }
    }
}

impl Backend for Select {
    fn admits(&self, _fd: RawSock, watched: usize) -> Result<(), String> {
        if watched < SET_SIZE {
            Ok(())
        } else {
            Err(format!(
                "select: this loop already watches {watched} sockets, as many as its fd_set \
                 holds ({SET_SIZE}); connection refused (use poll or iocp for this many \
                 connections, or more --threads)"
            ))
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
    }

    fn add(&mut self, fd: RawSock, read: bool, write: bool) {
        self.entries.push((fd, read, write));
    }

    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.read.fd_count = 0;
        self.write.fd_count = 0;
        // A socket is watched for reading or for writing, so each set holds at most
        // `entries.len()` handles; past SET_SIZE they would not fit.
        let fits = self.entries.len() <= SET_SIZE;
        for &(fd, r, w) in self.entries.iter().take(SET_SIZE) {
            if r {
                self.read.push(fd as SOCKET);
            }
            if w {
                self.write.push(fd as SOCKET);
            }
        }
        debug_assert!(fits, "admits keeps a loop within its fd_set");
        let tv = timeout.map(|d| {
            // Round up to whole microseconds so a tiny timeout does not become a spin.
            let us = d
                .as_nanos()
                .div_ceil(1000)
                .min(i32::MAX as u128 * 1_000_000);
            TIMEVAL {
                tv_sec: (us / 1_000_000).min(i32::MAX as u128) as i32,
                tv_usec: (us % 1_000_000) as i32,
            }
        });
        let tv_ptr = tv
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const TIMEVAL);
        // SAFETY: both sets are live, initialised `BigSet`s whose `fd_count` is within their
        // array, which is the layout Winsock reads and writes; `tv_ptr` is null or points at
        // `tv`, which outlives the call. nfds is ignored by Winsock.
        let res = unsafe {
            select(
                0,
                self.read.as_ptr(),
                self.write.as_ptr(),
                std::ptr::null_mut(),
                tv_ptr,
            )
        };
        self.ready.clear();
        if res == SOCKET_ERROR {
            // SAFETY: reads this thread's last Winsock error; no memory involved.
            let code = unsafe { WSAGetLastError() };
            if code == WSAEINTR {
                self.ready.resize(self.entries.len(), false);
                return Ok(());
            }
            return Err(io::Error::from_raw_os_error(code));
        }
        let (read, write) = (&self.read, &self.write);
        self.ready.extend(self.entries.iter().map(|&(fd, r, w)| {
            (r && read.contains(fd as SOCKET)) || (w && write.contains(fd as SOCKET))
        }));
        Ok(())
    }

    fn is_ready(&self, index: usize) -> bool {
        self.ready.get(index).copied().unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};
    use std::os::windows::io::AsRawSocket;

    use super::*;

    #[test]
    fn a_loop_refuses_past_its_set_whatever_the_handle_values() {
        let select = Select::new();
        assert!(select.admits(usize::MAX as RawSock, SET_SIZE - 1).is_ok());
        let refused = select.admits(4, SET_SIZE).unwrap_err();
        assert!(refused.contains("1024"), "{refused}");
    }

    #[test]
    fn the_big_set_is_what_winsock_reads() {
        // More sockets than Winsock's default FD_SETSIZE (64), in one wait.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let clients: Vec<TcpStream> = (0..100)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        let served: Vec<TcpStream> = (0..100).map(|_| listener.accept().unwrap().0).collect();
        let mut select = Select::new();
        for s in &served {
            select.add(s.as_raw_socket(), true, false);
        }
        use std::io::Write;
        (&clients[99]).write_all(b"x").unwrap();
        select.wait(Some(Duration::from_secs(5))).unwrap();
        assert!(select.is_ready(99), "the 100th socket's byte is seen");
        assert!(!select.is_ready(0));
    }
}
