//! `iomodels models`: the registry as a table, or just the names that run here.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use servers::Model;

use crate::exit::CliResult;

#[derive(Args)]
pub struct ModelsArgs {
    /// Print only the names of the models that run on this machine, one per line.
    #[arg(long)]
    names: bool,
}

pub fn run(args: &ModelsArgs) -> CliResult {
    let mut out = String::new();
    if args.names {
        for m in Model::available() {
            out.push_str(m.name());
            out.push('\n');
        }
    } else {
        // As wide as the longest name (uring-multishot), so the columns line up.
        let w = Model::ALL.iter().map(|m| m.name().len()).max().unwrap_or(5);
        // BUSY-POLL: whether `serve --busy-poll` works for it (the registry row says).
        out.push_str(&format!(
            "{:<w$} {:<4} {:<9} {}\n",
            "MODEL", "HERE", "BUSY-POLL", "DESCRIPTION"
        ));
        for &m in Model::ALL {
            let (here, why) = match m.availability() {
                Ok(()) => ("yes", String::new()),
                Err(e) => ("no", format!(" [unavailable: {}]", e.reason)),
            };
            let spin = if m.busy_poll().is_ok() { "yes" } else { "no" };
            out.push_str(&format!(
                "{:<w$} {:<4} {:<9} {}{}\n",
                m.name(),
                here,
                spin,
                m.description(),
                why
            ));
        }
    }
    // A closed stdout (`| head`) is not an error.
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(ExitCode::SUCCESS)
}
