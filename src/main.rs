//! `iomodels`: the command line. A thin dispatch over subcommands; each lives in its own module.
//!
//! Deliberately tiny: flag structs and validation live next to their command (`load.rs`), the
//! work lives in the library crates, and exit codes in `exit.rs`.
#![forbid(unsafe_code)]

mod exit;
mod load;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "iomodels", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load an echo server and measure latency and throughput.
    Load(load::LoadArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Load(args) => load::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("iomodels: {:#}", e.error);
            ExitCode::from(e.code)
        }
    }
}
