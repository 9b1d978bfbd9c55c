//! Windows: the process affinity mask (`GetProcessAffinityMask`/`SetProcessAffinityMask`),
//! which applies to every thread of the process, existing or not. Not processor groups: only
//! the first 64 CPUs can be named, which is what a `usize` mask holds.
#![allow(unsafe_code)] // the two Win32 affinity calls: the FFI edge, each with its SAFETY line

use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetProcessAffinityMask, SetProcessAffinityMask,
};

use super::{PinError, cpus_of, mask};

/// The CPUs this process may run on (its affinity mask).
pub(super) fn allowed_cpus() -> Result<Vec<usize>, PinError> {
    let (mut process, mut system) = (0usize, 0usize);
    // SAFETY: GetCurrentProcess returns a pseudo-handle that needs no closing; both out
    // pointers are to live, writable usizes owned by this frame.
    let ok = unsafe { GetProcessAffinityMask(GetCurrentProcess(), &mut process, &mut system) };
    if ok == 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(cpus_of(process))
}

/// Sets the process mask to `cpus` (already checked against [`allowed_cpus`]).
pub(super) fn pin(cpus: &[usize]) -> Result<(), PinError> {
    let m = mask(cpus).map_err(|cpu| PinError::NoSuchCpu {
        cpu,
        allowed: allowed_cpus().unwrap_or_default(),
    })?;
    // SAFETY: GetCurrentProcess returns a pseudo-handle with PROCESS_SET_INFORMATION access;
    // the mask is a plain value.
    let ok = unsafe { SetProcessAffinityMask(GetCurrentProcess(), m) };
    if ok == 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}
