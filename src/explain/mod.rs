//! Why a model costs what it costs: kernel counts per request (a result's `explain`).
//!
//! Over exactly the measured window, for the server process and for the generator's own
//! process, this counts from kernel tracepoints and software events (Linux `perf_event_open`,
//! through `perf-event2`'s safe API): every system call (`raw_syscalls:sys_enter`), the calls
//! an I/O model is made of one by one (`syscalls:sys_enter_<name>` for [`BY_NAME`]), context
//! switches, the scheduler wake-ups the process performs, and io_uring's own work. Each count is
//! divided by the requests completed in the window ([`Explain::new`]).
//!
//! How it attaches: at [`Probe::attach`] every thread listed in `/proc/PID/task` gets one
//! disabled counter per event, with `inherit` set, so threads those threads create later (a
//! `blocking` server's thread per connection, the generator's workers) are counted too, by the
//! kernel, without a descriptor each. [`Probe::start`] enables them at the window's opening,
//! [`Probe::stop`] disables and reads them at its close. Threads that ended before the read
//! still count (the kernel folds an inherited counter into its parent when the thread exits).
//! Missed: a thread created between the listing and its counter (a race of microseconds), and
//! descendants of threads that had no counter because the descriptor budget ran out (then the
//! event is listed as unavailable rather than counted on some threads only).
//!
//! Deliberately not here: where the window's edges are (the caller's hook), formatting
//! (`export/`), and privileges (a refusal is a value, never a failure).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as imp;
#[cfg(not(target_os = "linux"))]
mod other;
#[cfg(not(target_os = "linux"))]
use other as imp;

/// The system calls counted one by one (`syscalls:sys_enter_<name>`): what the I/O models and
/// the generator are made of (reads and writes in every form, every way to wait, accept and
/// close, io_uring's one call, and the calls a thread makes when it parks or yields). Calls not
/// listed are in the total (`syscalls_per_request`) only.
pub const BY_NAME: &[&str] = &[
    "read",
    "write",
    "readv",
    "writev",
    "recvfrom",
    "sendto",
    "recvmsg",
    "sendmsg",
    "recvmmsg",
    "sendmmsg",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_ctl",
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "accept",
    "accept4",
    "io_uring_enter",
    "futex",
    "sched_yield",
    "nanosleep",
    "clock_nanosleep",
    "close",
    "shutdown",
    "ioctl",
];

/// Raw counts of one process over one window, summed over its threads.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// System calls entered (`raw_syscalls:sys_enter`).
    pub syscalls: u64,
    /// Times a thread of the process was switched out (software event `context-switches`, the
    /// one `perf stat -e cs` counts).
    pub context_switches: u64,
    /// Of those, switches where the thread gave up the CPU to wait (`voluntary_ctxt_switches`
    /// of `/proc/PID/task/TID/status`, threads present at both edges plus threads new at the
    /// close); `None` when procfs could not be read or a thread ended inside the window (its
    /// switches are gone with it).
    pub voluntary_context_switches: Option<u64>,
    /// Switches where it was preempted (`nonvoluntary_ctxt_switches`, same threads).
    pub involuntary_context_switches: Option<u64>,
    /// Wake-ups the process's threads performed (`sched:sched_waking` + `sched:sched_wakeup_new`
    /// fired while one of its threads was on the CPU: a task, possibly of another process, made
    /// runnable by this process's work, including softirq work done in its context such as the
    /// loopback delivery of a send).
    pub wakeups: u64,
    /// Entries of each call of [`BY_NAME`] that could be counted.
    pub by_name: BTreeMap<String, u64>,
    /// io_uring's own events, when they could be counted.
    pub io_uring: Option<IoUringCounts>,
    /// Threads given a counter at attach (descendants created later are counted through them).
    pub threads: usize,
}

/// io_uring tracepoint counts (`io_uring:<name>`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IoUringCounts {
    /// `io_uring_submit_req`: requests (SQEs) submitted.
    pub submit_req: u64,
    /// `io_uring_task_work_run`: runs of io_uring task work (completions finished in the
    /// submitting thread's context).
    pub task_work_run: u64,
    /// `io_uring_queue_async_work`: requests punted to the io-wq worker pool.
    pub queue_async_work: u64,
    /// `io_uring_poll_arm`: internal polls armed for a request that had to wait.
    pub poll_arm: u64,
    /// `io_uring_local_work_run`: runs of deferred task work (`IORING_SETUP_DEFER_TASKRUN`
    /// rings run it here, inside `io_uring_enter`, instead of as `task_work_run`).
    #[serde(default)]
    pub local_work_run: u64,
}

