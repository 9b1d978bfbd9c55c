//! `uring-multishot`: io_uring with operations armed once. Multishot accept, multishot receive
//! into a provided-buffer ring shared by the loop's connections ([`BufRing`]), and a ring set
//! up with `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN` (completions are
//! processed only when the loop enters the kernel, never by interrupting it); a kernel that
//! refuses those flags gets a plain ring, and the settings say which.
//!
//! A receive completion names the ring buffer the kernel filled; the loop sends from that
//! buffer and returns it to the ring only after the send completed. Backpressure: each arm of
//! the multishot receive carries the kernel's byte limits (Linux 6.17+, probed by behaviour
//! since older kernels ignore the field: [`receive_limit`]): at most half a buffer per
//! receive and an end after half a buffer in all, so one arm delivers less than one buffer of
//! bytes (usually in one or two ring buffers) and ends; the loop re-arms only once everything
//! the connection held was sent. A client that never reads therefore holds one buffer's worth,
//! as in every other model, and cannot drain the ring its loop's other connections share. On an
//! older kernel the receive is instead cancelled when data arrives while a send is pending, and
//! a stuck connection holds what the kernel delivered before the cancel took effect (bounded
//! by the ring only). A receive that ends
//! (`more()` false: `ENOBUFS` because the ring ran dry, or the cancel) is re-armed when the
//! connection is ready for more; one that ran dry waits until a buffer comes back.
//!
//! Options (`UringOptions`): `--fixed-files` puts each accepted socket in the ring's fixed-file
//! table at its connection's key and names it by slot in every operation; `--no-defer-taskrun`
//! and `--sqpoll` (which excludes it) change how the ring is set up ([`super::build_ring`]).
//!
//! What it shares with `uring`: the `user_data` tags, the reserved values, the eventfd wake-up
//! and the availability probe (the parent module). What it deliberately does not use: the
//! `completion` core, which models one buffer owned per connection; here buffers belong to the
//! ring and a connection holds a queue of them.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, OnceLock};

use io_uring::{IoUring, cqueue, opcode, squeue, types};
use slab::Slab;

use super::bufring::BufRing;
use super::{ACCEPT, CANCEL, EventFd, PAUSE, WAKE, tag, untag};
use crate::completion::{Lent, OpKind};
use crate::ctx::Ctx;
use crate::listen::{ERROR_RUN, EXHAUSTED_PAUSE, Inbox, Incoming};
use crate::stats::LoopCounters;
use crate::sys::is_fd_exhaustion;

/// The loop's buffer group.
const BGID: u16 = 0;

/// Whether this model runs here: io_uring, the opcodes, and provided-buffer rings.
pub(crate) fn availability() -> Result<(), String> {
    static PROBED: OnceLock<Result<(), String>> = OnceLock::new();
    PROBED.get_or_init(probe).clone()
}

fn probe() -> Result<(), String> {
    if let Some(simulated) = super::simulated_refusal() {
        return simulated;
    }
    let ring = super::probed_ring(super::OPCODES)?;
    let bufs = BufRing::register(&ring.submitter(), BGID, 1, 64).map_err(|e| {
        format!(
            "io_uring: provided-buffer rings (IORING_REGISTER_PBUF_RING, Linux 5.19) refused: {e}"
        )
    })?;
    bufs.unregister(&ring.submitter())
        .map_err(|e| format!("io_uring: unregistering a buffer ring failed: {e}"))
}

/// Whether this kernel ends a multishot receive by itself once it has received a set number of
/// bytes (`sqe.optlen`, Linux 6.17: "multishot receive len cap"). Older kernels ignore the field
/// (no error), so it is tried, not assumed: a receive limited to 1 byte, with 2 bytes waiting,
/// must complete without `IORING_CQE_F_MORE`. Probed once per process.
pub(crate) fn receive_limit() -> bool {
    static PROBED: OnceLock<bool> = OnceLock::new();
    *PROBED.get_or_init(|| {
        std::env::var("IOMODELS_URING_PROBE").as_deref() != Ok("NO_RECEIVE_LIMIT")
            && probe_receive_limit().unwrap_or(false)
    })
}

