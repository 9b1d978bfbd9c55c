//! `iomodels`: one echo protocol, one server per I/O model, one load generator.
//!
//! A thin dispatch: clap structs for the raw arguments, each command in its own module, and
//! [`exit`] mapping failures to the exit-code contract. Nothing here measures or serves; the
//! `servers` and `loadgen` libraries do.
#![forbid(unsafe_code)]

mod compare;
mod exit;
mod fanout;
mod interrupt;
mod limits;
mod load;
mod logger;
mod models;
mod resolve;
mod run;
mod serve;
mod sweep;
mod units;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Echo servers for every I/O model, and the load generator that measures them.
#[derive(Parser)]
#[command(name = "iomodels", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the I/O models: available here or not (and why), and what each is.
    Models(models::ModelsArgs),
    /// Run one model's echo server until SIGINT/SIGTERM (or stdin EOF with --stop-on-stdin-eof).
    Serve(serve::ServeArgs),
    /// Load an echo server (closed or open loop) and measure latency, throughput and CPU.
    Load(Box<load::LoadArgs>),
    /// Measure every model on this machine (each point, interleaved rounds) and write results,
    /// a summary, a table and report.html.
    Run(Box<run::RunArgs>),
    /// Sweep one axis for every model and draw the curves: `rate` (latency against throughput,
    /// each model's knee), `idle` (CPU per request against idle connections), `connections`.
    Sweep(Box<sweep::SweepArgs>),
    /// Compare runs: a table of every model × point from run folders, summary.json files or load --json results.
    Compare(compare::CompareArgs),
    /// One sender, N receivers: what N × TCP, N × UDP, multicast and broadcast each cost the
    /// sender (CPU, send calls, wire packets per message) and what the receivers get.
    Fanout(Box<fanout::FanoutArgs>),
    /// One fanout receiver process (started by `fanout --processes`).
    #[command(hide = true)]
    FanoutReceiver(fanout::ReceiverArgs),
}

fn main() -> ExitCode {
    logger::init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Models(args) => models::run(&args),
        Command::Serve(args) => serve::run(args),
        Command::Load(args) => load::run(*args),
        Command::Run(args) => run::run(*args),
        Command::Sweep(args) => sweep::run(*args),
        Command::Compare(args) => compare::run(&args),
        Command::Fanout(args) => fanout::run(*args),
        Command::FanoutReceiver(args) => fanout::receiver_main(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("iomodels: {:#}", e.error);
            ExitCode::from(e.code)
        }
    }
}
