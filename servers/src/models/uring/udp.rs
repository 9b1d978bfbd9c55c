//! UDP echo on io_uring, for both io_uring models (`serve uring|uring-multishot --proto udp`).
//!
//! - `uring` ([`run_oneshot`]): a few one-shot `IORING_OP_RECVMSG` in flight on the socket,
//!   each into its own [`Slot`] (a 64 KiB buffer, the sender's address, room for the
//!   `SO_RXQ_OVFL` control message). Its completion becomes an `IORING_OP_SENDMSG` of the same
//!   buffer back to the address the receive filled in; the send's completion re-arms the
//!   receive. A slot belongs to the kernel from submission to completion.
//! - `uring-multishot` ([`run_multishot`]): one multishot `IORING_OP_RECVMSG` picking buffers
//!   from the loop's provided-buffer ring ([`BufRing`]); each completion names a buffer laid
//!   out as `io_uring_recvmsg_out`, then the name, the control messages and the payload
//!   (parsed by `io_uring::types::RecvMsgOut`). The echo is a `SENDMSG` whose name and
//!   payload point into that buffer, which goes back to the ring only when the send
//!   completed. A multishot that ends (no `IORING_CQE_F_MORE`) is re-armed; one that ended
//!   because the ring ran dry (`ENOBUFS`) is re-armed once a buffer comes back.
//!
//! Sends carry `MSG_DONTWAIT`, so a full send buffer completes them with `EAGAIN` (counted in
//! `send_drops`) instead of io_uring parking them until there is room: UDP echo drops, it
//! never waits (see `datagram`).
//!
//! Stop: as for TCP, the eventfd read completes; every operation in flight is cancelled and
//! reaped, and only then the ring, the buffer ring and the slots are freed, in that order.
//!
//! Availability is probed apart from TCP's ([`oneshot_availability`],
//! [`multishot_availability`]): `IORING_OP_RECVMSG`/`SENDMSG` by `IORING_REGISTER_PROBE`
//! (Linux 5.3), and the multishot `RECVMSG` (Linux 6.0) by behaviour, since the probe lists
//! opcodes, not flags: an older kernel completes it with `EINVAL`. A kernel without them runs
//! the TCP loops and refuses `--proto udp` with the missing piece named (exit 2).
//!
//! Not here: the TCP loops (`uring.rs`, `multishot.rs`), fixed files for the one socket.
#![allow(unsafe_code)] // operations whose memory the kernel uses: the FFI edge

use std::collections::VecDeque;
use std::io;
use std::mem::{MaybeUninit, size_of};
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;

use io_uring::{IoUring, cqueue, opcode, squeue, types};

use super::bufring::BufRing;
use super::multishot::first_completion;
use super::{EventFd, build_ring, enter, missing_of, poll_once, queue};
use crate::completion::Lent;
use crate::ctx::Ctx;
use crate::datagram::{DATAGRAM_BUFFER, Endpoint, control_drops, saw_drops};
use crate::stats::LoopCounters;

/// The eventfd read (stop).
const WAKE: u64 = u64::MAX;
/// Completions of `ASYNC_CANCEL`.
const CANCEL: u64 = u64::MAX - 1;
/// The multishot receive.
const RECV: u64 = u64::MAX - 2;
/// `uring`: receives in flight at once (each a slot of 64 KiB).
const SLOTS: usize = 8;
/// Room for the control messages a receive may carry (one `SO_RXQ_OVFL` needs 20 bytes).
const CONTROL: usize = 64;
/// The buffer group of the multishot receive's provided buffers.
const BGID: u16 = 0;

/// What UDP echo adds to the TCP loops' opcodes (both Linux 5.3).
const UDP_OPCODES: &[(u8, &str)] = &[
    (opcode::RecvMsg::CODE, "IORING_OP_RECVMSG"),
    (opcode::SendMsg::CODE, "IORING_OP_SENDMSG"),
];

/// `IOMODELS_URING_PROBE` values that simulate a kernel without what UDP echo needs (see
/// `simulated_refusal` in the parent): an opcode of [`UDP_OPCODES`] (both models), or
/// `NO_MULTISHOT_RECVMSG`, a kernel before 6.0 (`uring-multishot` only).
pub(super) const SIMULATED: &[&str] = &[
    "IORING_OP_RECVMSG",
    "IORING_OP_SENDMSG",
    "NO_MULTISHOT_RECVMSG",
];

