//! Receivers as child processes (`--processes`, `--receivers-netns`): each is this binary's
//! hidden `fanout-receiver` command, started in its own process group, optionally inside a
//! network namespace (`ip netns exec NS`), talking to the parent over pipes only, so it works
//! across namespaces.
//!
//! The protocol: the child prints `ready ADDR` (its endpoint) once bound, reads stdin until
//! EOF (the stop, also when the parent dies), then prints its [`ReceiverReport`] as one JSON
//! line. Dropping a [`ChildReceiver`] kills and reaps it. Not a general process manager.

use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use iomodels::child::{isolate, kill_and_reap, lines};

use super::receiver::ReceiverReport;

/// A running receiver process.
pub struct ChildReceiver {
    index: usize,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    pub endpoint: SocketAddr,
}

impl ChildReceiver {
    /// Start `[ip netns exec NS] EXE fanout-receiver ARGS` and wait up to `timeout` for its
    /// `ready` line.
    pub fn spawn(
        index: usize,
        exe: &std::path::Path,
        netns: Option<&str>,
        args: &[String],
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        cmd.arg("fanout-receiver")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        isolate(&mut cmd);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start receiver {index} ({})", exe.display()))?;
        let stdin = child.stdin.take();
        let lines = lines(child.stdout.take());
        let mut this = Self {
            index,
            child,
            stdin,
            lines,
            endpoint: SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        let line = match this.lines.recv_timeout(timeout) {
            Ok(l) => l,
            Err(RecvTimeoutError::Timeout) => {
                return Err(anyhow!("receiver {index} was not ready within {timeout:?}"));
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(anyhow!(
                    "receiver {index} exited before it was ready (its error is above)"
                ));
            }
        };
        this.endpoint = line
            .strip_prefix("ready ")
            .and_then(|a| a.trim().parse().ok())
            .ok_or_else(|| anyhow!("receiver {index} printed {line:?}, not `ready ADDR`"))?;
        Ok(this)
    }

    /// Close stdin (the stop) without waiting, so all children stop together.
    pub fn stop(&mut self) {
        drop(self.stdin.take());
    }

    /// The report line, within `deadline`; the child is killed if it has not answered.
    pub fn report(mut self, deadline: Instant) -> anyhow::Result<ReceiverReport> {
        self.stop();
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(l) if l.trim().is_empty() => continue,
                Ok(l) => {
                    return serde_json::from_str(&l).with_context(|| {
                        format!(
                            "receiver {} printed a report that does not parse",
                            self.index
                        )
                    });
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(anyhow!(
                        "receiver {} did not report in time; killed",
                        self.index
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(anyhow!("receiver {} ended without a report", self.index));
                }
            }
        }
    }
}

impl Drop for ChildReceiver {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}
