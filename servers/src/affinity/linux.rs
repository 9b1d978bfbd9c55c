//! Linux: `sched_getaffinity`/`sched_setaffinity` on the calling thread, through nix's safe
//! wrappers. Not a process-wide call: Linux affinity is per thread and inherited by threads
//! created afterwards, which is why the caller pins before any thread exists.

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;

use super::PinError;

/// The CPUs the calling thread may run on (its mask, already narrowed by cpusets and taskset).
pub(super) fn allowed_cpus() -> Result<Vec<usize>, PinError> {
    let set = sched_getaffinity(Pid::from_raw(0)).map_err(std::io::Error::from)?;
    Ok((0..CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect())
}

/// Sets the calling thread's mask to `cpus` (already checked against [`allowed_cpus`]).
pub(super) fn pin(cpus: &[usize]) -> Result<(), PinError> {
    let mut set = CpuSet::new();
    for &c in cpus {
        set.set(c).map_err(std::io::Error::from)?;
    }
    sched_setaffinity(Pid::from_raw(0), &set).map_err(std::io::Error::from)?;
    Ok(())
}
