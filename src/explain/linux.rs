//! Linux: one counter per (thread, event) through `perf-event2`, tracepoints by the id tracefs
//! gives (`/sys/kernel/tracing/events/<group>/<name>/id`), every counter opened disabled with
//! `inherit` and kernel counting on (a tracepoint fires in the kernel: a user-only counter
//! would read zero).
//!
//! Deliberately no sampling, no ring buffers and no filters: counting only, which the kernel
//! does in place at the cost of an increment per event.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use perf_event::events::{Software, Tracepoint};
use perf_event::{Builder, Counter};

use super::{BY_NAME, Counts, IoUringCounts, Refused};

/// Where tracefs lives: its own mount first, then under debugfs (older systems).
const TRACEFS: &[&str] = &["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// Most descriptors a probe may hold, whatever the limit allows.
const MAX_FDS: usize = 4_096;

/// What one opened event adds to.
#[derive(Clone, Debug)]
enum Kind {
    Syscalls,
    ContextSwitches,
    Wakeups,
    ByName(&'static str),
    IoUring(usize),
}

/// The io_uring tracepoints, in [`IoUringCounts`] field order.
const IO_URING: [&str; 5] = [
    "io_uring_submit_req",
    "io_uring_task_work_run",
    "io_uring_queue_async_work",
    "io_uring_poll_arm",
    "io_uring_local_work_run",
];

/// An event to count: its `group:name` and where its source is.
struct Wanted {
    label: String,
    source: Source,
    kind: Kind,
    /// The figures make no sense without it: failing to open it refuses the whole probe.
    core: bool,
}

#[derive(Clone, Copy)]
enum Source {
    Tracepoint(u64),
    ContextSwitches,
}

/// One event's counters, one per thread it could be opened on.
struct Opened {
    kind: Kind,
    counters: Vec<Counter>,
}

/// See the parent module.
pub struct Probe {
    pid: u32,
    opened: Vec<Opened>,
    unavailable: Vec<String>,
    threads: usize,
    /// (voluntary, involuntary) switches per thread at the window's opening.
    switches_at_start: Option<BTreeMap<u32, (u64, u64)>>,
}

impl Probe {
    pub fn attach(pid: u32) -> Result<Self, Refused> {
        Self::attach_within(pid, fd_budget())
    }

    /// [`Probe::attach`] holding at most `budget` descriptors.
    fn attach_within(pid: u32, budget: usize) -> Result<Self, Refused> {
        let tids = threads_of(pid).map_err(|e| {
            Refused(format!(
                "cannot list the threads of process {pid} (/proc/{pid}/task: {e})"
            ))
        })?;
        let tracefs = tracefs()?;
        let mut unavailable = Vec::new();
        let mut wanted = Vec::new();
        let tp = |group: &str, name: &str| tracepoint_id(&tracefs, group, name);
        let core = |label: &str, id: io::Result<u64>, kind| -> Result<Wanted, Refused> {
            let id = id.map_err(|e| {
                Refused(format!(
                    "tracepoint {label} is not readable under {}: {e}",
                    tracefs.display()
                ))
            })?;
            Ok(Wanted {
                label: label.into(),
                source: Source::Tracepoint(id),
                kind,
                core: true,
            })
        };
        wanted.push(core(
            "raw_syscalls:sys_enter",
            tp("raw_syscalls", "sys_enter"),
            Kind::Syscalls,
        )?);
        wanted.push(Wanted {
            label: "software:context-switches".into(),
            source: Source::ContextSwitches,
            kind: Kind::ContextSwitches,
            core: true,
        });
        // `sched_waking`, not `sched_wakeup`: a wake-up of a task on another CPU is queued to
        // that CPU (TTWU_QUEUE) and `sched_wakeup` fires there, in whatever runs there, so a
        // per-thread counter read ≈ 0 whenever server and generator run on different CPUs
        // (run's default); `sched_waking` fires in the waker's own context, always.
        wanted.push(core(
            "sched:sched_waking",
            tp("sched", "sched_waking"),
            Kind::Wakeups,
        )?);
        wanted.push(core(
            "sched:sched_wakeup_new",
            tp("sched", "sched_wakeup_new"),
            Kind::Wakeups,
        )?);
        for (i, name) in IO_URING.iter().enumerate() {
            let label = format!("io_uring:{name}");
            match tp("io_uring", name) {
                Ok(id) => wanted.push(Wanted {
                    label,
                    source: Source::Tracepoint(id),
                    kind: Kind::IoUring(i),
                    core: false,
                }),
                Err(e) => unavailable.push(format!("{label}: {}", missing(&e))),
            }
        }
        for name in BY_NAME {
            let label = format!("syscalls:sys_enter_{name}");
            match tp("syscalls", &format!("sys_enter_{name}")) {
                Ok(id) => wanted.push(Wanted {
                    label,
                    source: Source::Tracepoint(id),
                    kind: Kind::ByName(name),
                    core: false,
                }),
                Err(e) => unavailable.push(format!("{label}: {}", missing(&e))),
            }
        }

        let mut used = 0usize;
        let mut live = tids;
        let mut opened = Vec::new();
        for w in wanted {
            if used + live.len() > budget {
                let why = format!(
                    "descriptor budget: {} more (one per thread) on top of the {used} held \
                     would pass the {budget} a probe may hold (a quarter of what the open-file \
                     limit leaves, at most {MAX_FDS})",
                    live.len()
                );
                if w.core {
                    return Err(Refused(format!("{}: {why}", w.label)));
                }
                unavailable.push(format!("{}: {why}", w.label));
                continue;
            }
            match open_on_all(&w, &mut live, pid) {
                Ok(counters) => {
                    used += counters.len();
                    opened.push(Opened {
                        kind: w.kind,
                        counters,
                    });
                }
                Err(e) if w.core => return Err(e),
                Err(Refused(why)) => unavailable.push(format!("{}: {why}", w.label)),
            }
        }
        Ok(Self {
            pid,
            opened,
            unavailable,
            threads: live.len(),
            switches_at_start: None,
        })
    }

    pub fn unavailable(&self) -> Vec<String> {
        self.unavailable.clone()
    }

    pub fn start(&mut self) -> Result<(), Refused> {
        self.switches_at_start = switches(self.pid).ok();
        // Counters that would count the enabling itself (every `ioctl` is a system call)
        // go last, so a probe on this very process does not count its own start.
        for late in [false, true] {
            for o in self
                .opened
                .iter_mut()
                .filter(|o| counts_ioctl(&o.kind) == late)
            {
                for c in &mut o.counters {
                    c.enable()
                        .map_err(|e| Refused(format!("cannot enable a perf counter: {e}")))?;
                }
            }
        }
        Ok(())
    }

    pub fn stop(&mut self) -> Result<Counts, Refused> {
        // The mirror of `start`: those go first.
        for late in [true, false] {
            for o in self
                .opened
                .iter_mut()
                .filter(|o| counts_ioctl(&o.kind) == late)
            {
                for c in &mut o.counters {
                    c.disable()
                        .map_err(|e| Refused(format!("cannot disable a perf counter: {e}")))?;
                }
            }
        }
        let (voluntary, involuntary) = match (&self.switches_at_start, switches(self.pid)) {
            (Some(a), Ok(b)) => switch_delta(a, &b).unzip(),
            _ => (None, None),
        };
        let mut counts = Counts {
            voluntary_context_switches: voluntary,
            involuntary_context_switches: involuntary,
            threads: self.threads,
            ..Counts::default()
        };
        let mut uring = [0u64; IO_URING.len()];
        let mut any_uring = false;
        for o in &mut self.opened {
            let mut total = 0u64;
            for c in &mut o.counters {
                total += c
                    .read()
                    .map_err(|e| Refused(format!("cannot read a perf counter: {e}")))?;
            }
            match o.kind {
                Kind::Syscalls => counts.syscalls += total,
                Kind::ContextSwitches => counts.context_switches += total,
                Kind::Wakeups => counts.wakeups += total,
                Kind::ByName(n) => {
                    counts.by_name.insert(n.to_owned(), total);
                }
                Kind::IoUring(i) => {
                    uring[i] = total;
                    any_uring = true;
                }
            }
        }
        if any_uring {
            counts.io_uring = Some(IoUringCounts {
                submit_req: uring[0],
                task_work_run: uring[1],
                queue_async_work: uring[2],
                poll_arm: uring[3],
                local_work_run: uring[4],
            });
        }
        Ok(counts)
    }
}

pub fn unsupported_here() -> Option<String> {
    None
}

pub fn check_pid(pid: u32) -> Result<(), String> {
    match std::fs::metadata(format!("/proc/{pid}")) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(
            "no such process: give the server's PID (e.g. from pgrep -f 'iomodels serve')".into(),
        ),
        Err(e) => Err(format!("cannot look the process up in /proc: {e}")),
    }
}

/// Whether an event of `kind` counts the `ioctl` that enables or disables a counter.
fn counts_ioctl(kind: &Kind) -> bool {
    matches!(kind, Kind::Syscalls | Kind::ByName("ioctl"))
}

/// Open `w` on every thread in `live`; a thread that exited since the listing (`ESRCH`) is
/// dropped from `live` for this and later events.
fn open_on_all(w: &Wanted, live: &mut Vec<u32>, pid: u32) -> Result<Vec<Counter>, Refused> {
    let mut counters = Vec::with_capacity(live.len());
    let mut gone = Vec::new();
    for &tid in live.iter() {
        let mut b = match w.source {
            Source::Tracepoint(id) => Builder::new(Tracepoint::with_id(id)),
            Source::ContextSwitches => Builder::new(Software::CONTEXT_SWITCHES),
        };
        b.observe_pid(tid as i32)
            .any_cpu()
            .include_kernel()
            .inherit(true)
            .enabled(false);
        match b.build() {
            Ok(c) => counters.push(c),
            Err(e) if e.raw_os_error() == Some(libc_esrch()) => gone.push(tid),
            Err(e) => return Err(Refused(refusal(&w.label, pid, &e))),
        }
    }
    live.retain(|t| !gone.contains(t));
    Ok(counters)
}

/// `ESRCH` (no such process) on Linux.
const fn libc_esrch() -> i32 {
    3
}

/// One line saying why `perf_event_open` said no, and what would make it say yes.
fn refusal(label: &str, pid: u32, e: &io::Error) -> String {
    let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    match e.raw_os_error() {
        Some(1 | 13) => format!(
            "perf_event_open({label}) on process {pid} refused ({e}): counting kernel events \
             needs root or CAP_PERFMON (kernel.perf_event_paranoid is {paranoid}; -1 allows \
             any user), and ptrace access to the process"
        ),
        Some(24) => format!("perf_event_open({label}): out of descriptors ({e})"),
        _ => format!("perf_event_open({label}) on process {pid} failed: {e}"),
    }
}

/// "no such tracepoint" for a missing id file, else the error.
fn missing(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::NotFound {
        "no such tracepoint in this kernel".into()
    } else {
        e.to_string()
    }
}

/// The tracefs root whose ids this process can read.
fn tracefs() -> Result<PathBuf, Refused> {
    let mut why = Vec::new();
    for root in TRACEFS {
        let root = PathBuf::from(root);
        match tracepoint_id(&root, "raw_syscalls", "sys_enter") {
            Ok(_) => return Ok(root),
            Err(e) => why.push(format!("{}: {e}", root.display())),
        }
    }
    Err(Refused(format!(
        "cannot read tracepoint ids ({}): needs root or CAP_PERFMON with read access to tracefs, \
         mounted (mount -t tracefs nodev /sys/kernel/tracing)",
        why.join("; ")
    )))
}

fn tracepoint_id(tracefs: &Path, group: &str, name: &str) -> io::Result<u64> {
    let path = tracefs.join("events").join(group).join(name).join("id");
    std::fs::read_to_string(&path)?.trim().parse().map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

/// The thread ids of `pid`, sorted.
fn threads_of(pid: u32) -> io::Result<Vec<u32>> {
    let mut tids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    Ok(tids)
}

/// How many descriptors a probe may open: a quarter of what the open-file limit leaves (the
/// rest is the generator's connections, which open after the probe), at most [`MAX_FDS`].
fn fd_budget() -> usize {
    let limit = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(1_024);
    let open = std::fs::read_dir("/proc/self/fd").map_or(64, Iterator::count) as u64;
    (usize::try_from(limit.saturating_sub(open) / 4).unwrap_or(usize::MAX)).min(MAX_FDS)
}

/// (voluntary, involuntary) context switches of each thread of `pid`, from procfs.
fn switches(pid: u32) -> io::Result<BTreeMap<u32, (u64, u64)>> {
    let mut out = BTreeMap::new();
    for tid in threads_of(pid)? {
        // A thread may end between the listing and the read: it is left out.
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")) else {
            continue;
        };
        if let Some(v) = parse_switches(&status) {
            out.insert(tid, v);
        }
    }
    Ok(out)
}

/// `voluntary_ctxt_switches` and `nonvoluntary_ctxt_switches` of one status file.
fn parse_switches(status: &str) -> Option<(u64, u64)> {
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse::<u64>().ok())
    };
    Some((
        field("voluntary_ctxt_switches:")?,
        field("nonvoluntary_ctxt_switches:")?,
    ))
}

