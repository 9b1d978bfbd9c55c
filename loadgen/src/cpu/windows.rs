//! Windows process CPU times through `GetProcessTimes`.
//!
//! The one place in `loadgen` that needs `unsafe`: there is no safe std or crate API for a
//! process's user/kernel split on Windows. Nothing else belongs here.
#![allow(unsafe_code)]

use std::time::Duration;

use windows_sys::Win32::Foundation::FILETIME;
use windows_sys::Win32::System::Threading::{GetCurrentProcess, GetProcessTimes};

use super::Times;

fn dur(f: FILETIME) -> Duration {
    // FILETIME counts 100 ns ticks.
    let ticks = (u64::from(f.dwHighDateTime) << 32) | u64::from(f.dwLowDateTime);
    Duration::from_nanos(ticks.saturating_mul(100))
}

pub(super) fn process_times() -> std::io::Result<Times> {
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut creation, mut exit, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: GetCurrentProcess returns a pseudo-handle that needs no closing, and all four
    // pointers are to live, writable FILETIMEs owned by this frame.
    let ok = unsafe {
        GetProcessTimes(
            GetCurrentProcess(),
            &mut creation,
            &mut exit,
            &mut kernel,
            &mut user,
        )
    };
    if ok == 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Times {
        user: dur(user),
        system: dur(kernel),
    })
}
