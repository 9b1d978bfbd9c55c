//! `iocp`: overlapped sockets on one I/O completion port, `--threads` workers dequeuing from it.
//!
//! The Windows completion model. Every operation is one heap-allocated [`Op`], `#[repr(C)]` with
//! its `OVERLAPPED` first, handed to the kernel with `Box::into_raw` and taken back with
//! `Box::from_raw` only when its completion is dequeued (`GetQueuedCompletionStatusEx`, in
//! batches) or when it completed inline. What a completion means and what comes next is
//! [`completion`](crate::completion)'s (sans-IO, shared with io_uring); this file is only what
//! IOCP does:
//!
//! - **Accepts are posted ahead.** Each listener keeps [`ACCEPTS_AHEAD`] `AcceptEx` calls in
//!   the kernel, each with a fresh overlapped socket; after each completes the socket gets
//!   `SO_UPDATE_ACCEPT_CONTEXT` (so `shutdown`, `getpeername` and friends work on it) and is
//!   associated with the port. `AcceptEx` and `GetAcceptExSockaddrs` are extension functions,
//!   loaded once per process through `WSAIoctl(SIO_GET_EXTENSION_FUNCTION_POINTER)`.
//! - **Receive and send are `WSARecv`/`WSASend`** on the connection's one buffer (lent to the
//!   kernel, `completion::Lent`); a short send is resubmitted for the rest. The half-close is a
//!   plain `shutdown(SD_SEND)`: it does not block, so it completes inline.
//! - **Skip-on-success.** Where the socket's provider is an IFS provider (`XP1_IFS_HANDLES`,
//!   checked once on the listener), accepted sockets get
//!   `FILE_SKIP_COMPLETION_PORT_ON_SUCCESS`: an operation that succeeds at once queues no
//!   packet and its `Op` is reclaimed where it was issued. A connection that keeps completing
//!   inline hands its next completion to the port after [`INLINE_BUDGET`] in a row
//!   (`PostQueuedCompletionStatus`) so it cannot starve the others.
//! - **Workers.** One port, `--threads` threads in `GetQueuedCompletionStatusEx`; the
//!   connections live in one `completion::Conns` behind a mutex, held only to update the state
//!   (never across a system call that waits).
//! - **Out of sockets** (`WSAEMFILE`/`WSAENOBUFS` when making an accept socket): the accepts
//!   that could not be posted are owed, and workers wait with a timeout until
//!   [`EXHAUSTED_PAUSE`] has passed, then post them again; nothing spins.
//! - **Stop.** The stop waker posts one packet per worker; each worker leaves after it. Then,
//!   on one thread, every operation still in flight is cancelled (`CancelIoEx` on each
//!   connection with one, and on the listeners) and its completion dequeued; only then are
//!   sockets closed and buffers freed. An `OVERLAPPED` the kernel still owns is never freed: if
//!   a cancelled operation never completes (bounded wait), it is leaked with a warning.
//!
//! The status of a dequeued operation is read from its `OVERLAPPED.Internal`, low 32 bits only
//! (an `NTSTATUS`; Wine 8 leaves the upper half undefined), and turned into a Winsock error by
//! `WSAGetOverlappedResult`. It deliberately is not RIO (registered I/O) and does not use
//! `AcceptEx`'s receive-with-accept: the first receive is an ordinary `WSARecv`, as elsewhere.
//!
//! UDP (`--proto udp`) is [`udp`]: `WSARecvFrom`/`WSASendTo` on the same port, workers and stop
//! (the helpers below: [`Port`], [`run_workers`], [`work_loop`], [`drain_port`]).
#![allow(unsafe_code)] // overlapped operations whose memory the kernel owns: the FFI edge

