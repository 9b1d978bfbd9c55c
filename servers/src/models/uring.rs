//! `uring`: the plain io_uring completion model. One-shot accept, receive and send, one ring per
//! loop, each connection owning its buffer.
//!
//! The loop's turn: push every submission the last completions asked for, then one
//! `io_uring_enter` that submits them all and waits for at least one completion
//! (`submit_and_wait(1)`), then reap every completion that is there, in a batch. The
//! bookkeeping of what a completion means and what comes next is `completion`'s (sans-IO,
//! shared with IOCP); this file is only what io_uring does: building the operations, tagging
//! them, and the ring's own cases (a full submission queue, accept errors, the wake-up, stop).
//!
//! `user_data` tags an operation without allocating: a connection's slab key shifted left by
//! two, with the operation (receive, send, shutdown) in the low two bits; a few values at the
//! top of the range are reserved for the loop's own operations (accept, the wake-up read, the
//! accept pause, cancellations).
//!
//! Stop: the stop waker writes the loop's eventfd, whose read is always in flight; the loop then
//! cancels every operation in flight (`IORING_OP_ASYNC_CANCEL`), reaps until each one has
//! completed, and only then drops the ring and, after it, the buffers and sockets.
//!
//! It deliberately does not use multishot operations, provided buffers or registered files: it
//! is the baseline the later io_uring variants are measured against. `SQPOLL` only when asked
//! (`--sqpoll`); [`build_ring`], shared with `uring-multishot`, sets up the ring as the
//! options ask and records what it got.
#![allow(unsafe_code)] // raw descriptors and operations whose memory the kernel uses: the FFI edge

mod bufring;
pub(crate) mod multishot;
pub(crate) mod udp;

use std::collections::VecDeque;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::OnceLock;

use io_uring::{IoUring, Probe, cqueue, opcode, squeue, types};

use crate::completion::{Conns, Draining, Lent, OpKind, Step, Submission};
use crate::ctx::Ctx;
use crate::listen::{ERROR_RUN, EXHAUSTED_PAUSE, Inbox, Incoming};
use crate::stats::LoopCounters;
use crate::sys::is_fd_exhaustion;

/// The one accept in flight (one-shot: resubmitted after each completion).
const ACCEPT: u64 = u64::MAX;
/// The read of the loop's eventfd (stop, hand-off), always in flight while the loop runs.
const WAKE: u64 = u64::MAX - 1;
/// The timeout that ends an accept pause.
const PAUSE: u64 = u64::MAX - 2;
/// Completions of `ASYNC_CANCEL` requests (nothing to do with them).
const CANCEL: u64 = u64::MAX - 3;
/// Below this, `user_data` is a connection operation.
const RESERVED: u64 = CANCEL;

/// `IORING_RECVSEND_POLL_FIRST` (linux/io_uring.h, in `sqe.ioprio`): wait for data before the
/// first receive attempt.
const RECVSEND_POLL_FIRST: u16 = 1;

/// Opcodes this model submits, with the names a user can look up.
const OPCODES: &[(u8, &str)] = &[
    (opcode::Accept::CODE, "IORING_OP_ACCEPT"),
    (opcode::Recv::CODE, "IORING_OP_RECV"),
    (opcode::Send::CODE, "IORING_OP_SEND"),
    (opcode::Shutdown::CODE, "IORING_OP_SHUTDOWN"),
    (opcode::Read::CODE, "IORING_OP_READ"),
    (opcode::Timeout::CODE, "IORING_OP_TIMEOUT"),
    (opcode::AsyncCancel::CODE, "IORING_OP_ASYNC_CANCEL"),
];

/// The tag of connection `key`'s `kind` operation.
fn tag(key: usize, kind: OpKind) -> u64 {
    ((key as u64) << 2) | kind.index()
}

/// The connection and operation a tag names (`None` for a reserved value).
fn untag(user_data: u64) -> Option<(usize, OpKind)> {
    if user_data >= RESERVED {
        return None;
    }
    let kind = OpKind::ALL[(user_data & 3) as usize % OpKind::ALL.len()];
    Some(((user_data >> 2) as usize, kind))
}

/// Whether io_uring runs here with every opcode this model needs; probed once per process.
pub(crate) fn availability() -> Result<(), String> {
    static PROBED: OnceLock<Result<(), String>> = OnceLock::new();
    PROBED.get_or_init(probe).clone()
}