/// [`IoUringCounts`] per request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IoUringPerRequest {
    pub submit_req: f64,
    pub task_work_run: f64,
    pub queue_async_work: f64,
    pub poll_arm: f64,
    #[serde(default)]
    pub local_work_run: f64,
}

/// One process's share of a request: its [`Counts`] divided by the requests of the window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Side {
    /// The process counted.
    pub pid: u32,
    /// Threads given a counter at attach (see [`Counts::threads`]).
    pub threads: usize,
    /// Every system call.
    pub syscalls_per_request: f64,
    /// Every context switch (voluntary + involuntary).
    pub context_switches_per_request: f64,
    /// Switches to wait (null if procfs was unreadable or a thread ended in the window).
    pub voluntary_context_switches_per_request: Option<f64>,
    /// Preemptions (null like the voluntary figure).
    pub involuntary_context_switches_per_request: Option<f64>,
    /// Wake-ups this process performed ([`Counts::wakeups`]).
    pub wakeups_per_request: f64,
    /// Calls of [`BY_NAME`] per request; calls counted zero times are left out.
    pub by_name: BTreeMap<String, f64>,
    /// io_uring events per request; null when the process did no io_uring work in the window
    /// (all four zero) or the events could not be opened (then listed in `unavailable`).
    pub io_uring: Option<IoUringPerRequest>,
    /// The raw counts the figures above were divided from.
    pub totals: Counts,
}

/// A result's `explain`: the kernel's view of one window, per request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Explain {
    /// Seconds between enabling and disabling the counters (≈ the result's `duration_s`).
    pub window_s: f64,
    /// Requests completed in the window (the result's `requests`): the divisor.
    pub requests: u64,
    /// The server process; null when not asked (`load --explain` without `--pid`).
    pub server: Option<Side>,
    /// The generator's own process.
    pub client: Option<Side>,
    /// Events that could not be counted, each `"group:event: why"` (a tracepoint this kernel
    /// lacks, the descriptor budget); the figures above exclude them.
    pub unavailable: Vec<String>,
}

/// `count / requests`, 0 when nothing completed (a figure per request of no request is none).
pub fn per_request(count: u64, requests: u64) -> f64 {
    if requests == 0 {
        0.0
    } else {
        count as f64 / requests as f64
    }
}

impl Side {
    /// `counts` of process `pid` divided by `requests`.
    pub fn new(pid: u32, counts: Counts, requests: u64) -> Self {
        let pr = |c| per_request(c, requests);
        let io_uring = counts
            .io_uring
            .filter(|u| {
                u.submit_req + u.task_work_run + u.queue_async_work + u.poll_arm + u.local_work_run
                    > 0
            })
            .map(|u| IoUringPerRequest {
                submit_req: pr(u.submit_req),
                task_work_run: pr(u.task_work_run),
                queue_async_work: pr(u.queue_async_work),
                poll_arm: pr(u.poll_arm),
                local_work_run: pr(u.local_work_run),
            });
        Self {
            pid,
            threads: counts.threads,
            syscalls_per_request: pr(counts.syscalls),
            context_switches_per_request: pr(counts.context_switches),
            voluntary_context_switches_per_request: counts.voluntary_context_switches.map(pr),
            involuntary_context_switches_per_request: counts.involuntary_context_switches.map(pr),
            wakeups_per_request: pr(counts.wakeups),
            by_name: counts
                .by_name
                .iter()
                .filter(|(_, c)| **c > 0)
                .map(|(n, c)| (n.clone(), pr(*c)))
                .collect(),
            io_uring,
            totals: counts,
        }
    }

    /// The calls of `by_name`, most frequent first (ties by name), at most `n`.
    pub fn top_calls(&self, n: usize) -> Vec<(&str, f64)> {
        let mut v: Vec<(&str, f64)> = self.by_name.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        v.truncate(n);
        v
    }

    /// System calls per request not in `by_name` (the total minus the named ones; never
    /// negative, though a call entered between two counters' reads could make it so).
    pub fn other_calls_per_request(&self) -> f64 {
        (self.syscalls_per_request - self.by_name.values().sum::<f64>()).max(0.0)
    }
}

/// Why no counts: the kernel refused, or this OS has no such counters.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Why this OS has no kernel counts at all (`None` on Linux, where the kernel may still refuse
/// a probe): `run` then skips its explain pass, which could only measure every point again to
/// record nothing.
pub fn unsupported_here() -> Option<String> {
    imp::unsupported_here()
}