/// Whether `name` is one of [`SIMULATED`].
pub(super) fn simulated(name: &str) -> bool {
    SIMULATED.contains(&name)
}

/// Whether `uring` serves UDP here, where it runs: the kernel has `IORING_OP_RECVMSG` and
/// `IORING_OP_SENDMSG`; if not, which one it lacks. `Ok` where `uring` itself is unavailable
/// (its own reason is the one given). Probed once per process.
pub(crate) fn oneshot_availability() -> Result<(), String> {
    if super::availability().is_err() {
        return Ok(()); // the model is unavailable, and says why itself
    }
    static PROBED: OnceLock<Result<(), String>> = OnceLock::new();
    PROBED.get_or_init(probe_opcodes).clone()
}

/// Whether `uring-multishot` serves UDP here: [`oneshot_availability`], and a multishot
/// `IORING_OP_RECVMSG` the kernel accepts (Linux 6.0). Probed once per process.
pub(crate) fn multishot_availability() -> Result<(), String> {
    if super::multishot::availability().is_err() {
        return Ok(()); // the model is unavailable, and says why itself
    }
    oneshot_availability()?;
    static PROBED: OnceLock<Result<(), String>> = OnceLock::new();
    PROBED
        .get_or_init(|| {
            let refused = || {
                "io_uring: the kernel lacks multishot IORING_OP_RECVMSG (Linux 6.0): use \
                 `uring` for UDP"
                    .to_string()
            };
            if std::env::var("IOMODELS_URING_PROBE").as_deref() == Ok("NO_MULTISHOT_RECVMSG") {
                return Err(refused());
            }
            match probe_multishot() {
                Ok(true) => Ok(()),
                Ok(false) => Err(refused()),
                Err(e) => Err(format!(
                    "io_uring: probing multishot IORING_OP_RECVMSG failed: {e}"
                )),
            }
        })
        .clone()
}

fn probe_opcodes() -> Result<(), String> {
    if let Ok(name) = std::env::var("IOMODELS_URING_PROBE")
        && let Some(&(missing, _)) = UDP_OPCODES.iter().find(|(_, n)| *n == name)
    {
        return missing_of(UDP_OPCODES, |op| op != missing);
    }
    super::probed_ring(UDP_OPCODES).map(drop)
}

/// Whether a multishot `RECVMSG` on a UDP socket with one datagram waiting delivers it (a
/// kernel before 6.0 completes it with `EINVAL`: it knows no multishot flag on `RECVMSG`).
fn probe_multishot() -> io::Result<bool> {
    let mut ring = IoUring::new(4)?;
    let bufs = BufRing::register(&ring.submitter(), BGID, 2, 256)?;
    let rx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    let tx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    tx.send_to(b"x", rx.local_addr()?)?;
    let mut msg = Box::new(empty_msghdr());
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let recv = opcode::RecvMsgMulti::new(types::Fd(rx.as_raw_fd()), &raw const *msg, BGID).build();
    // SAFETY: the receive reads `msg` (alive until we return) and writes only into the
    // registered buffer ring, unregistered after `first_completion` reaped its last completion.
    let (res, _) = unsafe { first_completion(&mut ring, recv) }?;
    bufs.unregister(&ring.submitter())?;
    match res {
        res if res >= 0 => Ok(true),
        res if res == -libc::EINVAL => Ok(false),
        res => Err(io::Error::from_raw_os_error(-res)),
    }
}

/// A `msghdr` with every pointer null and every length zero.
fn empty_msghdr() -> libc::msghdr {
    // SAFETY: msghdr is plain data; all-zero is a valid (empty) value.
    unsafe { MaybeUninit::zeroed().assume_init() }
}

/// The loop's own half that both models share: ring, backlog, wake-up.
struct Ring {
    ring: IoUring,
    backlog: VecDeque<squeue::Entry>,
    wake: EventFd,
    wake_buf: Option<Lent>,
    cqes: Vec<(u64, i32, u32)>,
}