use std::io;
use std::mem;
use std::net::TcpListener;
use std::os::windows::io::AsRawSocket;
use std::ptr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use windows_sys::Win32::Foundation::{
    CloseHandle, GetLastError, HANDLE, INVALID_HANDLE_VALUE, WAIT_TIMEOUT,
};
use windows_sys::Win32::Networking::WinSock::{
    LPFN_ACCEPTEX, LPFN_GETACCEPTEXSOCKADDRS, SD_SEND, SIO_GET_EXTENSION_FUNCTION_POINTER,
    SO_PROTOCOL_INFOW, SO_UPDATE_ACCEPT_CONTEXT, SOCKADDR, SOCKADDR_STORAGE, SOCKET, SOCKET_ERROR,
    SOL_SOCKET, WSA_IO_PENDING, WSABUF, WSAGetLastError, WSAGetOverlappedResult, WSAID_ACCEPTEX,
    WSAID_GETACCEPTEXSOCKADDRS, WSAIoctl, WSAPROTOCOL_INFOW, WSARecv, WSASend, XP1_IFS_HANDLES,
    getsockopt, setsockopt, shutdown,
};
use windows_sys::Win32::Storage::FileSystem::SetFileCompletionNotificationModes;
use windows_sys::Win32::System::IO::{
    CancelIoEx, CreateIoCompletionPort, GetQueuedCompletionStatusEx, OVERLAPPED, OVERLAPPED_ENTRY,
    PostQueuedCompletionStatus,
};
use windows_sys::Win32::System::Threading::INFINITE;
use windows_sys::Win32::System::WindowsProgramming::{
    FILE_SKIP_COMPLETION_PORT_ON_SUCCESS, FILE_SKIP_SET_EVENT_ON_HANDLE,
};

use crate::completion::{Conns, Draining, OpKind, Step, Submission};
use crate::ctx::Ctx;
use crate::listen::{ERROR_RUN, EXHAUSTED_PAUSE, Incoming};
use crate::stats::LoopCounters;
use crate::sys::is_fd_exhaustion;

mod udp;
pub(crate) use udp::run as run_udp;

/// `AcceptEx` calls each listener keeps in the kernel.
pub(crate) const ACCEPTS_AHEAD: usize = 8;
/// Completions dequeued per `GetQueuedCompletionStatusEx`.
const BATCH: usize = 64;
/// Inline completions in a row on one connection before the next goes through the port.
const INLINE_BUDGET: usize = 16;
/// How long stop waits for cancelled operations before leaking what is left.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// The completion key of the stop packets (posted with no `OVERLAPPED`).
const KEY_WAKE: usize = 0;
/// The completion key of every socket and of re-posted inline completions.
const KEY_OP: usize = 1;

/// Room for one address in `AcceptEx`'s output buffer: the size of the largest address plus
/// the 16 bytes the function requires.
const ADDR_ROOM: usize = mem::size_of::<SOCKADDR_STORAGE>() + 16;

pub(crate) fn availability() -> Result<(), String> {
    Ok(())
}

/// One overlapped operation. `OVERLAPPED` comes first so the pointer the kernel hands back in a
/// completion is the `Op`'s own.
#[repr(C)]
struct Op {
    overlapped: OVERLAPPED,
    what: What,
}

// Each `Op` is its own heap block for exactly one operation, so a receive carrying an
// accept's address room would cost nothing but memory the allocator rounds anyway.
#[allow(clippy::large_enum_variant)]
enum What {
    /// A connection's receive or send (`socket` is the connection's, for the error lookup).
    Conn {
        key: usize,
        kind: OpKind,
        socket: SOCKET,
        buf: WSABUF,
        flags: u32,
    },
    /// An `AcceptEx` on listener `listener` into `socket`, with the addresses' room.
    Accept {
        listener: usize,
        socket: Socket,
        addrs: [u8; 2 * ADDR_ROOM],
    },
}

impl Op {
    fn boxed(what: What) -> Box<Op> {
        Box::new(Op {
            // SAFETY: OVERLAPPED is plain integers and a handle; all zeros is its start state.
            overlapped: unsafe { mem::zeroed() },
            what,
        })
    }
}

/// The completion port; closed when the last holder (the server, the stop waker) lets go.
struct Port(HANDLE);

// SAFETY: a completion port handle is usable from any thread; the calls made on it
// (post, dequeue, close) are thread-safe by the API's contract.
unsafe impl Send for Port {}
// SAFETY: as above.
unsafe impl Sync for Port {}

impl Drop for Port {
    fn drop(&mut self) {
        // SAFETY: the handle came from CreateIoCompletionPort and is closed once, here.
        unsafe { CloseHandle(self.0) };
    }
}

impl Port {
    fn new(threads: usize) -> io::Result<Port> {
        // SAFETY: creates a new port; no memory of ours is involved.
        let h = unsafe {
            CreateIoCompletionPort(INVALID_HANDLE_VALUE, ptr::null_mut(), 0, threads as u32)
        };
        if h.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(Port(h))
    }

