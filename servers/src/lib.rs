//! Echo servers (RFC 862: every byte comes back, in order), one module per I/O model, behind one
//! small API.
//!
//! The surface is deliberately small: a [`Model`] registry that knows each model's name,
//! description, whether it runs here and which protocols it serves ([`Proto`]); a validated
//! [`Config`]; [`Server::start`], which binds, starts the model's loops and returns once every
//! loop is ready to accept; a [`Stop`] handle; and plain [`ServerStats`] at the end. This crate
//! never prints, never exits and never parses flags: the `iomodels` binary does that.
//!
//! What every model guarantees is written once, in the (private) `models` module's docs
//! (`servers/src/models/mod.rs`).
// `unsafe` only at the FFI edge: allowed per module in models/{epoll,select,poll,uring}.rs,
// models/uring/udp.rs, datagram/{linux,portable}.rs, models/polling/registered.rs and
// affinity/windows.rs, each block with its SAFETY line.
#![deny(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

#[macro_use]
mod sys;
mod affinity;
mod config;
// Shared with IOCP once that lands; only io_uring (Linux) drives it today.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
mod completion;
mod conn;
mod ctx;
mod datagram;
mod listen;
mod models;
mod server;
mod stats;
mod stop;
mod wake;

pub use affinity::{PinError, pin_process};
pub use config::{AcceptMode, Config, ConfigError, UringOptions};
pub use ctx::{StartError, Unsupported};
pub use models::{Model, Proto};
pub use server::Server;
pub use stats::ServerStats;
pub use stop::Stop;
