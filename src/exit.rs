//! Exit codes and the one-line error a user sees (the contract in the design notes).
//!
//! Libraries return typed errors; only this binary decides which exit code a failure maps to.
//! It is deliberately not a logging facility: one line on stderr, then exit.

use std::fmt;
use std::process::ExitCode;

/// 1: the work failed at run time (refused, server died, payload mismatch).
pub const RUNTIME: u8 = 1;
/// 2: usage or configuration error (bad flag, unknown or unavailable model, port in use, fd limit).
pub const USAGE: u8 = 2;
/// 3: `run` finished but at least one model failed.
#[allow(dead_code)]
pub const SOME_FAILED: u8 = 3;
/// 130: interrupted; partial results were written and marked `interrupted`.
pub const INTERRUPTED: u8 = 130;

/// An error that already knows its exit code.
pub struct CliError {
    pub code: u8,
    pub error: anyhow::Error,
}

impl CliError {
    pub fn usage(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: USAGE,
            error: error.into(),
        }
    }

    pub fn runtime(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: RUNTIME,
            error: error.into(),
        }
    }
}

impl fmt::Debug for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#} (exit {})", self.error, self.code)
    }
}

/// What a command returns: an exit code on success paths (0 or 130), or an error with its code.
pub type CliResult = Result<ExitCode, CliError>;