/// Whether `pid` names a process this user can see (`load --pid`'s check, before connecting);
/// off Linux always `Ok` (the probe itself is refused there, with the reason).
pub fn check_pid(pid: u32) -> Result<(), String> {
    imp::check_pid(pid)
}

/// Counters attached to one process's threads; see the module doc.
pub struct Probe {
    pid: u32,
    inner: imp::Probe,
}

impl Probe {
    /// Attach disabled counters to every current thread of `pid` (this process:
    /// [`std::process::id`]). `Err` when the kernel refuses (no privilege:
    /// `kernel.perf_event_paranoid`, not root or `CAP_PERFMON`; no tracefs) or off Linux.
    pub fn attach(pid: u32) -> Result<Self, Refused> {
        Ok(Self {
            pid,
            inner: imp::Probe::attach(pid)?,
        })
    }

    /// The process attached to.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Events that could not be opened, `"group:event: why"`.
    pub fn unavailable(&self) -> Vec<String> {
        self.inner.unavailable()
    }

    /// Open the window: enable every counter (they count from zero).
    pub fn start(&mut self) -> Result<(), Refused> {
        self.inner.start()
    }

    /// Close the window: disable every counter and read the totals.
    pub fn stop(&mut self) -> Result<Counts, Refused> {
        self.inner.stop()
    }
}

/// A server probe (optional) and the generator's own, opened and closed together: what `run`
/// and `load --explain` drive from the generator's window hook.
pub struct Session {
    server: Option<Result<Probe, Refused>>,
    client: Result<Probe, Refused>,
    started: Option<std::time::Instant>,
    window_s: f64,
    server_counts: Option<Result<Counts, Refused>>,
    client_counts: Option<Result<Counts, Refused>>,
}

impl Session {
    /// Attach to `server` (if given) and to this process. Attach before the generator starts,
    /// so its workers inherit the counters.
    pub fn attach(server: Option<u32>) -> Self {
        Self {
            server: server.map(Probe::attach),
            client: Probe::attach(std::process::id()),
            started: None,
            window_s: 0.0,
            server_counts: None,
            client_counts: None,
        }
    }

    /// The window opens: the server's counters first, then the generator's (so the enabling of
    /// the server's is not counted as the generator's work).
    pub fn start(&mut self) {
        if let Some(Ok(p)) = &mut self.server
            && let Err(e) = p.start()
        {
            self.server = Some(Err(e));
        }
        if let Ok(p) = &mut self.client
            && let Err(e) = p.start()
        {
            self.client = Err(e);
        }
        self.started = Some(std::time::Instant::now());
    }

    /// The window closes: the generator's counters first, then the server's.
    pub fn stop(&mut self) {
        if let Some(t) = self.started {
            self.window_s = t.elapsed().as_secs_f64();
        }
        let Some(_) = self.started else {
            return;
        };
        self.client_counts = Some(match &mut self.client {
            Ok(p) => p.stop(),
            Err(e) => Err(e.clone()),
        });
        self.server_counts = self.server.as_mut().map(|s| match s {
            Ok(p) => p.stop(),
            Err(e) => Err(e.clone()),
        });
    }

    /// The `explain` of a window that completed `requests`, or why there is none (for the
    /// result's `warnings`).
    pub fn finish(self, requests: u64) -> Result<Explain, Refused> {
        let client_counts = match self.client_counts {
            Some(c) => c?,
            None => {
                // Never started or stopped: the run ended before its window (or it was refused).
                self.client?;
                return Err(Refused("the measured window never opened".into()));
            }
        };
        let server = match self.server_counts {
            Some(c) => Some(c?),
            None => None,
        };
        let mut unavailable = BTreeMap::<String, Vec<&str>>::new();
        if let Some(Ok(p)) = &self.server {
            for u in p.unavailable() {
                unavailable.entry(u).or_default().push("server");
            }
        }
        if let Ok(p) = &self.client {
            for u in p.unavailable() {
                unavailable.entry(u).or_default().push("client");
            }
        }
        let server_pid = self
            .server
            .as_ref()
            .and_then(|s| s.as_ref().ok())
            .map(Probe::pid);
        let client_pid = self.client.as_ref().map(Probe::pid).unwrap_or_default();
        Ok(Explain {
            window_s: self.window_s,
            requests,
            server: server.map(|c| Side::new(server_pid.unwrap_or_default(), c, requests)),
            client: Some(Side::new(client_pid, client_counts, requests)),
            unavailable: merge_unavailable(unavailable, self.server.is_some()),
        })
    }
}