/// The test hook that simulates a kernel without io_uring, or without one opcode: the
/// environment variable `IOMODELS_URING_PROBE` set to `ENOSYS`, `EPERM` or an opcode name of
/// [`OPCODES`] (`IORING_OP_SHUTDOWN`) makes both models' probes fail as such a kernel would, so
/// `models`, `serve`, `run` and the conformance suite can be checked on a kernel that has it
/// all. `NO_RECEIVE_LIMIT` instead simulates a kernel before 6.17, whose multishot receive has
/// no byte limit (`multishot::receive_limit`), and the names of [`udp::SIMULATED`] a kernel
/// whose io_uring lacks what UDP echo needs (the TCP loops still run). `None` when unset or
/// when only UDP's probe is simulated (the real probe runs).
pub(super) fn simulated_refusal() -> Option<Result<(), String>> {
    let what = std::env::var("IOMODELS_URING_PROBE").ok()?;
    Some(match what.as_str() {
        // Refusals of what only UDP or only the receive limit needs: the TCP loops run.
        "NO_RECEIVE_LIMIT" => return None,
        name if udp::simulated(name) => return None,
        "ENOSYS" => Err(setup_refused(&io::Error::from_raw_os_error(libc::ENOSYS))),
        "EPERM" => Err(setup_refused(&io::Error::from_raw_os_error(libc::EPERM))),
        name => match OPCODES.iter().find(|(_, n)| *n == name) {
            Some(&(missing, _)) => missing_opcode(|op| op != missing),
            None => Err(format!(
                "IOMODELS_URING_PROBE={name}: not ENOSYS, EPERM, NO_RECEIVE_LIMIT, {} or an opcode \
                 this model uses",
                udp::SIMULATED.join(", ")
            )),
        },
    })
}

fn probe() -> Result<(), String> {
    if let Some(simulated) = simulated_refusal() {
        return simulated;
    }
    probed_ring(OPCODES).map(drop)
}

/// A small ring on which every opcode of `needed` is supported (`IORING_REGISTER_PROBE`), for
/// the probes that go on to try more on it; else why not (setup refused, or the first opcode
/// missing, by name). Every availability probe of the io_uring models starts here.
fn probed_ring(needed: &[(u8, &str)]) -> Result<IoUring, String> {
    let ring = IoUring::new(8).map_err(|e| setup_refused(&e))?;
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| format!("io_uring: IORING_REGISTER_PROBE failed: {e}"))?;
    missing_of(needed, |op| probe.is_supported(op))?;
    Ok(ring)
}

/// Why `io_uring_setup` failed, in words a user can act on.
fn setup_refused(e: &io::Error) -> String {
    let why = match e.raw_os_error() {
        Some(libc::ENOSYS) => " (ENOSYS: this kernel has no io_uring)",
        Some(libc::EPERM) => {
            " (EPERM: disabled by the kernel.io_uring_disabled sysctl or a seccomp filter)"
        }
        Some(libc::ENOMEM) => " (ENOMEM: locked-memory limit too low for the ring)",
        _ => "",
    };
    format!("io_uring_setup failed: {e}{why}")
}

/// The first opcode this model needs that the kernel lacks, by name.
fn missing_opcode(supported: impl Fn(u8) -> bool) -> Result<(), String> {
    missing_of(OPCODES, supported)
}

/// The first opcode of `needed` that the kernel lacks, by name.
fn missing_of(needed: &[(u8, &str)], supported: impl Fn(u8) -> bool) -> Result<(), String> {
    match needed.iter().find(|(op, _)| !supported(*op)) {
        Some((_, name)) => Err(format!("io_uring: the kernel lacks {name}")),
        None => Ok(()),
    }
}

/// Runs one loop (one ring) until stop.
pub(crate) fn run(incoming: Incoming, ctx: &Ctx) -> io::Result<()> {
    let ring = build_ring(ctx, false)?;
    ctx.shared
        .setting("ring_entries", ring.params().sq_entries());
    ctx.shared.setting("cq_entries", ring.params().cq_entries());
    let wake = EventFd::new()?;
    ctx.stop.on_stop(wake.waker()?);
    let (listener, inbox) = match incoming {
        Incoming::Listener(l) => (Some(l), None),
        Incoming::Handoff(slot) => (None, Some(slot.install_inbox(wake.waker()?))),
    };
    let mut lp = Loop {
        ring,
        backlog: VecDeque::new(),
        conns: Conns::new(ctx.config.buffer_size),
        counters: ctx.shared.new_loop(),
        listener,
        inbox,
        wake,
        wake_buf: None,
        pause: Box::new(types::Timespec::from(EXHAUSTED_PAUSE)),
        accepting: false,
        pausing: false,
        accept_error_run: 0,
        cqes: Vec::new(),
    };
    lp.arm_wake();
    if lp.listener.is_some() {
        lp.arm_accept();
    }
    // Submitted before ready: once the loop says it accepts, its accept is in the kernel.
    lp.ring.submit()?;
    ctx.ready();
    let result = lp.serve(ctx);
    // Whatever ended the loop, nothing is freed while the kernel may still use it.
    lp.drain(ctx)?;
    result
}

