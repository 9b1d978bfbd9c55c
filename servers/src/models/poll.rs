//! `poll(2)`: the level-triggered loop over a `pollfd` array rebuilt every turn.
//!
//! Unlike `select` it has no descriptor ceiling; like `select`, the kernel walks every entry on
//! every call, so its cost grows with connections that are idle.
#![allow(unsafe_code)] // the raw poll(2) call: the FFI edge, with its SAFETY line

use std::io;
use std::time::Duration;

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

pub(crate) fn run_udp(endpoint: Endpoint, ctx: &Ctx) -> io::Result<()> {
    level::run_udp(Poll { fds: Vec::new() }, endpoint, ctx)
}

struct Poll {
    fds: Vec<libc::pollfd>,
}

impl Backend for Poll {
    fn clear(&mut self) {
        self.fds.clear();
    }

    fn add(&mut self, fd: RawSock, read: bool, write: bool) {
        let mut events = 0;
        if read {
            events |= libc::POLLIN;
        }
        if write {
            events |= libc::POLLOUT;
        }
        self.fds.push(libc::pollfd {
            fd,
            events,
            revents: 0,
        });
    }

    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let len = self.fds.len() as libc::nfds_t;
        // SAFETY: `fds` is a live Vec of initialised pollfd entries and `len` is its length.
        match syscall!(unsafe { libc::poll(self.fds.as_mut_ptr(), len, timeout_ms(timeout)) }) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                self.fds.iter_mut().for_each(|p| p.revents = 0);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn is_ready(&self, index: usize) -> bool {
        self.fds.get(index).is_some_and(|p| p.revents != 0)
    }
}