fn probe_receive_limit() -> io::Result<bool> {
    let mut ring = IoUring::new(4)?;
    let bufs = BufRing::register(&ring.submitter(), BGID, 2, 64)?;
    let (mut tx, rx) = UnixStream::pair()?;
    tx.write_all(b"xy")?;
    let recv = limited(
        opcode::RecvMulti::new(types::Fd(rx.as_raw_fd()), BGID).build(),
        1,
        1,
    );
    // SAFETY: the receive uses only the registered buffer ring, unregistered below, after
    // `first_completion` reaped the receive's last completion.
    let (res, flags) = unsafe { first_completion(&mut ring, recv) }?;
    bufs.unregister(&ring.submitter())?;
    Ok(res > 0 && !cqueue::more(flags))
}

/// Submits `entry` (a multishot operation) on `ring`, which has nothing else in flight, and
/// returns its first completion's `(res, flags)`. If more completions would follow, the
/// operation is cancelled and reaped to its last one, so nothing of the ring is in use when this
/// returns: what probes by behaviour need (does the kernel accept this flag, honour that field).
///
/// # Safety
/// Every buffer `entry` points to must stay valid until this returns.
pub(super) unsafe fn first_completion(
    ring: &mut IoUring,
    entry: squeue::Entry,
) -> io::Result<(i32, u32)> {
    const PROBED: u64 = 1;
    const CANCELLED: u64 = 2;
    // SAFETY: the caller keeps the entry's memory valid until we return, and we return only
    // after its last completion.
    unsafe { ring.submission().push(&entry.user_data(PROBED)) }.map_err(io::Error::other)?;
    let mut first = None;
    let mut over = false;
    while !over {
        ring.submit_and_wait(1)?;
        let cqes: Vec<(u64, i32, u32)> = ring
            .completion()
            .map(|c| (c.user_data(), c.result(), c.flags()))
            .collect();
        for (user_data, res, flags) in cqes {
            if user_data != PROBED {
                continue;
            }
            if first.is_none() {
                first = Some((res, flags));
                if cqueue::more(flags) {
                    let cancel = opcode::AsyncCancel::new(PROBED)
                        .build()
                        .user_data(CANCELLED);
                    // SAFETY: a cancel uses no memory of ours.
                    unsafe { ring.submission().push(&cancel) }.map_err(io::Error::other)?;
                }
            }
            over |= !cqueue::more(flags);
        }
    }
    first.ok_or_else(|| io::Error::other("io_uring probe: the loop ended without a completion"))
}

/// A multishot receive entry that receives at most `per_receive` bytes per completion and ends
/// (no `IORING_CQE_F_MORE`) once it received `total` bytes, on kernels with [`receive_limit`].
fn limited(entry: squeue::Entry, per_receive: u32, total: u32) -> squeue::Entry {
    const _: () = assert!(size_of::<squeue::Entry>() == 64);
    // SAFETY: `squeue::Entry` is `#[repr(C)]` around the kernel's 64-byte `io_uring_sqe`, plain
    // data with no invalid bit patterns; its bytes 24..28 are `len` and 44..48 `optlen` (the
    // union with `file_index`, unused by a receive), the fields `opcode::RecvMulti` cannot set.
    let mut raw: [u8; 64] = unsafe { std::mem::transmute(entry) };
    raw[24..28].copy_from_slice(&per_receive.to_ne_bytes());
    raw[44..48].copy_from_slice(&total.to_ne_bytes());
    // SAFETY: as above; any bytes make a valid `io_uring_sqe`.
    unsafe { std::mem::transmute::<[u8; 64], squeue::Entry>(raw) }
}

/// The per-receive and total byte limits of one multishot arm: together at most
/// `buffer_size` bytes (`total - 1 + per_receive`), so one connection never holds more than
/// one buffer's worth of bytes, as every other model.
fn arm_limits(buffer_size: usize) -> (u32, u32) {
    let size = buffer_size.min(u32::MAX as usize) as u32;
    let per_receive = (size / 2).max(1);
    (per_receive, size - size / 2)
}

/// Fixed-file slots per ring: the descriptor limit (the kernel refuses a larger table), at
/// most 32,768.
fn fixed_table_size() -> u32 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    if ok {
        lim.rlim_cur.min(32_768) as u32
    } else {
        1024
    }
}

