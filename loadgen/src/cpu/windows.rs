//! Windows process CPU times through `GetProcessTimes`, for this process and for a child
//! (through the handle `std::process::Child` keeps open).
//!
//! The one place in `loadgen` that needs `unsafe` on Windows: there is no safe std or crate API
//! for a process's user/kernel split there. Nothing else belongs here.
#![allow(unsafe_code)]

use std::os::windows::io::AsRawHandle;
use std::time::Duration;

use windows_sys::Win32::Foundation::{FILETIME, HANDLE};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, GetProcessTimes};

use super::Times;

fn dur(f: FILETIME) -> Duration {
    // FILETIME counts 100 ns ticks.
    let ticks = (u64::from(f.dwHighDateTime) << 32) | u64::from(f.dwLowDateTime);
    Duration::from_nanos(ticks.saturating_mul(100))
}

pub(super) fn process_times() -> std::io::Result<Times> {
    // SAFETY: GetCurrentProcess returns a pseudo-handle that is always valid and needs no
    // closing.
    times_of(unsafe { GetCurrentProcess() })
}

/// A child's times, also after it exited, for as long as `child` (its handle) lives.
pub(super) fn child_times(child: &std::process::Child) -> std::io::Result<Times> {
    times_of(child.as_raw_handle() as HANDLE)
}

/// `handle` must be a valid process handle with query access for the duration of the call.
fn times_of(handle: HANDLE) -> std::io::Result<Times> {
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut creation, mut exit, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: the callers pass a live process handle (the current-process pseudo-handle, or
    // the one a borrowed `Child` owns, opened with full access by CreateProcess), and all four
    // pointers are to live, writable FILETIMEs owned by this frame.
    let ok = unsafe { GetProcessTimes(handle, &mut creation, &mut exit, &mut kernel, &mut user) };
    if ok == 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Times {
        user: dur(user),
        system: dur(kernel),
    })
}
