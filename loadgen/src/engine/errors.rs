//! How an I/O failure is classified into the report's error buckets, and counted there.
//!
//! Deliberately only classification: what a failure does to a connection (close, back off,
//! reconnect) is the worker's business, and whether refused connects mean the run cannot start
//! is the coordinator's.

use std::io;

use crate::report::Errors;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Refused,
    Reset,
    Timeout,
    Mismatch,
    AddrUnavailable,
    Other,
}

pub(super) fn kind_of(e: &io::Error) -> Kind {
    use io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => Kind::Refused,
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => Kind::Reset,
        K::TimedOut => Kind::Timeout,
        K::AddrNotAvailable => Kind::AddrUnavailable,
        _ => Kind::Other,
    }
}

pub(super) fn count(errors: &mut Errors, k: Kind) {
    errors.total += 1;
    match k {
        Kind::Refused => errors.refused += 1,
        Kind::Reset => errors.reset += 1,
        Kind::Timeout => errors.timeout += 1,
        Kind::Mismatch => errors.mismatch += 1,
        Kind::AddrUnavailable => errors.addr_unavailable += 1,
        Kind::Other => errors.other += 1,
    }
}