impl Ring {
    fn new(ctx: &Ctx, multishot: bool) -> io::Result<Self> {
        let ring = build_ring(ctx, multishot)?;
        ctx.shared
            .setting("ring_entries", ring.params().sq_entries());
        let wake = EventFd::new()?;
        ctx.stop.on_stop(wake.waker()?);
        let mut r = Self {
            ring,
            backlog: VecDeque::new(),
            wake,
            wake_buf: None,
            cqes: Vec::new(),
        };
        let mut lent = Lent::new(vec![0u8; 8].into_boxed_slice());
        let (ptr, len) = lent.raw();
        r.wake_buf = Some(lent);
        let entry = opcode::Read::new(types::Fd(r.wake.0.as_raw_fd()), ptr, len as u32)
            .build()
            .user_data(WAKE);
        // SAFETY: the 8-byte buffer is lent (held in `wake_buf`) until the read completes.
        unsafe { r.push(entry) };
        Ok(r)
    }

    /// # Safety
    /// The memory `entry` points to stays valid until its completion is reaped.
    unsafe fn push(&mut self, entry: squeue::Entry) {
        // SAFETY: passed on from the caller.
        unsafe { queue(&mut self.ring, &mut self.backlog, entry) }
    }

    /// One turn: submit, wait (or peek when busy-polling), and collect the completions.
    fn turn(&mut self, busy_poll: bool) -> io::Result<()> {
        if busy_poll {
            poll_once(&mut self.ring, &mut self.backlog)?;
        } else {
            enter(&mut self.ring, &mut self.backlog, 1)?;
        }
        self.cqes.clear();
        self.cqes.extend(
            self.ring
                .completion()
                .map(|c: cqueue::Entry| (c.user_data(), c.result(), c.flags())),
        );
        Ok(())
    }

    /// The eventfd read completed: its buffer is ours again.
    fn woken(&mut self) {
        if let Some(lent) = self.wake_buf.take() {
            drop(lent.give_back());
        }
    }

    /// Cancels the operation tagged `user_data`.
    fn cancel(&mut self, user_data: u64) {
        let entry = opcode::AsyncCancel::new(user_data)
            .build()
            .user_data(CANCEL);
        // SAFETY: a cancel points at no memory.
        unsafe { self.push(entry) };
    }
}

/// One receive-then-send slot of `uring`: boxed, so its address is stable while the kernel
/// holds it.
struct Slot {
    buf: Box<[u8]>,
    iov: libc::iovec,
    msg: libc::msghdr,
    name: libc::sockaddr_storage,
    control: [u64; CONTROL / 8],
    /// Whether an operation on this slot is in flight (then the kernel owns it).
    busy: bool,
}

impl Slot {
    fn new() -> Box<Self> {
        Box::new(Self {
            buf: vec![0; DATAGRAM_BUFFER].into_boxed_slice(),
            iov: libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
            msg: empty_msghdr(),
            // SAFETY: sockaddr_storage is plain data; all-zero is valid.
            name: unsafe { MaybeUninit::zeroed().assume_init() },
            control: [0; CONTROL / 8],
            busy: false,
        })
    }

    /// A receive into the whole buffer, with room for the sender and the control message.
    fn recv_entry(&mut self, fd: types::Fd, index: usize) -> squeue::Entry {
        self.iov.iov_base = self.buf.as_mut_ptr().cast();
        self.iov.iov_len = self.buf.len();
        self.msg = empty_msghdr();
        self.msg.msg_name = (&raw mut self.name).cast();
        self.msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        self.msg.msg_iov = &raw mut self.iov;
        self.msg.msg_iovlen = 1;
        self.msg.msg_control = self.control.as_mut_ptr().cast();
        self.msg.msg_controllen = CONTROL as _;
        self.busy = true;
        opcode::RecvMsg::new(fd, &raw mut self.msg)
            .build()
            .user_data(tag(index, false))
    }

    /// The echo of the `len` bytes received, to the address the receive filled in.
    fn send_entry(&mut self, fd: types::Fd, index: usize, len: usize) -> squeue::Entry {
        self.iov.iov_len = len;
        self.msg.msg_control = std::ptr::null_mut();
        self.msg.msg_controllen = 0;
        self.busy = true;
        opcode::SendMsg::new(fd, &raw const self.msg)
            .flags(libc::MSG_DONTWAIT as u32)
            .build()
            .user_data(tag(index, true))
    }

    /// The control messages the last receive returned.
    fn control(&self) -> Vec<u8> {
        #[allow(clippy::unnecessary_cast)] // socklen_t on some libcs
        let len = (self.msg.msg_controllen as usize).min(CONTROL);
        self.control
            .iter()
            .flat_map(|w| w.to_ne_bytes())
            .take(len)
            .collect()
    }
}