    fn associate(&self, socket: SOCKET) -> io::Result<()> {
        // SAFETY: `socket` is an open overlapped socket we own; the port is open.
        let h = unsafe { CreateIoCompletionPort(socket as HANDLE, self.0, KEY_OP, 0) };
        if h.is_null() {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    fn wake(&self) {
        // SAFETY: a packet with no OVERLAPPED: nothing of ours is handed over.
        unsafe { PostQueuedCompletionStatus(self.0, 0, KEY_WAKE, ptr::null()) };
    }

    /// Stop wakes every worker: one packet each (see [`work_loop`] for a batch with several).
    fn wake_on_stop(self: &Arc<Self>, ctx: &Ctx, workers: usize) {
        let waker = self.clone();
        ctx.stop.on_stop(move || {
            for _ in 0..workers {
                waker.wake();
            }
        });
    }

    /// One `GetQueuedCompletionStatusEx`: the number of entries filled (0 on timeout).
    fn dequeue(&self, entries: &mut [OVERLAPPED_ENTRY; BATCH], timeout: u32) -> io::Result<usize> {
        let mut n = 0u32;
        // SAFETY: `entries` has BATCH writable entries; the port is open; not alertable.
        let ok = unsafe {
            GetQueuedCompletionStatusEx(
                self.0,
                entries.as_mut_ptr(),
                BATCH as u32,
                &mut n,
                timeout,
                0,
            )
        };
        if ok != 0 {
            return Ok(n as usize);
        }
        // SAFETY: reads this thread's last error; no memory involved.
        match unsafe { GetLastError() } {
            WAIT_TIMEOUT => Ok(0),
            code => Err(io::Error::from_raw_os_error(code as i32)),
        }
    }
}

/// Runs `work` on `--threads` scoped workers named `{name}-{i}` and joins them; one worker
/// failing stops the others (through the stop packets) and its error is returned.
fn run_workers(ctx: &Ctx, name: &str, work: impl Fn() -> io::Result<()> + Sync) -> io::Result<()> {
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..ctx.config.threads)
            .map(|i| {
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn_scoped(s, &work)
            })
            .collect::<io::Result<Vec<_>>>()?;
        let mut result = Ok(());
        for w in workers {
            let r = w
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("iocp worker panicked")));
            if r.is_err() {
                // One worker failing stops the others (their stop packets are posted).
                ctx.stop.stop();
                result = result.and(r);
            }
        }
        result
    })
}

/// One worker: dequeue a batch (waiting `timeout()` ms), hand every operation's completion to
/// `completed`, then call `after_batch`, until a stop packet. The whole batch is handled even
/// when one completion fails (each entry is an operation only this worker got back); the
/// first failure is returned after it.
fn work_loop(
    port: &Port,
    ctx: &Ctx,
    timeout: impl Fn() -> u32,
    mut completed: impl FnMut(&OVERLAPPED_ENTRY) -> io::Result<()>,
    mut after_batch: impl FnMut(),
) -> io::Result<()> {
    // SAFETY: OVERLAPPED_ENTRY is plain data; all zeros is a valid value to be overwritten.
    let mut entries: [OVERLAPPED_ENTRY; BATCH] = unsafe { mem::zeroed() };
    loop {
        let n = port.dequeue(&mut entries, timeout())?;
        let mut wakes = 0;
        let mut result = Ok(());
        for e in &entries[..n] {
            if e.lpOverlapped.is_null() {
                wakes += usize::from(e.lpCompletionKey == KEY_WAKE);
                continue;
            }
            let r = completed(e);
            result = result.and(r);
        }
        after_batch();
        // One stop packet is posted per worker, but one batch may dequeue several: the
        // ones this worker does not need go back for the others, still asleep.
        for _ in 1..wakes {
            port.wake();
        }
        result?;
        if wakes > 0 || ctx.stop.is_stopped() {
            return Ok(());
        }
    }
}

/// Stop, after every worker left and everything in flight was cancelled: dequeues each
/// operation's completion into `each` until `settled(state)` (every operation back), for at
/// most [`DRAIN_LIMIT`]. False if time ran out: what is still out then is the kernel's, and the
/// caller must leak it, never free it.
fn drain_port<S>(
    port: &Port,
    state: &mut S,
    settled: impl Fn(&S) -> bool,
    mut each: impl FnMut(&mut S, &OVERLAPPED_ENTRY),
) -> bool {
    let deadline = Instant::now() + DRAIN_LIMIT;
    // SAFETY: OVERLAPPED_ENTRY is plain data; all zeros is a valid value to be overwritten.
    let mut entries: [OVERLAPPED_ENTRY; BATCH] = unsafe { mem::zeroed() };
    while !settled(state) {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = match port.dequeue(&mut entries, left.as_millis() as u32) {
            Ok(n) => n,
            Err(e) => {
                log::warn!("iocp: dequeue failed while stopping: {e}");
                0
            }
        };
        if n == 0 && Instant::now() >= deadline {
            log::warn!(
                "iocp: operations still in flight {DRAIN_LIMIT:?} after cancel; leaking them"
            );
            return false;
        }
        for e in &entries[..n] {
            if !e.lpOverlapped.is_null() {
                each(state, e); // a null one is a stop packet no worker took
            }
        }
    }
    true
}

