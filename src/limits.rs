//! Process limits the binary raises at start-up (`RLIMIT_NOFILE`), so 10,000 connections work.
//!
//! `cfg` at the module boundary: on Windows there is no descriptor limit to raise (sockets are
//! handles), so the function does nothing there.

#[cfg(unix)]
pub fn raise_nofile() {
    match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, hard)) if soft < hard => match rlimit::increase_nofile_limit(hard) {
            Ok(now) if now < hard => {
                log::warn!("open-file limit raised only to {now} (hard limit {hard})");
            }
            Ok(_) => {}
            Err(e) => log::warn!(
                "cannot raise the open-file limit from {soft} to {hard}: {e}; \
                 runs needing more connections will hit EMFILE"
            ),
        },
        Ok(_) => {}
        Err(e) => log::warn!("cannot read the open-file limit: {e}"),
    }
}

#[cfg(not(unix))]
pub fn raise_nofile() {}

/// The open-file limits now: (soft, hard), or `None` where there is none to read (Windows:
/// sockets are handles) or it cannot be read.
#[cfg(unix)]
pub fn nofile() -> Option<(u64, u64)> {
    rlimit::getrlimit(rlimit::Resource::NOFILE).ok()
}

#[cfg(not(unix))]
pub fn nofile() -> Option<(u64, u64)> {
    None
}
