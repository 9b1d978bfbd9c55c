//! A minimal `log` backend: warnings and errors from the libraries go to stderr, one line each,
//! prefixed with `iomodels:`. `IOMODELS_LOG=debug` shows more. It is not a logging framework:
//! no files, no timestamps, nothing on stdout (stdout is the `serve` contract).

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// The same message is not repeated within this window (a server at its descriptor limit
/// would otherwise warn ten times a second).
const REPEAT_WINDOW: Duration = Duration::from_secs(1);

struct Stderr {
    last: Mutex<Option<(String, Instant)>>,
}

static LOGGER: Stderr = Stderr {
    last: Mutex::new(None),
};

pub fn init() {
    let level = match std::env::var("IOMODELS_LOG").as_deref() {
        Ok("debug") => LevelFilter::Debug,
        Ok("info") => LevelFilter::Info,
        Ok("error") => LevelFilter::Error,
        Ok("off") => LevelFilter::Off,
        _ => LevelFilter::Warn,
    };
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let text = record.args().to_string();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((prev, at)) = last.as_ref()
            && *prev == text
            && at.elapsed() < REPEAT_WINDOW
        {
            return;
        }
        *last = Some((text.clone(), Instant::now()));
        let level = match record.level() {
            Level::Error => "error",
            Level::Warn => "warning",
            _ => "info",
        };
        let _ = writeln!(std::io::stderr().lock(), "iomodels: {level}: {text}");
    }

    fn flush(&self) {}
}