/// Runs one loop until stop.
pub(crate) fn run(incoming: Incoming, ctx: &Ctx) -> io::Result<()> {
    let ring = super::build_ring(ctx, true)?;
    let count = ctx.config.uring.ring_buffers;
    let bufs = BufRing::register(&ring.submitter(), BGID, count, ctx.config.buffer_size)?;
    let fixed_slots = if ctx.config.uring.fixed_files {
        let slots = fixed_table_size();
        ring.submitter().register_files_sparse(slots)?;
        ctx.shared.setting("fixed_files", format!("{slots} slots"));
        slots as usize
    } else {
        ctx.shared.setting("fixed_files", "off");
        0
    };
    ctx.shared
        .setting("ring_entries", ring.params().sq_entries());
    ctx.shared.setting("cq_entries", ring.params().cq_entries());
    ctx.shared.setting("ring_buffers", count);
    ctx.shared
        .setting("ring_buffer_size", ctx.config.buffer_size);
    let limit = receive_limit().then(|| arm_limits(ctx.config.buffer_size));
    ctx.shared.setting(
        "receive_limit",
        match limit {
            Some((per, total)) => format!("{per}/{total}"),
            None => "none (kernel before 6.17: cancel only)".into(),
        },
    );
    ctx.shared.setting_max("peak_connection_buffers", 0);
    let wake = EventFd::new()?;
    ctx.stop.on_stop(wake.waker()?);
    let (listener, inbox) = match incoming {
        Incoming::Listener(l) => (Some(l), None),
        Incoming::Handoff(slot) => (None, Some(slot.install_inbox(wake.waker()?))),
    };
    let mut lp = Loop {
        ring,
        backlog: VecDeque::new(),
        bufs: Some(bufs),
        conns: Slab::new(),
        held: 0,
        fixed_slots,
        limit,
        peak_conn_buffers: 0,
        starved: Vec::new(),
        wake_starved: Vec::new(),
        counters: ctx.shared.new_loop(),
        listener,
        inbox,
        wake,
        wake_buf: None,
        pause: Box::new(types::Timespec::from(EXHAUSTED_PAUSE)),
        accepting: false,
        pause_wanted: false,
        pausing: false,
        accept_error_run: 0,
        cqes: Vec::new(),
    };
    lp.arm_wake();
    lp.arm_accept();
    lp.ring.submit()?;
    ctx.ready();
    let result = lp.serve(ctx);
    lp.drain(ctx)?;
    result
}

/// One connection: its socket, the ring buffers it holds and what it has in flight.
struct Conn {
    sock: TcpStream,
    /// Received, not yet fully echoed: `(buffer id, length)`, oldest first.
    held: VecDeque<(u16, usize)>,
    /// Bytes of the oldest held buffer already sent.
    sent: usize,
    /// A multishot receive is armed.
    receiving: bool,
    /// Its cancel was submitted (backpressure).
    cancelling: bool,
    /// A send is in flight.
    sending: bool,
    /// A shutdown is in flight.
    shutting: bool,
    /// The ring was empty when it last received: re-armed when a buffer comes back.
    starved: bool,
    /// The peer sent its FIN.
    eof: bool,
    /// An error ended it: close once nothing is in flight.
    failed: bool,
    /// The shutdown completed.
    done: bool,
    /// The socket is in the ring's fixed-file table, at the connection's key.
    fixed: bool,
}

impl Conn {
    fn pending(&self) -> usize {
        self.held.iter().map(|&(_, len)| len).sum::<usize>() - self.sent
    }

    fn in_flight(&self) -> bool {
        self.receiving || self.sending || self.shutting
    }
}

struct Loop {
    ring: IoUring,
    backlog: VecDeque<squeue::Entry>,
    /// `None` only after stop unregistered it.
    bufs: Option<BufRing>,
    conns: Slab<Conn>,
    /// Ring buffers connections hold (received, echo not yet sent).
    held: usize,
    /// Slots in the ring's fixed-file table (`--fixed-files`; 0: off). Connection `key` uses
    /// slot `key` when it is below this.
    fixed_slots: usize,
    /// Each multishot arm's byte limits (per receive, total), where the kernel has them.
    limit: Option<(u32, u32)>,
    /// The most ring buffers one connection held at once.
    peak_conn_buffers: usize,
    /// Connections whose receive ran the ring dry, to re-arm as buffers come back.
    starved: Vec<usize>,
    /// Starved connections a returned buffer woke: advanced once the current event is done.
    wake_starved: Vec<usize>,
    counters: Arc<LoopCounters>,
    listener: Option<TcpListener>,
    inbox: Option<Inbox>,
    wake: EventFd,
    wake_buf: Option<Lent>,
    pause: Box<types::Timespec>,
    /// The multishot accept is armed.
    accepting: bool,
    /// Out of descriptors: once the multishot accept has ended, pause before re-arming.
    pause_wanted: bool,
    pausing: bool,
    accept_error_run: usize,
    /// One turn's completions: `(user_data, result, flags)`.
    cqes: Vec<(u64, i32, u32)>,
}

