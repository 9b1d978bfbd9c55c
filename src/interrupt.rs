//! Ctrl-C (SIGINT and SIGTERM; Ctrl-C on Windows): one handler for the whole process, one stop.
//!
//! `ctrlc` allows a single handler per process, so every command shares this one: `load` and
//! `run` watch its [`loadgen::Stop`], and `serve` adds the server's own stop as a hook. A command
//! installs it when it is ready (`serve` pins its CPUs first, so the handler's thread is pinned
//! too). It deliberately does nothing else: no second signal handling, no exit from the handler.

use std::sync::{Arc, Mutex};

use anyhow::anyhow;

type Hook = Box<dyn Fn() + Send>;

/// The process's one interrupt: a stop flag plus hooks called on Ctrl-C.
#[derive(Clone, Default)]
pub struct Interrupt {
    stop: loadgen::Stop,
    hooks: Arc<Mutex<Vec<Hook>>>,
}

impl Interrupt {
    /// Install the handler. Call once per process.
    pub fn install() -> anyhow::Result<Self> {
        let this = Self::default();
        let on_signal = this.clone();
        ctrlc::set_handler(move || {
            on_signal.stop.stop();
            for hook in on_signal
                .hooks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
            {
                hook();
            }
        })
        .map_err(|e| anyhow!("cannot install the Ctrl-C handler: {e}"))?;
        Ok(this)
    }

    /// The stop flag a Ctrl-C sets.
    pub fn stop(&self) -> &loadgen::Stop {
        &self.stop
    }

    /// Also call `hook` on Ctrl-C.
    pub fn on_interrupt(&self, hook: impl Fn() + Send + 'static) {
        self.hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(hook));
    }
}
