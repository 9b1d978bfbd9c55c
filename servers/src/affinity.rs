//! Pinning the whole server process to a set of CPUs (`serve --cpus`), checked against the CPUs
//! this process may run on.
//!
//! What is shared by every platform lives here: the list check and the error. The one raw call
//! per OS lives in a submodule (`cfg` on the `mod` lines only). This module does not pin single
//! threads, does not choose CPUs, and does not record anything in [`ServerStats`](crate::ServerStats):
//! the caller knows what it asked for.

use std::fmt::Write as _;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as sys;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as sys;

#[cfg(not(any(target_os = "linux", windows)))]
mod other;
#[cfg(not(any(target_os = "linux", windows)))]
use other as sys;

/// Why [`pin_process`] did not pin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PinError {
    /// The list of CPUs was empty.
    #[error("no CPUs given")]
    Empty,
    /// `cpu` does not exist on this machine or is outside the set this process may use
    /// (a cgroup cpuset, `taskset`, a job object). Nothing was changed.
    #[error(
        "CPU {cpu} is not one this process may run on (it may use {})",
        format_cpus(allowed)
    )]
    NoSuchCpu {
        /// The first CPU asked for that is not allowed.
        cpu: usize,
        /// The CPUs this process may run on, ascending.
        allowed: Vec<usize>,
    },
    /// This platform has no way to pin a process (macOS has only affinity tags, which are
    /// hints). Nothing was changed; the server runs unpinned.
    #[error("pinning to CPUs is not supported on {0}")]
    Unsupported(&'static str),
    /// The OS refused the call that reads or sets the affinity.
    #[error("cannot set the CPU affinity: {0}")]
    Os(#[from] std::io::Error),
}

/// Pins this process to `cpus` (CPU numbers as the OS counts them, from 0; order and repeats
/// do not matter), so every thread it runs is confined to them.
///
/// On Linux the affinity of the *calling thread* is set, and threads inherit it when they are
/// created: call this before any other thread exists (before [`Server::start`](crate::Server::start),
/// before a signal-handler thread), and every thread the server makes (loops, tokio workers,
/// per-client threads) is pinned. On Windows the whole process's mask is set
/// (`SetProcessAffinityMask`), which covers existing threads too; only CPUs 0–63 (the first
/// processor group) can be named there.
///
/// # Errors
/// [`PinError::Empty`] for an empty list; [`PinError::NoSuchCpu`] for a CPU that does not
/// exist or that this process may not use (checked before anything changes);
/// [`PinError::Unsupported`] where the OS cannot pin (macOS and others), after the same check;
/// [`PinError::Os`] if the OS call fails.
pub fn pin_process(cpus: &[usize]) -> Result<(), PinError> {
    if cpus.is_empty() {
        return Err(PinError::Empty);
    }
    let allowed = sys::allowed_cpus()?;
    check(cpus, &allowed)?;
    sys::pin(cpus)
}

/// The first CPU of `cpus` not in `allowed` is an error.
fn check(cpus: &[usize], allowed: &[usize]) -> Result<(), PinError> {
    match cpus.iter().find(|c| !allowed.contains(c)) {
        None => Ok(()),
        Some(&cpu) => Err(PinError::NoSuchCpu {
            cpu,
            allowed: allowed.to_vec(),
        }),
    }
}

/// The affinity bitmask of `cpus` (bit N = CPU N), or the first CPU that does not fit in a
/// `usize` mask.
#[cfg_attr(not(windows), allow(dead_code))] // Windows' mask; tested everywhere
fn mask(cpus: &[usize]) -> Result<usize, usize> {
    cpus.iter().try_fold(0usize, |m, &c| {
        let bit = u32::try_from(c)
            .ok()
            .and_then(|c| 1usize.checked_shl(c))
            .ok_or(c)?;
        Ok(m | bit)
    })
}

/// The CPUs set in `mask`, ascending.
#[cfg_attr(not(windows), allow(dead_code))] // Windows' mask; tested everywhere
fn cpus_of(mask: usize) -> Vec<usize> {
    (0..usize::BITS as usize)
        .filter(|&c| mask & (1 << c) != 0)
        .collect()
}

/// `[0, 1, 2, 5]` → `0-2,5`, the way `taskset` and `--cpus` write lists.
fn format_cpus(cpus: &[usize]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            i += 1;
            end = cpus[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        let _ = if end == start {
            write!(out, "{start}")
        } else {
            write!(out, "{start}-{end}")
        };
        i += 1;
    }
    if out.is_empty() {
        out.push_str("none");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cpu_outside_the_allowed_set_is_named() {
        assert!(check(&[0, 2, 2], &[0, 1, 2]).is_ok());
        let e = check(&[0, 999, 3], &[0, 1]).unwrap_err();
        assert!(matches!(e, PinError::NoSuchCpu { cpu: 999, .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "CPU 999 is not one this process may run on (it may use 0-1)"
        );
        // A hole in the allowed set (taskset -c 0,2) is not a CPU to run on.
        assert!(matches!(
            check(&[1], &[0, 2]),
            Err(PinError::NoSuchCpu { cpu: 1, .. })
        ));
    }

    #[test]
    fn masks_set_one_bit_per_cpu_and_refuse_what_does_not_fit() {
        assert_eq!(mask(&[0]), Ok(1));
        assert_eq!(mask(&[0, 2, 3, 3]), Ok(0b1101));
        let top = usize::BITS as usize - 1;
        assert_eq!(mask(&[top]), Ok(1 << top));
        assert_eq!(mask(&[1, top + 1]), Err(top + 1));
        assert_eq!(mask(&[usize::MAX]), Err(usize::MAX));
        assert_eq!(cpus_of(0b1101), vec![0, 2, 3]);
        assert_eq!(cpus_of(mask(&[5, 1]).unwrap()), vec![1, 5]);
    }

    #[test]
    fn lists_format_as_ranges() {
        assert_eq!(format_cpus(&[0, 1, 2, 5]), "0-2,5");
        assert_eq!(format_cpus(&[3]), "3");
        assert_eq!(format_cpus(&[0, 2, 4, 5]), "0,2,4-5");
        assert_eq!(format_cpus(&[]), "none");
    }

    #[test]
    fn an_empty_list_is_refused_before_the_os_is_asked() {
        assert!(matches!(pin_process(&[]), Err(PinError::Empty)));
    }

    #[test]
    fn a_cpu_that_does_not_exist_is_refused_everywhere() {
        // Checked before anything changes, also where pinning itself is unsupported.
        assert!(matches!(
            pin_process(&[100_000]),
            Err(PinError::NoSuchCpu { cpu: 100_000, .. })
        ));
    }
}