/// A slot operation's tag: index shifted left, the low bit set for a send.
fn tag(index: usize, send: bool) -> u64 {
    ((index as u64) << 1) | u64::from(send)
}

/// The slot index and whether it was a send, from a [`tag`].
fn untag(t: u64) -> (usize, bool) {
    ((t >> 1) as usize, t & 1 == 1)
}

/// `uring --proto udp`: one-shot receives and sends, [`SLOTS`] slots per loop.
pub(crate) fn run_oneshot(endpoint: Endpoint, ctx: &Ctx) -> io::Result<()> {
    let mut ring = Ring::new(ctx, false)?;
    ctx.shared.setting("udp_receives_in_flight", SLOTS);
    let fd = types::Fd(endpoint.socket.as_raw_fd());
    let counters = ctx.shared.new_loop();
    let mut slots: Vec<Box<Slot>> = (0..SLOTS).map(|_| Slot::new()).collect();
    for (i, slot) in slots.iter_mut().enumerate() {
        let entry = slot.recv_entry(fd, i);
        // SAFETY: the slot is boxed and kept (in `slots`) until its completion is reaped.
        unsafe { ring.push(entry) };
    }
    ring.ring.submit()?;
    ctx.ready();
    let result = serve_oneshot(&mut ring, &mut slots, fd, &endpoint.drops, &counters, ctx);
    // Whatever ended the loop: cancel and reap everything before any slot is freed.
    for (i, slot) in slots.iter().enumerate() {
        if slot.busy {
            ring.cancel(tag(i, false));
            ring.cancel(tag(i, true));
        }
    }
    if ring.wake_buf.is_some() {
        ring.cancel(WAKE);
    }
    while ring.wake_buf.is_some() || slots.iter().any(|s| s.busy) {
        ring.turn(false)?;
        for i in 0..ring.cqes.len() {
            let (user_data, res, _) = ring.cqes[i];
            match user_data {
                WAKE => ring.woken(),
                CANCEL => {}
                t => {
                    let (index, send) = untag(t);
                    slots[index].busy = false;
                    // A receive that completed before its cancel took a datagram off the
                    // socket: received, and dropped unechoed by the stop.
                    // A send ends sent, or dropped (cancelled by the stop).
                    match (send, res >= 0) {
                        (false, true) => {
                            counters.datagram_in(res as usize);
                            counters.send_drop();
                        }
                        (true, true) => counters.datagram_out(res as usize),
                        (true, false) => counters.send_drop(),
                        (false, false) => {}
                    }
                }
            }
        }
    }
    drop(ring);
    drop(slots);
    result
}

fn serve_oneshot(
    ring: &mut Ring,
    slots: &mut [Box<Slot>],
    fd: types::Fd,
    drops: &AtomicU64,
    counters: &LoopCounters,
    ctx: &Ctx,
) -> io::Result<()> {
    while !ctx.stop.is_stopped() {
        ring.turn(ctx.config.busy_poll)?;
        for i in 0..ring.cqes.len() {
            let (user_data, res, _) = ring.cqes[i];
            match user_data {
                // Stop: the rest of this batch is still handled (a completion dropped here
                // would leave its slot marked in flight, and the drain waiting for it), and
                // the loop ends at its next check of the stop flag.
                WAKE => ring.woken(),
                CANCEL => {}
                t => {
                    let (index, send) = untag(t);
                    let slot = &mut slots[index];
                    slot.busy = false;
                    let entry = match (send, res) {
                        (false, n) if n >= 0 => {
                            saw_drops(drops, control_drops(&slot.control()));
                            counters.datagram_in(n as usize);
                            slot.send_entry(fd, index, n as usize)
                        }
                        (false, e) if benign_recv_error(-e) => slot.recv_entry(fd, index),
                        (false, e) => return Err(io::Error::from_raw_os_error(-e)),
                        (true, n) => {
                            if n >= 0 {
                                counters.datagram_out(n as usize);
                            } else {
                                log::debug!(
                                    "udp: echo dropped: {}",
                                    io::Error::from_raw_os_error(-n)
                                );
                                counters.send_drop();
                            }
                            slot.recv_entry(fd, index)
                        }
                    };
                    // SAFETY: the slot is boxed and kept until its completion is reaped.
                    unsafe { ring.push(entry) };
                }
            }
        }
    }
    Ok(())
}