impl Loop {
    fn bufs(&mut self) -> &mut BufRing {
        self.bufs.as_mut().expect("registered until the drain ends")
    }

    fn serve(&mut self, ctx: &Ctx) -> io::Result<()> {
        while !ctx.stop.is_stopped() {
            if ctx.config.busy_poll {
                super::poll_once(&mut self.ring, &mut self.backlog)?;
            } else {
                self.enter(1)?;
            }
            self.reap();
            for i in 0..self.cqes.len() {
                let (user_data, res, flags) = self.cqes[i];
                self.handle(user_data, res, flags, ctx);
            }
        }
        Ok(())
    }

    /// `uring`'s turn: push the backlog, submit, wait for `want` completions.
    fn enter(&mut self, want: usize) -> io::Result<()> {
        super::enter(&mut self.ring, &mut self.backlog, want)
    }

    fn reap(&mut self) {
        self.cqes.clear();
        self.cqes.extend(
            self.ring
                .completion()
                .map(|c: cqueue::Entry| (c.user_data(), c.result(), c.flags())),
        );
    }

    /// Queues an operation (see `uring`'s `push`). Every entry's memory outlives its operation:
    /// ring buffers are returned only after their send completed and freed only after the
    /// drain; the wake-up buffer is lent; the timespec is read at submission.
    fn push(&mut self, entry: squeue::Entry) {
        // SAFETY: the entry's memory outlives the operation (see above).
        unsafe { super::queue(&mut self.ring, &mut self.backlog, entry) }
    }

