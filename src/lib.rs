//! The `iomodels` orchestration library: the records `run` writes and `compare` reads, their
//! exporters, and the `serve` child-process helper, shared by the binary and its tests.
//!
//! Deliberately not the servers or the load generator (those are the `servers` and `loadgen`
//! crates) and not the command line (that is `main.rs` and its command modules).
#![forbid(unsafe_code)]

pub mod child;
pub mod explain;
pub mod export;
pub mod record;
pub mod wakeup;