/// A receive error that concerns no datagram of this socket: receive again.
fn benign_recv_error(errno: i32) -> bool {
    matches!(
        errno,
        libc::EINTR | libc::EAGAIN | libc::ECONNREFUSED | libc::ECONNRESET
    )
}

/// Bytes of each provided buffer: the `io_uring_recvmsg_out` header, the name and control
/// room, and a payload of up to 64 KiB.
const MULTISHOT_BUFFER: usize =
    DATAGRAM_BUFFER + 16 + size_of::<libc::sockaddr_storage>() + CONTROL;

/// The `msghdr` and `iovec` of the echo of one provided buffer (indexed by buffer id), in a
/// boxed slice so their addresses are stable while the send is in flight.
struct SendHdr {
    msg: libc::msghdr,
    iov: libc::iovec,
    busy: bool,
}

/// `uring-multishot --proto udp`: one multishot `RECVMSG` over the loop's buffer ring.
pub(crate) fn run_multishot(endpoint: Endpoint, ctx: &Ctx) -> io::Result<()> {
    let ring = Ring::new(ctx, true)?;
    let count = ctx.config.uring.ring_buffers;
    let bufs = BufRing::register(&ring.ring.submitter(), BGID, count, MULTISHOT_BUFFER)?;
    ctx.shared.setting("ring_buffers", count);
    ctx.shared.setting("ring_buffer_bytes", MULTISHOT_BUFFER);
    // What the receive is told (only the name and control lengths matter to the kernel).
    let mut recv_msg = Box::new(empty_msghdr());
    recv_msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    recv_msg.msg_controllen = CONTROL as _;
    let sends: Box<[SendHdr]> = (0..count)
        .map(|_| SendHdr {
            msg: empty_msghdr(),
            iov: libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
            busy: false,
        })
        .collect();
    let mut lp = Multishot {
        ring,
        bufs,
        recv_msg,
        sends,
        fd: types::Fd(endpoint.socket.as_raw_fd()),
        armed: false,
        starved: false,
        stopping: false,
        counters: ctx.shared.new_loop(),
    };
    lp.arm();
    lp.ring.ring.submit()?;
    ctx.ready();
    let result = lp.serve(&endpoint.drops, ctx);
    lp.drain()?;
    let Multishot { ring, bufs, .. } = lp;
    // Every receive that could pick a buffer has completed: the group can go.
    let unregistered = bufs.unregister(&ring.ring.submitter());
    drop(ring);
    unregistered?;
    result
}

/// One `uring-multishot` UDP loop.
struct Multishot {
    ring: Ring,
    bufs: BufRing,
    recv_msg: Box<libc::msghdr>,
    /// One per buffer id; a boxed slice never moves its elements, so the pointers a send's
    /// header holds to its own `iov` stay valid.
    sends: Box<[SendHdr]>,
    fd: types::Fd,
    /// The multishot receive is in flight.
    armed: bool,
    /// It ended on an empty buffer ring: re-arm once a buffer comes back.
    starved: bool,
    /// Draining for stop: nothing is re-armed.
    stopping: bool,
    counters: std::sync::Arc<LoopCounters>,
}

impl Multishot {
    fn arm(&mut self) {
        let entry = opcode::RecvMsgMulti::new(self.fd, &raw const *self.recv_msg, BGID)
            .build()
            .user_data(RECV);
        self.armed = true;
        self.starved = false;
        // SAFETY: `recv_msg` is boxed and outlives the loop's ring (dropped after it).
        unsafe { self.ring.push(entry) };
    }

    fn serve(&mut self, drops: &AtomicU64, ctx: &Ctx) -> io::Result<()> {
        while !ctx.stop.is_stopped() {
            self.ring.turn(ctx.config.busy_poll)?;
            for i in 0..self.ring.cqes.len() {
                let (user_data, res, flags) = self.ring.cqes[i];
                match user_data {
                    // Stop: as in `serve_oneshot`, the rest of the batch is still handled.
                    WAKE => self.ring.woken(),
                    CANCEL => {}
                    RECV => self.received(res, flags, drops)?,
                    bid => self.sent(bid as u16, res),
                }
            }
        }
        Ok(())
    }

