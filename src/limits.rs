//! Process limits the binary raises at start-up (`RLIMIT_NOFILE`), so 10,000 connections work,
//! and the one every OS has: the client ports one address can connect from.
//!
//! `cfg` at the module boundary: on Windows there is no descriptor limit to raise (sockets are
//! handles), so the function does nothing there; the port range is read where the OS says it.

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

/// The client (ephemeral) ports the generator's one address can connect from: every connection
/// to the one server address needs a port of its own, whatever the descriptor limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports {
    /// How many there are.
    pub count: u64,
    /// Where the figure comes from, and how to change it (said in a refusal).
    pub source: String,
}

/// Linux: `net.ipv4.ip_local_port_range` (`/proc/sys/net/ipv4/ip_local_port_range`, two
/// numbers, inclusive); `None` if it cannot be read.
#[cfg(target_os = "linux")]
pub fn ephemeral_ports() -> Option<Ports> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = text.split_whitespace().map(str::parse::<u64>);
    let (lo, hi) = (it.next()?.ok()?, it.next()?.ok()?);
    Some(Ports {
        count: (hi + 1).saturating_sub(lo),
        source: format!(
            "net.ipv4.ip_local_port_range is {lo}-{hi}; widen it with sysctl -w \
             net.ipv4.ip_local_port_range=\"1024 65535\""
        ),
    })
}

/// Elsewhere: the most any setting allows, every port from 1024 to 65535 (the OS's dynamic
/// range is usually narrower, 49152-65535 by default on Windows and macOS, but not read here:
/// a refusal must be certain).
#[cfg(not(target_os = "linux"))]
pub fn ephemeral_ports() -> Option<Ports> {
    Some(Ports {
        count: 65_535 - 1024 + 1,
        source: "a client address has at most the ports 1024-65535, whatever the OS's range"
            .to_owned(),
    })
}
