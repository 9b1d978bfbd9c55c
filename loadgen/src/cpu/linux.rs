//! A child's CPU times on Linux: `utime` and `stime` of `/proc/PID/stat` (the whole thread
//! group, threads that already exited included), through the `procfs` crate.
//!
//! Not for this process (`getrusage` in `unix.rs` does that) and not per thread.

use std::io;

use procfs::ProcError;
use procfs::process::Process;

use super::{Times, ticks};

pub(super) fn child_times(child: &std::process::Child) -> io::Result<Times> {
    let pid = i32::try_from(child.id()).map_err(|_| io::Error::other("pid out of range"))?;
    let stat = Process::new(pid).and_then(|p| p.stat()).map_err(io_error)?;
    let hz = procfs::ticks_per_second();
    Ok(Times {
        user: ticks(stat.utime, hz),
        system: ticks(stat.stime, hz),
    })
}

fn io_error(e: ProcError) -> io::Error {
    match e {
        ProcError::Io(e, _) => e,
        ProcError::NotFound(p) => io::Error::new(
            io::ErrorKind::NotFound,
            format!("process gone ({})", shown(p)),
        ),
        ProcError::PermissionDenied(p) => io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("permission denied ({})", shown(p)),
        ),
        e => io::Error::other(e.to_string()),
    }
}

fn shown(p: Option<std::path::PathBuf>) -> String {
    p.map_or_else(|| "/proc".into(), |p| p.display().to_string())
}
