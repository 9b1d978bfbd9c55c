//! A child's CPU times on macOS: `pti_total_user`/`pti_total_system` of `proc_pidinfo`
//! (`PROC_PIDTASKINFO`, whole task, all threads), through the `libproc` crate.
//!
//! Those fields count Mach absolute-time ticks, not nanoseconds: 1 ns each on Intel, 1/24 MHz
//! on Apple Silicon, also for an x86_64 build under Rosetta, where `mach_timebase_info` says
//! 1/1 and would be wrong. So they are converted with the hardware timebase frequency
//! (`sysctl hw.tbfrequency`), which is the true rate in both cases. The one `unsafe` call
//! (`sysctlbyname`) lives here; nothing else does.
#![allow(unsafe_code)]

use std::io;
use std::sync::OnceLock;

use libproc::proc_pid::pidinfo;
use libproc::task_info::TaskInfo;
use nix::libc;

use super::{Times, ticks};

pub(super) fn child_times(child: &std::process::Child) -> io::Result<Times> {
    let pid = i32::try_from(child.id()).map_err(|_| io::Error::other("pid out of range"))?;
    let info = pidinfo::<TaskInfo>(pid, 0).map_err(io::Error::other)?;
    let hz = timebase_hz();
    Ok(Times {
        user: ticks(info.pti_total_user, hz),
        system: ticks(info.pti_total_system, hz),
    })
}

/// Mach ticks per second; 1 GHz (ticks are nanoseconds, as on Intel) if the sysctl fails.
fn timebase_hz() -> u64 {
    static HZ: OnceLock<u64> = OnceLock::new();
    *HZ.get_or_init(|| {
        let mut hz: u64 = 0;
        let mut len = std::mem::size_of::<u64>();
        // SAFETY: the name is a NUL-terminated literal; `hz` and `len` are live locals, `len`
        // holds the size of `hz`, and no new value is written (null, 0).
        let rc = unsafe {
            libc::sysctlbyname(
                c"hw.tbfrequency".as_ptr(),
                (&raw mut hz).cast(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        if rc == 0 && len == std::mem::size_of::<u64>() && hz > 0 {
            hz
        } else {
            1_000_000_000
        }
    })
}
