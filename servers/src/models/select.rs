//! `select(2)`: the oldest readiness API, with its hard ceiling.
//!
//! An `fd_set` is a bitmap of `FD_SETSIZE` (1024) bits: a descriptor at or above that cannot be
//! watched, and `FD_SET` on it would write past the set. This model refuses such a connection
//! (closes it, counts it in `accept_errors`, logs why) instead of corrupting memory; every other
//! connection goes on being served.
#![allow(unsafe_code)] // raw select(2) and fd_set macros: the FFI edge, each with its SAFETY line

use std::io;
use std::mem::MaybeUninit;
use std::time::Duration;

use crate::ctx::Ctx;
use crate::datagram::Endpoint;
use crate::listen::Incoming;
use crate::sys::RawSock;

use super::level::{self, Backend};

/// Descriptors at or above this cannot be in an `fd_set` ([`Model::descriptor_limit`]).
///
/// [`Model::descriptor_limit`]: crate::Model::descriptor_limit
pub(crate) const DESCRIPTOR_LIMIT: Option<usize> = Some(libc::FD_SETSIZE);

pub(crate) fn availability() -> Result<(), String> {
    Ok(())
}

pub(crate) fn run(incoming: Incoming, ctx: &Ctx) -> io::Result<()> {
    level::run(Select::new(), incoming, ctx)
}

pub(crate) fn run_udp(endpoint: Endpoint, ctx: &Ctx) -> io::Result<()> {
    level::run_udp(Select::new(), endpoint, ctx)
}

struct Select {
    entries: Vec<(RawSock, bool, bool)>,
    read: libc::fd_set,
    write: libc::fd_set,
    max: RawSock,
}

fn empty_set() -> libc::fd_set {
    let mut set = MaybeUninit::<libc::fd_set>::uninit();
    // SAFETY: FD_ZERO initialises the whole set it is given.
    unsafe {
        libc::FD_ZERO(set.as_mut_ptr());
        set.assume_init()
    }
}

impl Select {
    fn new() -> Self {
        Self {
            entries: Vec::new(),
            read: empty_set(),
            write: empty_set(),
            max: -1,
        }
    }
}

impl Backend for Select {
    fn admits(&self, fd: RawSock, _watched: usize) -> Result<(), String> {
        if fd >= 0 && (fd as usize) < libc::FD_SETSIZE {
            Ok(())
        } else {
            Err(format!(
                "select: descriptor {fd} is at or above FD_SETSIZE ({}); connection refused \
                 (use poll or epoll for this many connections)",
                libc::FD_SETSIZE
            ))
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.max = -1;
    }

    fn add(&mut self, fd: RawSock, read: bool, write: bool) {
        debug_assert!(
            self.admits(fd, 0).is_ok(),
            "only admitted descriptors are added"
        );
        self.entries.push((fd, read, write));
        self.max = self.max.max(fd);
    }

    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.read = empty_set();
        self.write = empty_set();
        for &(fd, r, w) in &self.entries {
            // SAFETY: every added fd passed `admits`, so it is in 0..FD_SETSIZE and FD_SET
            // stays inside the set.
            unsafe {
                if r {
                    libc::FD_SET(fd, &mut self.read);
                }
                if w {
                    libc::FD_SET(fd, &mut self.write);
                }
            }
        }
        let mut tv = timeout.map(|d| {
            // Round up to whole microseconds so a tiny timeout does not become a spin.
            let us = d.as_nanos().div_ceil(1000).min(i64::MAX as u128 / 2) as i64;
            libc::timeval {
                tv_sec: (us / 1_000_000) as _,
                tv_usec: (us % 1_000_000) as _,
            }
        });
        let tv_ptr = tv
            .as_mut()
            .map_or(std::ptr::null_mut(), |t| t as *mut libc::timeval);
        // SAFETY: the sets are initialised and owned by self; `tv_ptr` is null or points at `tv`, which
        // outlives the call; nfds is one more than the highest descriptor in the sets.
        let res = syscall!(unsafe {
            libc::select(
                self.max + 1,
                &mut self.read,
                &mut self.write,
                std::ptr::null_mut(),
                tv_ptr,
            )
        });
        match res {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                self.read = empty_set();
                self.write = empty_set();
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn is_ready(&self, index: usize) -> bool {
        let Some(&(fd, _, _)) = self.entries.get(index) else {
            return false;
        };
        // SAFETY: fd was admitted (in 0..FD_SETSIZE) and the sets are initialised.
        unsafe { libc::FD_ISSET(fd, &self.read) || libc::FD_ISSET(fd, &self.write) }
    }
}