    fn arm_accept(&mut self) {
        let Some(l) = &self.listener else { return };
        let entry = opcode::AcceptMulti::new(types::Fd(l.as_raw_fd()))
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

    fn open(&mut self, sock: TcpStream, ctx: &Ctx) {
        let _ = sock.set_nodelay(true);
        ctx.shared.opened();
        let key = self.conns.vacant_key();
        // A socket the table cannot take (slots all used, or the kernel refuses) is served
        // by its descriptor like any other: correct, only without the saving.
        let fixed = key < self.fixed_slots
            && self
                .ring
                .submitter()
                .register_files_update(key as u32, &[sock.as_raw_fd()])
                .is_ok();
        self.conns.insert(Conn {
            fixed,
            sock,
            held: VecDeque::new(),
            sent: 0,
            receiving: false,
            cancelling: false,
            sending: false,
            shutting: false,
            starved: false,
            eof: false,
            failed: false,
            done: false,
        });
        self.advance(key, ctx);
    }

    /// Submits what connection `key` needs now, or closes it.
    fn advance(&mut self, key: usize, ctx: &Ctx) {
        let bgid = self.bufs().bgid();
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let (fd, fixed) = (types::Fd(conn.sock.as_raw_fd()), types::Fixed(key as u32));
        let is_fixed = conn.fixed;
        // The same operation on the fixed slot or on the descriptor (two types, one choice).
        macro_rules! on {
            ($op:ident :: new($($arg:expr),*) $(.$m:ident($($a:expr),*))*) => {
                if is_fixed {
                    opcode::$op::new(fixed, $($arg),*)$(.$m($($a),*))*.build()
                } else {
                    opcode::$op::new(fd, $($arg),*)$(.$m($($a),*))*.build()
                }
            };
        }
        if conn.failed || conn.done {
            if conn.receiving && !conn.cancelling {
                conn.cancelling = true;
                self.push(
                    opcode::AsyncCancel::new(tag(key, OpKind::Recv))
                        .build()
                        .user_data(CANCEL),
                );
            } else if !conn.in_flight() {
                self.close(key);
                ctx.shared.closed();
            }
            return;
        }
        if !conn.sending {
            if let Some(&(bid, len)) = conn.held.front() {
                let sent = conn.sent;
                conn.sending = true;
                let ptr = self.bufs().ptr(bid).wrapping_add(sent);
                let entry = on!(Send::new(ptr, (len - sent) as u32).flags(libc::MSG_NOSIGNAL))
                    .user_data(tag(key, OpKind::Send));
                self.push(entry);
                return;
            }
        }
        let conn = &mut self.conns[key];
        if conn.sending || !conn.held.is_empty() {
            return;
        }
        if conn.eof {
            if !conn.shutting && !conn.receiving {
                conn.shutting = true;
                self.push(on!(Shutdown::new(libc::SHUT_WR)).user_data(tag(key, OpKind::Shutdown)));
            }
            return;
        }
        if !conn.receiving && !conn.starved {
            conn.receiving = true;
            conn.cancelling = false;
            let mut entry = on!(RecvMulti::new(bgid));
            if let Some((per_receive, total)) = self.limit {
                entry = limited(entry, per_receive, total);
            }
            self.push(entry.user_data(tag(key, OpKind::Recv)));
        }
    }

    /// Removes a connection with nothing in flight: its buffers go back to the ring, its bytes
    /// leave the gauge, its socket closes.
    fn close(&mut self, key: usize) {
        let conn = self.conns.remove(key);
        if conn.fixed {
            // The table holds its own reference to the socket: without this the peer would
            // never see the close. Nothing is in flight on the slot any more.
            let _ = self
                .ring
                .submitter()
                .register_files_update(key as u32, &[-1]);
        }
        self.counters.dropped(conn.pending());
        for (bid, _) in conn.held {
            self.give_back(bid);
        }
    }

    /// A ring buffer is free again; a connection that ran the ring dry may receive again.
    fn give_back(&mut self, bid: u16) {
        self.held -= 1;
        self.bufs().give_back(bid);
        while let Some(key) = self.starved.pop() {
            if let Some(conn) = self.conns.get_mut(key) {
                if conn.starved {
                    conn.starved = false;
                    self.wake_starved.push(key);
                    break;
                }
            }
        }
    }

    fn handle(&mut self, user_data: u64, res: i32, flags: u32, ctx: &Ctx) {
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
            ACCEPT => self.accepted(res, flags, ctx),
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
                if self.conns.contains(key) {
                    self.completed(key, kind, res, flags);
                    let held = self.conns[key].held.len();
                    if held > self.peak_conn_buffers {
                        self.peak_conn_buffers = held;
                        ctx.shared
                            .setting_max("peak_connection_buffers", held as u64);
                    }
                    self.advance(key, ctx);
                }
                while let Some(key) = self.wake_starved.pop() {
                    self.advance(key, ctx);
                }
            }
        }
    }

    fn accepted(&mut self, res: i32, flags: u32, ctx: &Ctx) {
        let more = cqueue::more(flags);
        if !more {
            self.accepting = false;
        }
        if res >= 0 {
            // SAFETY: a successful accept returns a new descriptor that nothing else owns.
            let stream = TcpStream::from(unsafe { OwnedFd::from_raw_fd(res) });
            if ctx.stop.is_stopped() {
                return;
            }
            self.accept_error_run = 0;
            self.open(stream, ctx);
        } else if !ctx.stop.is_stopped() && res != -libc::ECANCELED {
            let e = io::Error::from_raw_os_error(-res);
            ctx.shared.accept_error();
            self.accept_error_run += 1;
            if is_fd_exhaustion(&e) || self.accept_error_run >= ERROR_RUN {
                log::warn!("accept: {e}; pausing accepts for {EXHAUSTED_PAUSE:?}");
                self.accept_error_run = 0;
                if more && !self.pause_wanted {
                    self.push(opcode::AsyncCancel::new(ACCEPT).build().user_data(CANCEL));
                }
                self.pause_wanted = true;
            } else {
                log::debug!("accept: {e} (counted, still accepting)");
            }
        }
        if !self.accepting && !ctx.stop.is_stopped() {
            if std::mem::take(&mut self.pause_wanted) {
                self.pausing = true;
                let entry = opcode::Timeout::new(&*self.pause).build().user_data(PAUSE);
                self.push(entry);
            } else {
                self.arm_accept();
            }
        }
    }

    /// Applies one connection completion to its state (counters, held buffers).
    fn completed(&mut self, key: usize, kind: OpKind, res: i32, flags: u32) {
        let counters = self.counters.clone();
        let conn = &mut self.conns[key];
        match kind {
            OpKind::Recv => {
                if !cqueue::more(flags) {
                    conn.receiving = false;
                }
                let bid = cqueue::buffer_select(flags);
                match res {
                    n if n > 0 => {
                        let bid = bid.expect("a receive with data names its buffer");
                        counters.read(n as usize);
                        conn.held.push_back((bid, n as usize));
                        // With the kernel's limit the arm ends by itself within one buffer.
                        let cancel = self.limit.is_none()
                            && conn.held.len() > 1
                            && conn.receiving
                            && !conn.cancelling;
                        self.held += 1;
                        if cancel {
                            // An echo is still unsent: no more for this one until it is.
                            self.conns[key].cancelling = true;
                            self.push(
                                opcode::AsyncCancel::new(tag(key, OpKind::Recv))
                                    .build()
                                    .user_data(CANCEL),
                            );
                        }
                    }
                    0 => {
                        conn.eof = true;
                        if let Some(bid) = bid {
                            self.held += 1;
                            self.give_back(bid);
                        }
                    }
                    e if e == -libc::ENOBUFS => {
                        // Buffers may have come back in this same batch, before this
                        // completion was handled: then nobody would wake it, so re-arm now.
                        if self.held < self.bufs().count() {
                            return;
                        }
                        let conn = &mut self.conns[key];
                        conn.starved = true;
                        self.starved.push(key);
                    }
                    e if e == -libc::ECANCELED => {}
                    _ => conn.failed = true,
                }
            }
            OpKind::Send => {
                conn.sending = false;
                if res <= 0 {
                    conn.failed = true;
                    return;
                }
                let n = res as usize;
                counters.wrote(n);
                conn.sent += n;
                let (bid, len) = *conn.held.front().expect("a send sends a held buffer");
                if conn.sent >= len {
                    conn.held.pop_front();
                    conn.sent = 0;
                    self.give_back(bid);
                }
            }
            OpKind::Shutdown => {
                conn.shutting = false;
                conn.done = true;
            }
        }
    }

    /// Stop: cancel everything in flight, reap until it all completed, then unregister the
    /// buffer ring, close the ring, and only then free buffers and close sockets.
    fn drain(mut self, ctx: &Ctx) -> io::Result<()> {
        let mut cancels: Vec<u64> = Vec::new();
        for (key, conn) in &self.conns {
            for (on, kind) in [
                (conn.receiving, OpKind::Recv),
                (conn.sending, OpKind::Send),
                (conn.shutting, OpKind::Shutdown),
            ] {
                if on {
                    cancels.push(tag(key, kind));
                }
            }
        }
        for (on, user_data) in [
            (self.accepting, ACCEPT),
            (self.pausing, PAUSE),
            (self.wake_buf.is_some(), WAKE),
        ] {
            if on {
                cancels.push(user_data);
            }
        }
        for user_data in cancels {
            self.push(
                opcode::AsyncCancel::new(user_data)
                    .build()
                    .user_data(CANCEL),
            );
        }
        while self.accepting
            || self.pausing
            || self.wake_buf.is_some()
            || self.conns.iter().any(|(_, c)| c.in_flight())
        {
            self.enter(1)?;
            self.reap();
            for i in 0..self.cqes.len() {
                let (user_data, res, flags) = self.cqes[i];
                self.handle_draining(user_data, res, flags);
            }
        }
        for key in self.conns.iter().map(|(k, _)| k).collect::<Vec<_>>() {
            self.close(key);
            ctx.shared.closed();
        }
        // What the stop left behind, for tests and results: both 0 after a clean drain.
        ctx.shared
            .setting_max("buffers_out_at_stop", self.held as u64);
        ctx.shared
            .setting_max("connections_at_stop", self.conns.len() as u64);
        let bufs = self.bufs.take().expect("registered");
        bufs.unregister(&self.ring.submitter())?;
        let Loop { ring, .. } = self;
        drop(ring);
        Ok(())
    }

    fn handle_draining(&mut self, user_data: u64, res: i32, flags: u32) {
        match user_data {
            WAKE => {
                if let Some(lent) = self.wake_buf.take() {
                    drop(lent.give_back());
                }
            }
            ACCEPT => {
                if !cqueue::more(flags) {
                    self.accepting = false;
                }
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
                    if self.conns.contains(key) {
                        self.completed(key, kind, res, flags);
                        self.starved.clear();
                        self.wake_starved.clear();
                    }
                }
            }
        }
    }
}