/// A loop's ring as the options ask, with what was set up recorded in the settings
/// (`sqpoll`, and for `uring-multishot`, which passes `multishot`, `defer_taskrun`).
///
/// `--sqpoll`: a kernel thread polls the submission queue. When the process is confined to
/// some CPUs (`serve --cpus`), the thread is pinned to the first of them
/// (`IORING_SETUP_SQ_AFF`), since otherwise it may run on any CPU, including the load
/// generator's. SQPOLL excludes `DEFER_TASKRUN` (the kernel refuses the pair).
/// `multishot`: `SINGLE_ISSUER | DEFER_TASKRUN` unless `--no-defer-taskrun`, or a plain ring
/// when the kernel refuses them.
pub(super) fn build_ring(ctx: &Ctx, multishot: bool) -> io::Result<IoUring> {
    let opts = &ctx.config.uring;
    let entries = opts.ring_entries;
    if let Some(idle) = opts.sqpoll_idle_ms {
        let mut builder = IoUring::builder();
        builder.setup_sqpoll(idle);
        let cpu = confined_cpu();
        if let Some(cpu) = cpu {
            builder.setup_sqpoll_cpu(cpu);
        }
        let ring = builder.build(entries)?;
        ctx.shared.setting("sqpoll", format!("{idle} ms idle"));
        ctx.shared.setting(
            "sqpoll_cpu",
            cpu.map_or("any".to_string(), |c| c.to_string()),
        );
        if multishot {
            ctx.shared
                .setting("defer_taskrun", "false (--sqpoll: the kernel refuses both)");
        }
        return Ok(ring);
    }
    ctx.shared.setting("sqpoll", "off");
    if !multishot {
        return IoUring::new(entries);
    }
    if !opts.defer_taskrun {
        ctx.shared
            .setting("defer_taskrun", "false (--no-defer-taskrun)");
        return IoUring::new(entries);
    }
    let mut builder = IoUring::builder();
    builder.setup_single_issuer().setup_defer_taskrun();
    if ctx.config.busy_poll {
        // The kernel flags the SQ ring when deferred task work is waiting, so a busy-polling
        // loop enters the kernel only when there is something to run or submit.
        builder.setup_taskrun_flag();
    }
    match builder.build(entries) {
        Ok(ring) => {
            ctx.shared.setting("defer_taskrun", true);
            Ok(ring)
        }
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            ctx.shared
                .setting("defer_taskrun", "false (kernel refused: EINVAL)");
            IoUring::new(entries)
        }
        Err(e) => Err(e),
    }
}

/// The first CPU this thread may run on, if it may not run on every online CPU.
fn confined_cpu() -> Option<u32> {
    use nix::sched::{CpuSet, sched_getaffinity};
    let allowed = sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok()?;
    let cpus: Vec<usize> = (0..CpuSet::count())
        .filter(|&c| allowed.is_set(c).unwrap_or(false))
        .collect();
    // SAFETY: sysconf takes a plain value and touches no memory of ours.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    (online > 0 && cpus.len() < online as usize)
        .then(|| cpus.first().map(|&c| c as u32))
        .flatten()
}

/// One loop's ring and everything its operations use.
struct Loop {
    ring: IoUring,
    /// Submissions that did not fit in the submission queue even after a submit.
    backlog: VecDeque<squeue::Entry>,
    conns: Conns<TcpStream>,
    counters: std::sync::Arc<LoopCounters>,
    listener: Option<TcpListener>,
    inbox: Option<Inbox>,
    wake: EventFd,
    /// The eventfd read's 8 bytes, lent while the read is in flight.
    wake_buf: Option<Lent>,
    /// The accept pause, read by the kernel when the timeout is submitted.
    pause: Box<types::Timespec>,
    accepting: bool,
    pausing: bool,
    /// Accept errors in a row that were not fd exhaustion.
    accept_error_run: usize,
    /// One turn's completions: `(user_data, result)`.
    cqes: Vec<(u64, i32)>,
}

