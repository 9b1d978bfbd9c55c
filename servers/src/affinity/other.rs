//! Platforms without process pinning (macOS, the BSDs here): the CPU list is still checked
//! against the CPUs there are, then pinning is refused as unsupported. macOS has only thread
//! affinity *tags* (`THREAD_AFFINITY_POLICY`), hints the scheduler may ignore, which is not
//! what `--cpus` promises, so they are deliberately not used.

use super::PinError;

/// CPUs 0 to N-1, N being the CPUs this process may use (std's `available_parallelism`).
pub(super) fn allowed_cpus() -> Result<Vec<usize>, PinError> {
    let n = std::thread::available_parallelism()?.get();
    Ok((0..n).collect())
}

/// Always [`PinError::Unsupported`].
pub(super) fn pin(_cpus: &[usize]) -> Result<(), PinError> {
    Err(PinError::Unsupported(std::env::consts::OS))
}
