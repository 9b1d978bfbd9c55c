//! `iomodels models`: the registry as a table, or just the names that run here.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use servers::{Model, Proto};

use crate::exit::CliResult;

#[derive(Args)]
pub struct ModelsArgs {
    /// Print only the names of the models that run on this machine, one per line.
    #[arg(long)]
    names: bool,
    /// With --names: only the models that serve this transport (tcp or udp).
    #[arg(long, requires = "names", value_parser = str::parse::<Proto>)]
    proto: Option<Proto>,
}

pub fn run(args: &ModelsArgs) -> CliResult {
    let mut out = String::new();
    if args.names {
        for m in Model::available().filter(|m| args.proto.is_none_or(|p| m.serves(p).is_ok())) {
            out.push_str(m.name());
            out.push('\n');
        }
    } else {
        // As wide as the longest name (uring-multishot), so the columns line up.
        let w = Model::ALL.iter().map(|m| m.name().len()).max().unwrap_or(5);
        // BUSY-POLL: whether `serve --busy-poll` works for it (the registry row says).
        // PROTO: the transports `serve --proto` takes for it.
        out.push_str(&format!(
            "{:<w$} {:<4} {:<9} {:<7} {}\n",
            "MODEL", "HERE", "BUSY-POLL", "PROTO", "DESCRIPTION"
        ));
        for &m in Model::ALL {
            let (here, why) = match m.availability() {
                Ok(()) => ("yes", String::new()),
                Err(e) => ("no", format!(" [unavailable: {}]", e.reason)),
            };
            let spin = if m.busy_poll().is_ok() { "yes" } else { "no" };
            let protos: Vec<&str> = m.protocols().iter().map(|p| p.name()).collect();
            let no_udp = match m.serves(Proto::Udp) {
                Ok(()) => String::new(),
                Err(reason) => format!(" [no udp: {reason}]"),
            };
            out.push_str(&format!(
                "{:<w$} {:<4} {:<9} {:<7} {}{}{}\n",
                m.name(),
                here,
                spin,
                protos.join(","),
                m.description(),
                why,
                no_udp
            ));
        }
        out.push_str(
            "\nHERE       whether it runs on this machine (if not, the reason in brackets)\n\
             BUSY-POLL  whether `serve --busy-poll` takes it: its waits can use a zero timeout\n\
             PROTO      what `serve --proto` takes (udp: datagram echo; if not, why in brackets)\n\
             `iomodels models --names [--proto udp]` lists only the names that run here.\n",
        );
    }
    // A closed stdout (`| head`) is not an error.
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(ExitCode::SUCCESS)
}