/// The extension functions, loaded once per process.
struct Ext {
    accept_ex: LPFN_ACCEPTEX,
    sockaddrs: LPFN_GETACCEPTEXSOCKADDRS,
}

fn load<T>(socket: SOCKET, guid: windows_sys::core::GUID) -> io::Result<T> {
    let mut f = mem::MaybeUninit::<T>::zeroed();
    let mut bytes = 0u32;
    // SAFETY: in: the GUID (16 bytes, alive for the call); out: room for one function pointer
    // (`T` is an `Option<fn>`), written by the provider; synchronous (no OVERLAPPED).
    let rc = unsafe {
        WSAIoctl(
            socket,
            SIO_GET_EXTENSION_FUNCTION_POINTER,
            (&guid as *const windows_sys::core::GUID).cast(),
            mem::size_of_val(&guid) as u32,
            f.as_mut_ptr().cast(),
            mem::size_of::<T>() as u32,
            &mut bytes,
            ptr::null_mut(),
            None,
        )
    };
    if rc == SOCKET_ERROR {
        return Err(wsa_error());
    }
    // SAFETY: zero-initialised `Option<fn>` (None) or the pointer the provider wrote.
    Ok(unsafe { f.assume_init() })
}

fn ext(listener: SOCKET) -> io::Result<&'static Ext> {
    static EXT: OnceLock<Ext> = OnceLock::new();
    if let Some(e) = EXT.get() {
        return Ok(e);
    }
    let e = Ext {
        accept_ex: load(listener, WSAID_ACCEPTEX)?,
        sockaddrs: load(listener, WSAID_GETACCEPTEXSOCKADDRS)?,
    };
    if e.accept_ex.is_none() || e.sockaddrs.is_none() {
        return Err(io::Error::other("the socket provider offers no AcceptEx"));
    }
    Ok(EXT.get_or_init(|| e))
}

/// Whether the listener's provider is an IFS provider, the condition for skip-on-success
/// (a layered non-IFS provider may then lose completions).
fn ifs_provider(listener: SOCKET) -> bool {
    // SAFETY: WSAPROTOCOL_INFOW is plain data; all zeros is a valid value to be overwritten.
    let mut info: WSAPROTOCOL_INFOW = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<WSAPROTOCOL_INFOW>() as i32;
    // SAFETY: `info` has `len` writable bytes; the call writes at most that and sets `len`.
    let rc = unsafe {
        getsockopt(
            listener,
            SOL_SOCKET,
            SO_PROTOCOL_INFOW,
            (&mut info as *mut WSAPROTOCOL_INFOW).cast(),
            &mut len,
        )
    };
    rc == 0 && info.dwServiceFlags1 & XP1_IFS_HANDLES != 0
}

fn wsa_error() -> io::Error {
    // SAFETY: reads this thread's last Winsock error; no memory involved.
    io::Error::from_raw_os_error(unsafe { WSAGetLastError() })
}

/// A dequeued operation's result: `bytes`, or the Winsock error its status stands for.
fn result_of(overlapped: &OVERLAPPED, socket: SOCKET, bytes: u32) -> io::Result<usize> {
    // Only the low 32 bits: an NTSTATUS (Wine 8 leaves the upper half undefined).
    if overlapped.Internal as u32 == 0 {
        return Ok(bytes as usize);
    }
    let (mut n, mut flags) = (0u32, 0u32);
    // SAFETY: the operation completed (it was dequeued), so its OVERLAPPED is final and ours;
    // fWait is false, nothing is waited for.
    let ok = unsafe { WSAGetOverlappedResult(socket, overlapped, &mut n, 0, &mut flags) };
    if ok != 0 {
        Ok(n as usize)
    } else {
        Err(wsa_error())
    }
}

/// The state the workers share, behind one mutex.
struct State {
    conns: Conns<Socket>,
    /// `AcceptEx` operations in the kernel, over all listeners.
    accepts_in_kernel: usize,
    /// Accepts each listener is owed (could not be posted, or completed and not yet reposted).
    owed: Vec<usize>,
    /// Accepts are paused until then (out of sockets, or a run of errors).
    paused_until: Option<Instant>,
    /// Accept errors in a row that were not socket exhaustion.
    error_run: usize,
}

