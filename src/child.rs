//! One `iomodels serve` child process: spawn it, read its typed `listening` line, stop it
//! through stdin EOF (the portable stop), read its `ServerStats` line, and kill it if it does
//! not stop in time or is dropped.
//!
//! `run` and the tests use this one helper instead of parsing the `serve` stdout contract in
//! several places. It deliberately knows nothing about measuring: CPU sampling takes
//! [`ServeChild::process`] and is done by the caller.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use servers::ServerStats;

/// Lines of the child's stderr kept for error messages.
const STDERR_TAIL: usize = 20;

/// Why a child did not serve or stop as the `serve` contract says.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("cannot start {exe}: {source}")]
    Spawn {
        exe: String,
        #[source]
        source: std::io::Error,
    },
    #[error("serve exited ({status}) before listening: {stderr}")]
    ExitedEarly { status: String, stderr: String },
    #[error("serve printed no `listening` line within {0:?}")]
    NotListening(Duration),
    #[error("serve printed {0:?} where the contract says `listening ADDR`")]
    BadListeningLine(String),
    #[error("serve did not stop within {0:?} of stdin EOF, and was killed")]
    DidNotStop(Duration),
    #[error("serve ended ({status}) without its stats line: {stderr}")]
    NoStats { status: String, stderr: String },
    #[error("serve printed stats that do not parse ({error}): {line:?}")]
    BadStats { line: String, error: String },
}

/// The address of a `listening ADDR` line (the `serve` stdout contract: a `SocketAddr` as Rust
/// displays it, `127.0.0.1:40123` or `[::1]:40123`); `None` for any other line.
pub fn parse_listening(line: &str) -> Option<SocketAddr> {
    line.strip_prefix("listening ")?.trim().parse().ok()
}

/// A running `serve` child. Dropping it kills the process and reaps it.
pub struct ServeChild {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    /// The thread draining stderr; joined once the process has exited, so the tail is whole.
    stderr_reader: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl ServeChild {
    /// Start `exe serve MODEL --listen 127.0.0.1:0 --stop-on-stdin-eof ARGS...` and wait up to
    /// `timeout` for its `listening` line. The child gets its own process group, so a Ctrl-C at
    /// the terminal reaches only the parent, which stops its children in order.
    pub fn spawn(
        exe: &Path,
        model: &str,
        args: &[String],
        timeout: Duration,
    ) -> Result<Self, ChildError> {
        let mut cmd = Command::new(exe);
        cmd.args([
            "serve",
            model,
            "--listen",
            "127.0.0.1:0",
            "--stop-on-stdin-eof",
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        isolate(&mut cmd);
        let mut child = cmd.spawn().map_err(|source| ChildError::Spawn {
            exe: exe.display().to_string(),
            source,
        })?;
        let stdin = child.stdin.take();
        let stdout = lines(child.stdout.take());
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let stderr_reader = child.stderr.take().map(|err| {
            let tail = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
                    if t.len() == STDERR_TAIL {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            })
        });
        let mut this = Self {
            child,
            stdin,
            stdout,
            stderr,
            stderr_reader,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        match this.stdout.recv_timeout(timeout) {
            Ok(line) => {
                this.addr = parse_listening(&line).ok_or(ChildError::BadListeningLine(line))?;
                Ok(this)
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = this.wait_for_exit(timeout);
                Err(ChildError::ExitedEarly {
                    status,
                    stderr: this.stderr_tail(),
                })
            }
            Err(RecvTimeoutError::Timeout) => Err(ChildError::NotListening(timeout)),
        }
    }

    /// The address from the `listening` line.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The process, for the OS's accounting of its CPU time.
    pub fn process(&self) -> &Child {
        &self.child
    }

    /// The process has exited (crashed, or stopped on its own).
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// The last lines the child wrote on stderr, joined with " | " (empty if none).
    pub fn stderr_tail(&self) -> String {
        let t = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        t.iter().map(String::as_str).collect::<Vec<_>>().join(" | ")
    }

    /// Stop through stdin EOF and read the final stats line; a child that has not exited
    /// within `timeout` is killed ([`ChildError::DidNotStop`]).
    pub fn stop(mut self, timeout: Duration) -> Result<ServerStats, ChildError> {
        drop(self.stdin.take());
        let deadline = Instant::now() + timeout;
        let line = loop {
            match self
                .stdout
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) if line.trim().is_empty() => continue,
                Ok(line) => break Some(line),
                Err(RecvTimeoutError::Disconnected) => break None,
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    return Err(ChildError::DidNotStop(timeout));
                }
            }
        };
        let status = self.wait_for_exit(deadline.saturating_duration_since(Instant::now()));
        match line {
            Some(line) => serde_json::from_str(&line).map_err(|e| ChildError::BadStats {
                line,
                error: e.to_string(),
            }),
            None => Err(ChildError::NoStats {
                status,
                stderr: self.stderr_tail(),
            }),
        }
    }

    /// Wait up to `timeout` for the child to exit (killing it after), and describe its status.
    fn wait_for_exit(&mut self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) => {
                    // The pipe closes with the process: the reader ends with the last line.
                    if let Some(r) = self.stderr_reader.take() {
                        let _ = r.join();
                    }
                    return s.to_string();
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    return "still running; killed".into();
                }
                Err(e) => return format!("status unknown: {e}"),
            }
        }
    }
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

/// Kill `child` if it is still running, then reap it (errors ignored: this runs on drop, when
/// nothing is left to report them to). Shared with `fanout`'s receiver processes.
pub fn kill_and_reap(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// Start the process `cmd` will spawn in a process group of its own (Unix: `setpgid`; Windows:
/// `CREATE_NEW_PROCESS_GROUP`; elsewhere nothing), so the terminal's Ctrl-C reaches only the
/// parent, which stops its children in order. Shared with `fanout`'s receiver processes.
pub fn isolate(cmd: &mut Command) {
    group::isolate(cmd);
}

/// Each line of `r` into a channel, read on a thread of its own; the channel closes at end of
/// file (or at once for `None`). Shared with `fanout`'s receiver processes.
pub fn lines(r: Option<impl Read + Send + 'static>) -> Receiver<String> {
    let (tx, rx) = channel();
    if let Some(r) = r {
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    rx
}

#[cfg(unix)]
mod group {
    use std::os::unix::process::CommandExt;

    /// A process group of its own: the terminal's SIGINT goes to the parent only.
    pub fn isolate(cmd: &mut std::process::Command) {
        cmd.process_group(0);
    }
}

#[cfg(windows)]
mod group {
    use std::os::windows::process::CommandExt;

    /// `CREATE_NEW_PROCESS_GROUP`: the console's Ctrl-C goes to the parent only.
    pub fn isolate(cmd: &mut std::process::Command) {
        cmd.creation_flags(0x0000_0200);
    }
}

#[cfg(not(any(unix, windows)))]
mod group {
    pub fn isolate(_: &mut std::process::Command) {}
}

#[cfg(test)]
mod tests {
    use super::parse_listening;

    #[test]
    fn listening_lines_parse_as_the_contract_spells_them() {
        assert_eq!(
            parse_listening("listening 127.0.0.1:40123"),
            Some("127.0.0.1:40123".parse().unwrap())
        );
        assert_eq!(
            parse_listening("listening [::1]:7700\n"),
            Some("[::1]:7700".parse().unwrap())
        );
        assert_eq!(parse_listening("listening localhost:7700"), None);
        assert_eq!(parse_listening("{\"model\":\"epoll\"}"), None);
    }
}