/// Switches in the window: for threads present at both edges the difference, for threads new
/// at the end all of theirs (they began inside the window, give or take their start-up).
/// `None` when a thread present at the opening was gone at the close: its switches are lost
/// with it (procfs keeps no total of ended threads), and a split missing them would mislead
/// (a `blocking` server's threads end with their connections, before the window's close is
/// read).
fn switch_delta(
    start: &BTreeMap<u32, (u64, u64)>,
    end: &BTreeMap<u32, (u64, u64)>,
) -> Option<(u64, u64)> {
    if start.keys().any(|t| !end.contains_key(t)) {
        return None;
    }
    Some(end.iter().fold((0, 0), |(v, i), (tid, (ev, ei))| {
        let (sv, si) = start.get(tid).copied().unwrap_or((0, 0));
        (v + ev.saturating_sub(sv), i + ei.saturating_sub(si))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_parse_from_a_status_file() {
        let s = "Name:\tx\nvoluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(parse_switches(s), Some((12, 3)));
        assert_eq!(parse_switches("Name:\tx\n"), None);
    }

    #[test]
    fn switch_delta_takes_differences_and_new_threads_whole() {
        let a = BTreeMap::from([(1, (10, 1)), (2, (5, 5))]);
        let b = BTreeMap::from([(1, (15, 2)), (2, (5, 6)), (3, (4, 0))]);
        // Thread 3 is new: all of it.
        assert_eq!(switch_delta(&a, &b), Some((5 + 4, 1 + 1)));
        // Thread 2 ended: its switches are lost, so no split at all.
        let b = BTreeMap::from([(1, (15, 2)), (3, (4, 0))]);
        assert_eq!(switch_delta(&a, &b), None);
    }

    #[test]
    fn a_missing_process_is_refused_with_its_pid() {
        // PIDs are below 2^22 on Linux.
        let Err(Refused(why)) = Probe::attach(u32::MAX - 1) else {
            panic!("attached to a process that cannot exist");
        };
        assert!(why.contains(&(u32::MAX - 1).to_string()), "{why}");
    }
}

/// Counts of a real process, which needs the privilege: refused here, each test says so and
/// returns (the refusal itself is tested by `tests/cli_explain.rs` as an unprivileged user).
#[cfg(test)]
mod counting {
    use std::io::Write;
    use std::process::{Command, Stdio};

    use super::*;

    /// `dd bs=1 count=N` makes exactly N `read`s and N `write`s once it runs; the shell waits
    /// on stdin until the counters are on, then `exec`s it (same process, same counters).
    #[test]
    fn a_child_doing_n_reads_and_writes_is_counted_at_least_n_and_close() {
        const N: u64 = 5_000;
        let mut child = Command::new("sh")
            .args([
                "-c",
                &format!("read x; exec dd if=/dev/zero of=/dev/null bs=1 count={N} status=none"),
            ])
            .stdin(Stdio::piped())
            .spawn()
            .expect("sh");
        let mut probe = match Probe::attach(child.id()) {
            Ok(p) => p,
            Err(Refused(why)) => {
                let _ = child.kill();
                let _ = child.wait();
                eprintln!("skipped (kernel counts refused here): {why}");
                return;
            }
        };
        probe.start().unwrap();
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let status = child.wait().unwrap();
        assert!(status.success());
        let c = probe.stop().unwrap();
        let read = c.by_name["read"];
        let write = c.by_name["write"];
        // dd's own start-up reads a few files (ld.so, locale) and the shell read its line.
        assert!((N..N + 200).contains(&read), "read {read}");
        assert!((N..N + 50).contains(&write), "write {write}");
        assert!(
            (2 * N..2 * N + 1_000).contains(&c.syscalls),
            "syscalls {}",
            c.syscalls
        );
        assert_eq!(c.threads, 1);
        assert!(probe.unavailable().is_empty(), "{:?}", probe.unavailable());
    }

    /// Past the descriptor budget whole events are left out and listed, never opened on some
    /// threads only; a budget too small for the core events refuses the probe.
    #[test]
    fn the_descriptor_budget_drops_whole_events_and_names_them() {
        let threads = threads_of(std::process::id()).unwrap().len();
        // The four core events, plus one more, on every thread (threads may come and go in a
        // test process, so leave room for a few).
        let probe = match Probe::attach_within(std::process::id(), 5 * threads + 2) {
            Ok(p) => p,
            Err(Refused(why)) => {
                eprintln!("skipped (kernel counts refused here): {why}");
                return;
            }
        };
        let held: usize = probe.opened.iter().map(|o| o.counters.len()).sum();
        assert!(held <= 5 * threads + 2, "{held} descriptors held");
        for o in &probe.opened {
            assert!(
                o.counters.len() >= threads.saturating_sub(2),
                "an event on some threads only"
            );
        }
        let over: Vec<_> = probe
            .unavailable()
            .into_iter()
            .filter(|u| u.contains("descriptor budget"))
            .collect();
        assert!(over.len() >= BY_NAME.len(), "{over:?}");
        assert!(
            over.iter()
                .any(|u| u.starts_with("syscalls:sys_enter_read:")),
            "{over:?}"
        );
        let Err(Refused(why)) = Probe::attach_within(std::process::id(), 1) else {
            panic!("attached within one descriptor");
        };
        assert!(
            why.contains("raw_syscalls:sys_enter") && why.contains("budget"),
            "{why}"
        );
    }

    /// Threads created after the probe attached are counted through `inherit`.
    #[test]
    fn threads_created_after_attach_are_counted() {
        let mut probe = match Probe::attach(std::process::id()) {
            Ok(p) => p,
            Err(Refused(why)) => {
                eprintln!("skipped (kernel counts refused here): {why}");
                return;
            }
        };
        probe.start().unwrap();
        const N: u64 = 3_000;
        std::thread::spawn(|| {
            for _ in 0..N {
                std::thread::yield_now();
            }
        })
        .join()
        .unwrap();
        let c = probe.stop().unwrap();
        let y = c.by_name["sched_yield"];
        assert!((N..N + 100).contains(&y), "sched_yield {y}");
    }
}