impl Loop {
    /// Turns until stop: submit and wait, reap a batch, handle it.
    fn serve(&mut self, ctx: &Ctx) -> io::Result<()> {
        while !ctx.stop.is_stopped() {
            if ctx.config.busy_poll {
                poll_once(&mut self.ring, &mut self.backlog)?;
            } else {
                self.enter(1)?;
            }
            self.reap();
            for i in 0..self.cqes.len() {
                let (user_data, res) = self.cqes[i];
                self.handle(user_data, res, ctx);
            }
        }
        Ok(())
    }

    /// Pushes the backlog, then submits everything and waits for `want` completions.
    fn enter(&mut self, want: usize) -> io::Result<()> {
        enter(&mut self.ring, &mut self.backlog, want)
    }

    /// Moves every completion there is into `cqes`.
    fn reap(&mut self) {
        self.cqes.clear();
        self.cqes.extend(
            self.ring
                .completion()
                .map(|c: cqueue::Entry| (c.user_data(), c.result())),
        );
    }

    /// Queues one operation; when the submission queue is full, submits what it holds first,
    /// and if the kernel takes none (its completion queue overflowing) keeps the entry for the
    /// next turn instead of spinning.
    ///
    /// Every caller passes an entry whose memory stays valid until its completion: a
    /// connection's buffer held by `completion` (lent, leaked if dropped early), the wake-up
    /// buffer (lent), the boxed timespec (read at submission) or no memory at all.
    fn push(&mut self, entry: squeue::Entry) {
        // SAFETY: the entry's memory outlives the operation (see above).
        unsafe { queue(&mut self.ring, &mut self.backlog, entry) }
    }

