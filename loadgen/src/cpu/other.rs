//! Unix systems other than Linux and macOS: a child's CPU times are not implemented (the BSDs
//! would need `kvm_getprocs` or `sysctl KERN_PROC`); the error says so instead of guessing.

use std::io;

use super::Times;

pub(super) fn child_times(_child: &std::process::Child) -> io::Result<Times> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "a child's CPU time is not implemented on {}",
            std::env::consts::OS
        ),
    ))
}
