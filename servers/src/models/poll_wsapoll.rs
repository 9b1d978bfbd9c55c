//! `WSAPoll`: the `poll` model on Windows, the level-triggered loop over a `WSAPOLLFD` array
//! rebuilt every turn.
//!
//! Winsock's `poll(2)`: no ceiling on how many sockets, and like `poll` elsewhere every entry is
//! walked on every call. Two Winsock rules differ from Unix and are kept here: an entry may
//! only ask for `POLLRDNORM`/`POLLWRNORM` (other request bits make the call fail with
//! `WSAEINVAL`), and a hang-up or error is reported in `revents` even when not asked for.
#![allow(unsafe_code)] // the raw WSAPoll call: the FFI edge, with its SAFETY line

use std::io;
use std::time::Duration;

use windows_sys::Win32::Networking::WinSock::{
    POLLRDNORM, POLLWRNORM, SOCKET, SOCKET_ERROR, WSAEINTR, WSAGetLastError, WSAPOLLFD, WSAPoll,
};

use crate::ctx::Ctx;
use crate::datagram::Endpoint;
use crate::listen::Incoming;
use crate::sys::{RawSock, timeout_ms};

use super::level::{self, Backend};

pub(crate) fn availability() -> Result<(), String> {
    Ok(())
}

pub(crate) fn run(incoming: Incoming, ctx: &Ctx) -> io::Result<()> {
    level::run(Poll { fds: Vec::new() }, incoming, ctx)
}

/// UDP echo (`--proto udp`) over the same backend: the wake-up and the datagram socket.
pub(crate) fn run_udp(endpoint: Endpoint, ctx: &Ctx) -> io::Result<()> {
    level::run_udp(Poll { fds: Vec::new() }, endpoint, ctx)
}

struct Poll {
    fds: Vec<WSAPOLLFD>,
}

impl Backend for Poll {
    fn clear(&mut self) {
        self.fds.clear();
    }

    fn add(&mut self, fd: RawSock, read: bool, write: bool) {
        let mut events = 0;
        if read {
            events |= POLLRDNORM;
        }
        if write {
            events |= POLLWRNORM;
        }
        self.fds.push(WSAPOLLFD {
            fd: fd as SOCKET,
            events,
            revents: 0,
        });
    }

    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let len = self.fds.len() as u32;
        // SAFETY: `fds` is a live Vec of initialised WSAPOLLFD entries and `len` its length.
        let res = unsafe { WSAPoll(self.fds.as_mut_ptr(), len, timeout_ms(timeout)) };
        if res == SOCKET_ERROR {
            // SAFETY: reads this thread's last Winsock error; no memory involved.
            let code = unsafe { WSAGetLastError() };
            self.fds.iter_mut().for_each(|p| p.revents = 0);
            return if code == WSAEINTR {
                Ok(())
            } else {
                Err(io::Error::from_raw_os_error(code))
            };
        }
        Ok(())
    }

    fn is_ready(&self, index: usize) -> bool {
        self.fds.get(index).is_some_and(|p| p.revents != 0)
    }
}