    fn arm_accept(&mut self) {
        let Some(l) = &self.listener else { return };
        let entry = opcode::Accept::new(
            types::Fd(l.as_raw_fd()),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
        .flags(libc::SOCK_CLOEXEC)
        .build()
        .user_data(ACCEPT);
        self.accepting = true;
        self.push(entry);
    }

    fn arm_wake(&mut self) {
        let mut lent = Lent::new(vec![0u8; 8].into_boxed_slice());
        let (ptr, len) = lent.raw();
        self.wake_buf = Some(lent);
        let entry = opcode::Read::new(types::Fd(self.wake.0.as_raw_fd()), ptr, len as u32)
            .build()
            .user_data(WAKE);
        self.push(entry);
    }

    /// Submits what `completion` asked for.
    fn submit(&mut self, sub: Submission) {
        let Some(fd) = self.conns.fd(sub.key).map(|s| types::Fd(s.as_raw_fd())) else {
            return;
        };
        let len = sub.len.min(u32::MAX as usize) as u32;
        let entry = match sub.kind {
            OpKind::Recv if sub.likely_empty => opcode::Recv::new(fd, sub.ptr, len)
                .ioprio(RECVSEND_POLL_FIRST)
                .build(),
            OpKind::Recv => opcode::Recv::new(fd, sub.ptr, len).build(),
            OpKind::Send => opcode::Send::new(fd, sub.ptr, len)
                .flags(libc::MSG_NOSIGNAL)
                .build(),
            OpKind::Shutdown => opcode::Shutdown::new(fd, libc::SHUT_WR).build(),
        };
        self.push(entry.user_data(tag(sub.key, sub.kind)));
    }

    fn handle(&mut self, user_data: u64, res: i32, ctx: &Ctx) {
        match user_data {
            WAKE => {
                if let Some(lent) = self.wake_buf.take() {
                    drop(lent.give_back());
                }
                if ctx.stop.is_stopped() {
                    return;
                }
                for stream in self.inbox.iter().flat_map(|i| i.take()).collect::<Vec<_>>() {
                    self.open(stream, ctx);
                }
                self.arm_wake();
            }
            ACCEPT => {
                self.accepting = false;
                if res >= 0 {
                    // SAFETY: a successful accept returns a new descriptor that nothing else owns.
                    let stream = TcpStream::from(unsafe { OwnedFd::from_raw_fd(res) });
                    if ctx.stop.is_stopped() {
                        return; // dropped (closed): the server is going away
                    }
                    self.accept_error_run = 0;
                    self.open(stream, ctx);
                    self.arm_accept();
                    return;
                }
                if ctx.stop.is_stopped() {
                    return;
                }
                let e = io::Error::from_raw_os_error(-res);
                ctx.shared.accept_error();
                self.accept_error_run += 1;
                if is_fd_exhaustion(&e) || self.accept_error_run >= ERROR_RUN {
                    log::warn!("accept: {e}; pausing accepts for {EXHAUSTED_PAUSE:?}");
                    self.accept_error_run = 0;
                    self.pausing = true;
                    let entry = opcode::Timeout::new(&*self.pause).build().user_data(PAUSE);
                    self.push(entry);
                } else {
                    log::debug!("accept: {e} (counted, still accepting)");
                    self.arm_accept();
                }
            }
            PAUSE => {
                self.pausing = false;
                if !ctx.stop.is_stopped() {
                    self.arm_accept();
                }
            }
            CANCEL => {}
            _ => {
                let Some((key, kind)) = untag(user_data) else {
                    return;
                };
                let result = if res < 0 {
                    Err(io::Error::from_raw_os_error(-res))
                } else {
                    Ok(res as usize)
                };
                if let Some(Step::Submit(sub)) =
                    self.conns
                        .complete(key, kind, result, &self.counters, &ctx.shared)
                {
                    self.submit(sub);
                }
            }
        }
    }

    /// Adopts an accepted (or handed-off) socket and submits its first receive.
    fn open(&mut self, stream: TcpStream, ctx: &Ctx) {
        let _ = stream.set_nodelay(true);
        let sub = self.conns.open(stream, &ctx.shared);
        self.submit(sub);
    }

    /// Stop: cancel every operation in flight, reap until each has completed, then close the
    /// ring, then free the buffers and close the sockets, in that order.
    fn drain(mut self, ctx: &Ctx) -> io::Result<()> {
        let conns = std::mem::replace(&mut self.conns, Conns::new(0));
        let mut draining = conns.stop();
        let mut cancels: Vec<u64> = draining.in_flight().map(|(k, op)| tag(k, op)).collect();
        cancels.extend(
            [
                (self.accepting, ACCEPT),
                (self.pausing, PAUSE),
                (self.wake_buf.is_some(), WAKE),
            ]
            .into_iter()
            .filter_map(|(in_flight, user_data)| in_flight.then_some(user_data)),
        );
        for user_data in cancels {
            self.push(
                opcode::AsyncCancel::new(user_data)
                    .build()
                    .user_data(CANCEL),
            );
        }
        let drained = loop {
            if !self.accepting && !self.pausing && self.wake_buf.is_none() {
                match draining.finish() {
                    Ok(drained) => break drained,
                    Err(still) => draining = still,
                }
            }
            self.enter(1)?;
            self.reap();
            for i in 0..self.cqes.len() {
                let (user_data, res) = self.cqes[i];
                self.handle_draining(&mut draining, user_data, res);
            }
        };
        let Loop { ring, counters, .. } = self;
        drop(ring);
        drained.close(&counters, &ctx.shared);
        Ok(())
    }

    /// A completion while draining: connection operations go back to `draining`; the loop's
    /// own operations are marked done; an accepted socket is closed unserved.
    fn handle_draining(&mut self, draining: &mut Draining<TcpStream>, user_data: u64, res: i32) {
        match user_data {
            WAKE => {
                if let Some(lent) = self.wake_buf.take() {
                    drop(lent.give_back());
                }
            }
            ACCEPT => {
                self.accepting = false;
                if res >= 0 {
                    // SAFETY: a successful accept returns a new descriptor that nothing else owns;
                    // owning it here closes it.
                    drop(unsafe { OwnedFd::from_raw_fd(res) });
                }
            }
            PAUSE => self.pausing = false,
            CANCEL => {}
            _ => {
                if let Some((key, kind)) = untag(user_data) {
                    let result = if res < 0 {
                        Err(io::Error::from_raw_os_error(-res))
                    } else {
                        Ok(res as usize)
                    };
                    draining.complete(key, kind, result, &self.counters);
                }
            }
        }
    }
}

/// An eventfd whose read is kept in flight: writing it completes that read and wakes the loop.
struct EventFd(OwnedFd);

impl EventFd {
    fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes two plain values and touches no memory of ours.
        let fd = syscall!(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) })?;
        // SAFETY: eventfd just returned this descriptor and nothing else owns it.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn waker(&self) -> io::Result<impl Fn() + Send + Sync + 'static> {
        let fd = self.0.try_clone()?;
        Ok(move || {
            let one = 1u64.to_ne_bytes();
            // SAFETY: `fd` is an open eventfd owned by this closure and `one` is 8 readable bytes.
            let _ = syscall!(unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), 8) });
        })
    }
}