/// `"event: why"` once, with ` (server only)` / ` (client only)` when only one side lacked it.
fn merge_unavailable(by_event: BTreeMap<String, Vec<&str>>, two_sides: bool) -> Vec<String> {
    by_event
        .into_iter()
        .map(|(event, sides)| {
            if two_sides && sides.len() == 1 {
                format!("{event} ({} only)", sides[0])
            } else {
                event
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts() -> Counts {
        Counts {
            syscalls: 2_100,
            context_switches: 30,
            voluntary_context_switches: Some(20),
            involuntary_context_switches: Some(10),
            wakeups: 1_000,
            by_name: BTreeMap::from([
                ("recvfrom".to_owned(), 950),
                ("sendto".to_owned(), 950),
                ("epoll_wait".to_owned(), 190),
                ("futex".to_owned(), 0),
            ]),
            io_uring: Some(IoUringCounts::default()),
            threads: 2,
        }
    }

    #[test]
    fn per_request_divides_and_zero_requests_give_zero() {
        assert_eq!(per_request(2_100, 1_000), 2.1);
        assert_eq!(per_request(5, 0), 0.0);
    }

    #[test]
    fn a_side_divides_every_count_and_drops_zero_calls_and_idle_io_uring() {
        let s = Side::new(7, counts(), 1_000);
        assert_eq!(s.pid, 7);
        assert_eq!(s.threads, 2);
        assert_eq!(s.syscalls_per_request, 2.1);
        assert_eq!(s.context_switches_per_request, 0.03);
        assert_eq!(s.voluntary_context_switches_per_request, Some(0.02));
        assert_eq!(s.involuntary_context_switches_per_request, Some(0.01));
        assert_eq!(s.wakeups_per_request, 1.0);
        assert_eq!(s.by_name.len(), 3, "futex counted zero times is left out");
        assert_eq!(s.by_name["recvfrom"], 0.95);
        assert_eq!(s.io_uring, None, "no io_uring work: null, not zeros");
        assert_eq!(s.totals.syscalls, 2_100);
        assert!((s.other_calls_per_request() - 0.01).abs() < 1e-9);
        assert_eq!(
            s.top_calls(2),
            vec![("recvfrom", 0.95), ("sendto", 0.95)],
            "ties by name"
        );
    }

    #[test]
    fn io_uring_work_is_divided_too() {
        let mut c = counts();
        c.io_uring = Some(IoUringCounts {
            submit_req: 2_000,
            task_work_run: 1_000,
            queue_async_work: 0,
            poll_arm: 500,
            local_work_run: 0,
        });
        let u = Side::new(1, c, 1_000).io_uring.unwrap();
        assert_eq!((u.submit_req, u.task_work_run), (2.0, 1.0));
        assert_eq!((u.queue_async_work, u.poll_arm), (0.0, 0.5));
    }

    #[test]
    fn other_calls_never_go_negative() {
        let mut c = counts();
        c.syscalls = 1_000;
        assert_eq!(Side::new(1, c, 1_000).other_calls_per_request(), 0.0);
    }

    #[test]
    fn unavailable_names_the_side_only_when_one_side_lacked_it() {
        let m = BTreeMap::from([
            ("a: x".to_owned(), vec!["server", "client"]),
            ("b: y".to_owned(), vec!["server"]),
        ]);
        assert_eq!(
            merge_unavailable(m.clone(), true),
            vec!["a: x".to_owned(), "b: y (server only)".to_owned()]
        );
        assert_eq!(merge_unavailable(m, false), vec!["a: x", "b: y"]);
    }

    #[test]
    fn a_session_refused_everywhere_finishes_with_the_reason() {
        let s = Session {
            server: Some(Err(Refused("no privilege".into()))),
            client: Err(Refused("no privilege".into())),
            started: None,
            window_s: 0.0,
            server_counts: None,
            client_counts: None,
        };
        assert_eq!(s.finish(10), Err(Refused("no privilege".into())));
    }

    #[test]
    fn the_json_shape_has_the_documented_keys() {
        let e = Explain {
            window_s: 3.0,
            requests: 1_000,
            server: Some(Side::new(1, counts(), 1_000)),
            client: None,
            unavailable: vec![],
        };
        let v = serde_json::to_value(&e).unwrap();
        for k in ["window_s", "requests", "server", "client", "unavailable"] {
            assert!(v.get(k).is_some(), "{k}");
        }
        let s = &v["server"];
        for k in [
            "syscalls_per_request",
            "context_switches_per_request",
            "wakeups_per_request",
            "by_name",
            "io_uring",
        ] {
            assert!(s.get(k).is_some(), "{k}");
        }
        assert_eq!(serde_json::from_value::<Explain>(v).unwrap(), e);
    }
}