    /// A multishot completion: echo the datagram in the buffer it names; re-arm if it ended.
    fn received(&mut self, res: i32, flags: u32, drops: &AtomicU64) -> io::Result<()> {
        if !cqueue::more(flags) {
            self.armed = false;
        }
        if let Some(bid) = cqueue::buffer_select(flags) {
            self.echo(bid, res.max(0) as usize, drops);
        } else if res == -libc::ENOBUFS {
            self.starved = true;
        } else if res < 0 && !benign_recv_error(-res) {
            return Err(io::Error::from_raw_os_error(-res));
        }
        if !self.armed && !self.starved {
            self.arm();
        }
        Ok(())
    }

    /// Sends back the datagram in buffer `bid` (`len` bytes of it used), from that buffer.
    fn echo(&mut self, bid: u16, len: usize, drops: &AtomicU64) {
        let data = self.bufs.data(bid, len);
        let Ok(out) = types::RecvMsgOut::parse(data, &self.recv_msg) else {
            log::warn!("udp: a multishot completion too short to parse; buffer returned");
            return self.bufs.give_back(bid);
        };
        saw_drops(drops, control_drops(out.control_data()));
        let payload = out.payload_data();
        self.counters.datagram_in(payload.len());
        let name_len = (out.incoming_name_len() as usize).min(out.name_data().len());
        let hdr = &mut self.sends[bid as usize];
        hdr.iov.iov_base = payload.as_ptr().cast_mut().cast();
        hdr.iov.iov_len = payload.len();
        hdr.msg = empty_msghdr();
        hdr.msg.msg_name = out.name_data().as_ptr().cast_mut().cast();
        hdr.msg.msg_namelen = name_len as libc::socklen_t;
        hdr.msg.msg_iov = &raw mut hdr.iov;
        hdr.msg.msg_iovlen = 1;
        hdr.busy = true;
        let entry = opcode::SendMsg::new(self.fd, &raw const hdr.msg)
            .flags(libc::MSG_DONTWAIT as u32)
            .build()
            .user_data(bid as u64);
        // SAFETY: the header is boxed in `sends`, and the name and payload it points to are in
        // buffer `bid`, which stays out of the ring until this send completes (`sent`).
        unsafe { self.ring.push(entry) };
    }

    /// An echo's send completed: count it, return its buffer, re-arm a starved receive.
    fn sent(&mut self, bid: u16, res: i32) {
        let Some(hdr) = self.sends.get_mut(bid as usize) else {
            return;
        };
        hdr.busy = false;
        if res >= 0 {
            self.counters.datagram_out(res as usize);
        } else {
            // A full send buffer, or a send cancelled by the stop: either way, not echoed.
            log::debug!("udp: echo dropped: {}", io::Error::from_raw_os_error(-res));
            self.counters.send_drop();
        }
        self.bufs.give_back(bid);
        if self.starved && !self.armed && !self.stopping {
            self.arm();
        }
    }

    /// Stop: cancel the receive, the wake-up read and the sends, and reap until all ended.
    fn drain(&mut self) -> io::Result<()> {
        if self.armed {
            self.ring.cancel(RECV);
        }
        if self.ring.wake_buf.is_some() {
            self.ring.cancel(WAKE);
        }
        for bid in 0..self.sends.len() {
            if self.sends[bid].busy {
                self.ring.cancel(bid as u64);
            }
        }
        self.stopping = true;
        while self.armed || self.ring.wake_buf.is_some() || self.sends.iter().any(|s| s.busy) {
            self.ring.turn(false)?;
            for i in 0..self.ring.cqes.len() {
                let (user_data, res, flags) = self.ring.cqes[i];
                match user_data {
                    WAKE => self.ring.woken(),
                    CANCEL => {}
                    RECV => {
                        if !cqueue::more(flags) {
                            self.armed = false;
                        }
                        // A datagram that arrived during the cancel: received, and dropped
                        // unechoed by the stop.
                        if let Some(bid) = cqueue::buffer_select(flags) {
                            if let Ok(out) = types::RecvMsgOut::parse(
                                self.bufs.data(bid, res.max(0) as usize),
                                &self.recv_msg,
                            ) {
                                self.counters.datagram_in(out.payload_data().len());
                                self.counters.send_drop();
                            }
                            self.bufs.give_back(bid);
                        }
                    }
                    bid => self.sent(bid as u16, res),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_tags_round_trip_below_the_reserved_values() {
        for index in [0, 1, SLOTS - 1] {
            for send in [false, true] {
                let t = tag(index, send);
                assert!(t < RECV);
                assert_eq!(untag(t), (index, send));
            }
        }
    }
}