/// One busy-polling turn (`serve --busy-poll`), shared by both io_uring models: push the
/// backlog, then enter the kernel only if there is something for it to do (entries to submit,
/// deferred task work flagged in the SQ ring under `DEFER_TASKRUN`, a completion queue
/// overflow); otherwise the turn is a peek at the completion queue in shared memory, no system
/// call. Without `DEFER_TASKRUN` the kernel runs completions' task work by interrupting the
/// spinning thread, so they appear in the queue on their own.
pub(super) fn poll_once(
    ring: &mut IoUring,
    backlog: &mut VecDeque<squeue::Entry>,
) -> io::Result<()> {
    push_backlog(ring, backlog);
    let sq = ring.submission();
    // An SQPOLL thread asleep matters only with entries to submit (`submit` wakes it then).
    let idle = sq.is_empty() && !sq.taskrun() && !sq.cq_overflow();
    drop(sq);
    if idle {
        return Ok(());
    }
    benign(ring.submit())
}

/// One turn's `io_uring_enter`, shared by both io_uring models: push what the backlog holds
/// (entries that did not fit the submission queue when they were made), then submit everything
/// and wait for `want` completions (none while a backlog remains, so the loop reaps and frees
/// room instead of sleeping with work unsubmitted).
pub(super) fn enter(
    ring: &mut IoUring,
    backlog: &mut VecDeque<squeue::Entry>,
    want: usize,
) -> io::Result<()> {
    push_backlog(ring, backlog);
    let want = if backlog.is_empty() { want } else { 0 };
    benign(ring.submit_and_wait(want))
}

/// Queues one operation for either io_uring model: behind the backlog if there is one; when
/// the submission queue is full, submits what it holds first, and if the kernel takes none (its
/// completion queue overflowing) keeps the entry for the next turn instead of spinning.
///
/// # Safety
/// Every buffer or other memory `entry` points to stays valid until its completion is reaped.
pub(super) unsafe fn queue(
    ring: &mut IoUring,
    backlog: &mut VecDeque<squeue::Entry>,
    entry: squeue::Entry,
) {
    if !backlog.is_empty() {
        backlog.push_back(entry);
        return;
    }
    // SAFETY: the caller keeps the entry's memory valid until its completion.
    if unsafe { ring.submission().push(&entry) }.is_ok() {
        return;
    }
    let _ = ring.submit();
    // SAFETY: as above.
    if unsafe { ring.submission().push(&entry) }.is_err() {
        backlog.push_back(entry);
    }
}

/// Moves what the backlog holds into the submission queue, as far as it has room.
fn push_backlog(ring: &mut IoUring, backlog: &mut VecDeque<squeue::Entry>) {
    while let Some(entry) = backlog.pop_front() {
        // SAFETY: every entry's memory (buffers, timespec) is owned by the calling loop and
        // outlives the operation: see each model's `push`.
        if unsafe { ring.submission().push(&entry) }.is_err() {
            backlog.push_front(entry);
            break;
        }
    }
}

/// A submit's result, with the errors that only mean "reap and go on" (a signal, or
/// completions to reap before the kernel takes more) turned into success.
fn benign(r: io::Result<usize>) -> io::Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EINTR | libc::EBUSY | libc::EAGAIN)
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_never_reach_the_reserved_values() {
        for key in [0, 1, 7, 1 << 20, (RESERVED >> 2) as usize - 1] {
            for kind in OpKind::ALL {
                let t = tag(key, kind);
                assert!(t < RESERVED);
                assert_eq!(untag(t), Some((key, kind)));
            }
        }
        for reserved in [ACCEPT, WAKE, PAUSE, CANCEL] {
            assert_eq!(untag(reserved), None);
        }
    }

    #[test]
    fn refusals_name_their_reason() {
        let enosys = setup_refused(&io::Error::from_raw_os_error(libc::ENOSYS));
        assert!(enosys.contains("ENOSYS"), "{enosys}");
        let eperm = setup_refused(&io::Error::from_raw_os_error(libc::EPERM));
        assert!(eperm.contains("kernel.io_uring_disabled"), "{eperm}");
        let missing = missing_opcode(|op| op != opcode::Shutdown::CODE).unwrap_err();
        assert_eq!(missing, "io_uring: the kernel lacks IORING_OP_SHUTDOWN");
        assert_eq!(missing_opcode(|_| true), Ok(()));
    }
}