/// One server: the port, its listeners and the shared state.
struct Iocp<'a> {
    ctx: &'a Ctx,
    port: Arc<Port>,
    listeners: Vec<TcpListener>,
    ext: &'static Ext,
    skip: bool,
    counters: Arc<LoopCounters>,
    state: Mutex<State>,
}

/// Runs the server: posts the accepts, then `--threads` workers until stop, then drains.
pub(crate) fn run(incoming: Vec<Incoming>, ctx: &Ctx) -> io::Result<()> {
    let listeners = incoming
        .into_iter()
        .map(|i| match i {
            Incoming::Listener(l) => Ok(l),
            Incoming::Handoff(_) => Err(io::Error::other("iocp accepts itself: no hand-off")),
        })
        .collect::<io::Result<Vec<_>>>()?;
    let threads = ctx.config.threads;
    let port = Arc::new(Port::new(threads)?);
    let first = listeners
        .first()
        .ok_or_else(|| io::Error::other("no listener"))?;
    let ext = ext(first.as_raw_socket() as SOCKET)?;
    let skip = ifs_provider(first.as_raw_socket() as SOCKET);
    for l in &listeners {
        port.associate(l.as_raw_socket() as SOCKET)?;
    }
    ctx.shared.setting("accepts_ahead", ACCEPTS_AHEAD);
    ctx.shared.setting("batch", BATCH);
    ctx.shared.setting("skip_on_success", skip);
    port.wake_on_stop(ctx, threads);
    let server = Iocp {
        ctx,
        port,
        ext,
        skip,
        counters: ctx.shared.new_loop(),
        state: Mutex::new(State {
            conns: Conns::new(ctx.config.buffer_size),
            accepts_in_kernel: 0,
            owed: vec![ACCEPTS_AHEAD; listeners.len()],
            paused_until: None,
            error_run: 0,
        }),
        listeners,
    };
    server.post_owed(&mut server.lock());
    // Posted before ready: once the server says it accepts, its accepts are in the kernel.
    ctx.ready();
    let result = run_workers(ctx, "iocp", || server.work());
    // Whatever ended the workers, nothing is freed while the kernel may still use it.
    server.drain();
    result
}

impl Iocp<'_> {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One worker: dequeue a batch, handle each completion, until a stop packet.
    fn work(&self) -> io::Result<()> {
        work_loop(
            &self.port,
            self.ctx,
            || self.timeout(),
            |e| {
                // SAFETY: every non-null OVERLAPPED on this port is the first field of an
                // `Op` this server handed over with Box::into_raw, and its completion (this
                // entry) is how it comes back, once.
                let op = unsafe { Box::from_raw(e.lpOverlapped.cast::<Op>()) };
                self.completed(op, e.dwNumberOfBytesTransferred);
                Ok(())
            },
            || self.resume_accepts(),
        )
    }

    /// How long a worker may wait: zero when busy-polling, until the accept pause ends when
    /// one is on, otherwise forever.
    fn timeout(&self) -> u32 {
        if self.ctx.config.busy_poll {
            return 0;
        }
        match self.lock().paused_until {
            Some(t) => {
                let left = t.saturating_duration_since(Instant::now());
                left.as_nanos()
                    .div_ceil(1_000_000)
                    .min(INFINITE as u128 - 1) as u32
            }
            None => INFINITE,
        }
    }

    /// A dequeued operation, while serving.
    fn completed(&self, op: Box<Op>, bytes: u32) {
        match op.what {
            What::Conn {
                key, kind, socket, ..
            } => {
                let result = result_of(&op.overlapped, socket, bytes);
                drop(op);
                self.advance(key, kind, result);
            }
            What::Accept { .. } => self.accepted(op, bytes),
        }
    }

    /// Feeds one connection's completion to the state machine and issues what it asks for,
    /// following inline completions until one is pending, the connection closes, or its
    /// inline budget is spent.
    fn advance(&self, key: usize, kind: OpKind, result: io::Result<usize>) {
        self.follow(self.step(key, kind, result));
    }

    /// Issues `next` and whatever its inline completions lead to.
    fn follow(&self, mut next: Option<(Submission, SOCKET)>) {
        let mut inline_run = 0;
        while let Some((sub, socket)) = next {
            next = match self.issue(sub, socket, inline_run) {
                Issued::Pending => None,
                Issued::Inline(result) => {
                    inline_run += 1;
                    self.step(sub.key, sub.kind, result)
                }
            };
        }
    }

    /// The state machine's answer to a completion: the next submission and its socket.
    fn step(
        &self,
        key: usize,
        kind: OpKind,
        result: io::Result<usize>,
    ) -> Option<(Submission, SOCKET)> {
        let mut state = self.lock();
        match state
            .conns
            .complete(key, kind, result, &self.counters, &self.ctx.shared)?
        {
            Step::Submit(sub) => {
                let socket = state.conns.fd(sub.key)?.as_raw_socket() as SOCKET;
                Some((sub, socket))
            }
            Step::Closed => None,
        }
    }

    /// Issues one submission. The connection has no other operation in flight, so nobody else
    /// touches its socket or buffer meanwhile; the mutex is not held.
    fn issue(&self, sub: Submission, socket: SOCKET, inline_run: usize) -> Issued {
        if sub.kind == OpKind::Shutdown {
            // shutdown does not wait: it completes here, inline.
            // SAFETY: `socket` is the connection's open socket.
            let rc = unsafe { shutdown(socket, SD_SEND) };
            return Issued::Inline(if rc == 0 { Ok(0) } else { Err(wsa_error()) });
        }
        let op = Box::into_raw(Op::boxed(What::Conn {
            key: sub.key,
            kind: sub.kind,
            socket,
            buf: WSABUF {
                len: sub.len.min(u32::MAX as usize) as u32,
                buf: sub.ptr,
            },
            flags: 0,
        }));
        let mut bytes = 0u32;
        // SAFETY: `op` is a live Box just leaked; the kernel owns it from here until its
        // completion is dequeued, unless the call completes inline (below). The buffer is the
        // connection's, lent by `completion` until this operation's completion is fed back.
        let rc = unsafe {
            let What::Conn { buf, flags, .. } = &mut (*op).what else {
                unreachable!()
            };
            if sub.kind == OpKind::Recv {
                WSARecv(
                    socket,
                    buf,
                    1,
                    &mut bytes,
                    flags,
                    &mut (*op).overlapped,
                    None,
                )
            } else {
                WSASend(socket, buf, 1, &mut bytes, 0, &mut (*op).overlapped, None)
            }
        };
        let error = (rc == SOCKET_ERROR).then(wsa_error);
        match error {
            // Pending: the completion will be dequeued.
            Some(e) if e.raw_os_error() == Some(WSA_IO_PENDING) => Issued::Pending,
            // Failed at once: no packet is queued, the op is ours again.
            Some(e) => {
                // SAFETY: the call failed without starting the operation; nothing else holds `op`.
                drop(unsafe { Box::from_raw(op) });
                Issued::Inline(Err(e))
            }
            // Succeeded at once. Without skip-on-success a packet is queued all the same and
            // the op stays the kernel's until it is dequeued.
            None if !self.skip => Issued::Pending,
            None if inline_run + 1 >= INLINE_BUDGET => {
                // Hand the completion to the port, behind whatever else is waiting.
                // SAFETY: the op completed and is ours; the port takes it until dequeued.
                let posted = unsafe {
                    (*op).overlapped.Internal = 0;
                    PostQueuedCompletionStatus(self.port.0, bytes, KEY_OP, &(*op).overlapped)
                };
                if posted != 0 {
                    Issued::Pending
                } else {
                    // SAFETY: the post failed, so the op is still only ours.
                    drop(unsafe { Box::from_raw(op) });
                    Issued::Inline(Ok(bytes as usize))
                }
            }
            None => {
                // SAFETY: completed inline with skip-on-success: no packet, the op is ours.
                drop(unsafe { Box::from_raw(op) });
                Issued::Inline(Ok(bytes as usize))
            }
        }
    }

    /// An `AcceptEx` completed: adopt the socket (or count the error), then post another.
    fn accepted(&self, op: Box<Op>, bytes: u32) {
        let What::Accept { listener, .. } = op.what else {
            unreachable!("called for accepts only")
        };
        let listen_sock = self.listeners[listener].as_raw_socket() as SOCKET;
        let result = result_of(&op.overlapped, listen_sock, bytes);
        let Op {
            what: What::Accept { socket, addrs, .. },
            ..
        } = *op
        else {
            unreachable!("called for accepts only")
        };
        {
            let mut state = self.lock();
            state.accepts_in_kernel -= 1;
            state.owed[listener] += 1;
        }
        if self.ctx.stop.is_stopped() {
            return; // the socket is dropped (closed): the server is going away
        }
        match result.and_then(|_| self.prepare(&socket, listen_sock, &addrs)) {
            Ok(()) => {
                let raw = socket.as_raw_socket() as SOCKET;
                let sub = {
                    let mut state = self.lock();
                    state.error_run = 0;
                    let sub = state.conns.open(socket, &self.ctx.shared);
                    self.post_owed(&mut state);
                    sub
                };
                self.follow(Some((sub, raw)));
            }
            Err(e) => {
                // Per connection (a peer that reset before it was accepted: WSAECONNRESET,
                // WSAENOTCONN under Wine): counted, never fatal.
                self.ctx.shared.accept_error();
                log::debug!("accept: {e} (counted, still accepting)");
                let mut state = self.lock();
                state.error_run += 1;
                if state.error_run >= ERROR_RUN {
                    state.error_run = 0;
                    state.paused_until = Some(Instant::now() + Duration::from_millis(10));
                }
                self.post_owed(&mut state);
            }
        }
    }

    /// An accepted socket made usable: accept context, `TCP_NODELAY`, the port, skip mode.
    fn prepare(
        &self,
        socket: &Socket,
        listener: SOCKET,
        addrs: &[u8; 2 * ADDR_ROOM],
    ) -> io::Result<()> {
        let raw = socket.as_raw_socket() as SOCKET;
        // SAFETY: the option value is the listener's handle, `size_of::<SOCKET>()` bytes.
        let rc = unsafe {
            setsockopt(
                raw,
                SOL_SOCKET,
                SO_UPDATE_ACCEPT_CONTEXT,
                (&listener as *const SOCKET).cast(),
                mem::size_of::<SOCKET>() as i32,
            )
        };
        if rc == SOCKET_ERROR {
            return Err(wsa_error());
        }
        socket.set_tcp_nodelay(true)?;
        if log::log_enabled!(log::Level::Debug) {
            log::debug!("accepted {}", peer(self.ext, addrs));
        }
        self.port.associate(raw)?;
        if self.skip {
            let flags =
                (FILE_SKIP_COMPLETION_PORT_ON_SUCCESS | FILE_SKIP_SET_EVENT_ON_HANDLE) as u8;
            // SAFETY: `raw` is an open socket we own.
            if unsafe { SetFileCompletionNotificationModes(raw as HANDLE, flags) } == 0 {
                // Then success would queue a packet on this socket and not on the others,
                // which `issue` cannot tell apart: refuse the connection rather than guess.
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Posts every accept the listeners are owed, unless paused.
    fn post_owed(&self, state: &mut State) {
        if state.paused_until.is_some() || self.ctx.stop.is_stopped() {
            return;
        }
        for listener in 0..self.listeners.len() {
            while state.owed[listener] > 0 {
                match self.post_accept(listener) {
                    Ok(()) => {
                        state.owed[listener] -= 1;
                        state.accepts_in_kernel += 1;
                    }
                    Err(e) => {
                        self.ctx.shared.accept_error();
                        state.error_run += 1;
                        if is_fd_exhaustion(&e) || state.error_run >= ERROR_RUN {
                            log::warn!("accept: {e}; pausing accepts for {EXHAUSTED_PAUSE:?}");
                            state.error_run = 0;
                            state.paused_until = Some(Instant::now() + EXHAUSTED_PAUSE);
                            return;
                        }
                        log::debug!("accept: {e} (counted, still accepting)");
                    }
                }
            }
        }
    }

    /// Ends an accept pause whose time has come.
    fn resume_accepts(&self) {
        let mut state = self.lock();
        if state.paused_until.is_some_and(|t| t <= Instant::now()) {
            state.paused_until = None;
            self.post_owed(&mut state);
        }
    }

    /// One `AcceptEx` on `listener` into a fresh socket.
    fn post_accept(&self, listener: usize) -> io::Result<()> {
        let l = &self.listeners[listener];
        let domain = Domain::for_address(l.local_addr()?);
        // socket2 makes it overlapped and not inheritable.
        let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
        let accept_raw = socket.as_raw_socket() as SOCKET;
        let op = Box::into_raw(Op::boxed(What::Accept {
            listener,
            socket,
            addrs: [0; 2 * ADDR_ROOM],
        }));
        let accept_ex = self.ext.accept_ex.expect("checked when loaded");
        let mut bytes = 0u32;
        // SAFETY: `op` is a live Box just leaked; the kernel owns it (and writes the addresses
        // into its `addrs`) until its completion is dequeued. The listener is not in
        // skip-on-success mode, so even an immediate success queues a packet.
        let ok = unsafe {
            let What::Accept { addrs, .. } = &mut (*op).what else {
                unreachable!()
            };
            accept_ex(
                l.as_raw_socket() as SOCKET,
                accept_raw,
                addrs.as_mut_ptr().cast(),
                0,
                ADDR_ROOM as u32,
                ADDR_ROOM as u32,
                &mut bytes,
                &mut (*op).overlapped,
            )
        };
        if ok != 0 {
            return Ok(());
        }
        let e = wsa_error();
        if e.raw_os_error() == Some(WSA_IO_PENDING) {
            return Ok(());
        }
        // SAFETY: the call failed without starting the operation; nothing else holds `op`.
        drop(unsafe { Box::from_raw(op) });
        Err(e)
    }

    /// Stop, after every worker left: cancel what is in flight, dequeue every cancelled
    /// operation, and only then close the sockets and free the buffers.
    fn drain(&self) {
        let (draining, accepts) = {
            let mut state = self.lock();
            let conns = mem::replace(&mut state.conns, Conns::new(0));
            (conns.stop(), state.accepts_in_kernel)
        };
        let draining: Draining<Socket> = draining;
        let cancel: Vec<SOCKET> = draining
            .in_flight()
            .filter_map(|(key, _)| draining.fd(key).map(|s| s.as_raw_socket() as SOCKET))
            .collect();
        for socket in cancel
            .into_iter()
            .chain(self.listeners.iter().map(|l| l.as_raw_socket() as SOCKET))
        {
            // SAFETY: cancels every operation on an open socket we own; a FALSE return
            // (ERROR_NOT_FOUND: it already completed) leaves its packet queued, dequeued below.
            unsafe { CancelIoEx(socket as HANDLE, ptr::null()) };
        }
        let mut out = (draining, accepts);
        let drained = drain_port(
            &self.port,
            &mut out,
            |(draining, accepts)| draining.is_drained() && *accepts == 0,
            |(draining, accepts), e| {
                // SAFETY: as in `work`: an `Op` of ours, given back once by its completion.
                let op = unsafe { Box::from_raw(e.lpOverlapped.cast::<Op>()) };
                match op.what {
                    What::Conn {
                        key, kind, socket, ..
                    } => {
                        let result =
                            result_of(&op.overlapped, socket, e.dwNumberOfBytesTransferred);
                        drop(op);
                        draining.complete(key, kind, result, &self.counters);
                    }
                    What::Accept { .. } => *accepts -= 1, // dropping the op closes its socket
                }
            },
        );
        let (draining, _) = out;
        if !drained {
            // Never free an OVERLAPPED the kernel may still own: leak what is left.
            mem::forget(draining);
            return;
        }
        match draining.finish() {
            Ok(drained) => drained.close(&self.counters, &self.ctx.shared),
            Err(_) => unreachable!("the loop above ends only when drained"),
        }
    }
}

/// What became of an issued operation.
enum Issued {
    /// In the kernel (or the port): its completion will be dequeued.
    Pending,
    /// Done already, with this result.
    Inline(io::Result<usize>),
}

/// The peer's address from `AcceptEx`'s output, for the log.
fn peer(ext: &Ext, addrs: &[u8; 2 * ADDR_ROOM]) -> String {
    let Some(f) = ext.sockaddrs else {
        return "?".into();
    };
    let (mut local, mut remote): (*mut SOCKADDR, *mut SOCKADDR) =
        (ptr::null_mut(), ptr::null_mut());
    let (mut local_len, mut remote_len) = (0i32, 0i32);
    // SAFETY: `addrs` is the buffer AcceptEx filled, described with the same sizes; the
    // pointers returned point into it.
    unsafe {
        f(
            addrs.as_ptr().cast(),
            0,
            ADDR_ROOM as u32,
            ADDR_ROOM as u32,
            &mut local,
            &mut local_len,
            &mut remote,
            &mut remote_len,
        )
    };
    let len = remote_len.clamp(0, mem::size_of::<SOCKADDR_STORAGE>() as i32);
    if remote.is_null() || len == 0 {
        return "?".into();
    }
    let mut storage = socket2::SockAddrStorage::zeroed();
    // SAFETY: `remote` points at `len` bytes inside `addrs` (checked above, at most a
    // SOCKADDR_STORAGE); `storage` has room for a SOCKADDR_STORAGE.
    let addr = unsafe {
        ptr::copy_nonoverlapping(
            remote.cast::<u8>(),
            (&mut storage as *mut socket2::SockAddrStorage).cast::<u8>(),
            len as usize,
        );
        socket2::SockAddr::new(storage, len)
    };
    addr.as_socket().map_or("?".into(), |a| a.to_string())
}
