#!/usr/bin/env python3
"""echo-check.py: an independent, black-box checker for the iomodels RFC 862 echo servers.

Why it exists, and why it is independent
----------------------------------------
iomodels has one echo server per I/O model and a Rust load generator that measures them. If the
load generator and the servers shared a bug (a framing helper, a buffer type, a wrong idea of
what "echoed" means), the Rust tests could pass while the servers are wrong. This script is the
second opinion: Python 3.11 standard library only, no code or constants shared with the Rust
crates, and it talks to a server only through what any user can see: a TCP socket, the
process's stdout/exit code, and /proc/PID/status. Everything it sends is random bytes from a
seeded PRNG (print the seed with -v, replay it with --seed) and every byte that comes back is
compared with what was sent.

What it checks (each check has its own time limit and says what went wrong)
--------------------------------------------------------------------------
  sizes        Messages of 1, 2, 3, 7, 64, 512, 1460, 4096, 16383, 16384, 16385, 65536, 262144
               bytes and 1 MiB: one fresh connection each, then all of them in turn on one
               connection. Each echoed intact. Writing and reading are interleaved with
               non-blocking I/O, so a server that applies backpressure cannot deadlock us.
  pipelining   1,000 messages of random sizes (1..2048) sent as one burst (a sendall of their
               concatenation, in a writer thread), read back concurrently; a mismatch names the
               message it falls in.
  drip         300 bytes, one byte per send with TCP_NODELAY: the first 100 in lock step (each
               byte must come back before the next is sent: the server must not wait for "more"),
               the other 200 back to back with reads interleaved; all echoed in order.
  concurrency  300 connections opened at once (all connected before any data), then each does
               10 round trips of 1..4096 random bytes, all driven by one `selectors` loop.
  half-close   100 KiB then shutdown(SHUT_WR): everything must still be echoed, and then the
               server must close its side (EOF) within 5 s. Then the same with the FIN sent
               while the server still holds echo it could not write yet (write without reading
               until the writer stalls, SHUT_WR at once, then read): loopback buffers swallow
               100 KiB whole, so only this second part catches a server that drops its pending
               echo when it sees EOF.
  reset-storm  500 connections in bursts of 50; half send data first (some 256 KiB that the
               server cannot finish echoing, some reset just after the echo started), and every
               one is closed with SO_LINGER {1, 0}, i.e. a TCP RST. Afterwards a fresh
               connection must still echo correctly and the server process must still be alive.
  non-reading  One client writes 64 MiB as fast as it can while reading nothing for 2 s (its
               writes stall when the buffers fill: that is backpressure), then reads everything
               back while writing the rest; all 64 MiB must be intact. The server's RSS
               (/proc/PID/status VmRSS, sampled every 50 ms, plus VmHWM) must not grow by
               32 MiB or more: a server that keeps reading from a client that is not reading
               buffers without bound. Needs the server's PID (--serve knows it; --addr needs
               --pid); without it only the data is checked.
  soak         64 clients, each with up to 4 small messages (1..512 bytes) in flight, for 2 s;
               every byte verified. A quick soak, not a benchmark.

With --serve and --models-from the checker also owns the server process:
  start        The first stdout line must be `listening HOST:PORT`, within 20 s.
  stop         After the checks (and a 1 s settle so the server can see the last closes), SIGINT;
               the server must exit 0 within 5 s and print exactly one JSON line whose keys
               include accepted, open, peak_open, bytes_in, bytes_out, peak_buffered_bytes and
               accept_errors. They are cross-checked with what the checker itself counted:
                 open == 0;
                 received <= bytes_out <= bytes_in <= sent, where sent/received are the bytes
                   the checker wrote/read; so when every byte sent came back, bytes_in ==
                   bytes_out == sent exactly. The reset storm is the one legitimate exception:
                   bytes written on a connection that is then reset may have been read by the
                   server, which then cannot write them back (EPIPE/ECONNRESET) or whose
                   written echo is dropped by the RST. Then bytes_in - bytes_out may be up to
                   sent - received; that difference is reported, not failed;
                 accepted <= connections attempted, and >= connections that echoed a byte;
                 peak_open >= 300 if concurrency passed (300 connections were provably open
                   and echoing at the same time; an echo server never closes first);
                 peak_buffered_bytes < 32 MiB if the non-reading check ran;
                 with --models-from, a "model" key (if present) names the model started.

Usage
-----
  echo-check.py [options] --addr 127.0.0.1:PORT [--pid PID]
  echo-check.py [options] --serve target/release/iomodels serve epoll --listen 127.0.0.1:0
  echo-check.py [options] --models-from target/release/iomodels
Options: --only CHECK[,CHECK] (repeatable), -v, --seed N, --timeout-scale F (slow builds,
Wine), --wine (prefix the server commands with /usr/lib/wine/wine64; SIGINT is still the stop
signal and memory measurement through the PID is best effort). --serve takes the rest of the
command line, so put the other options before it.

Output: one line per check, `PASS name (detail) 0.42s` or `FAIL name: reason (2.01s)`, then
`N passed, M failed`; with --models-from also a model x check table. Exit status: 0 if every
check passed, 1 if any failed, 2 on a usage error.

All traffic goes to the address given (127.0.0.1 for servers the checker starts). Every wait
is bounded (a transfer also fails after 10 s with no byte moving, so a hung server fails in
seconds, not minutes; each check also has a watchdog). Every started server is stopped
(SIGINT, then SIGKILL of its process group if needed) even when the checker fails or is
interrupted, and dies with the checker (PR_SET_PDEATHSIG) if the checker itself is killed.
"""

import argparse
import ctypes
import errno
import json
import os
import queue
import random
import re
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

KiB = 1024
MiB = 1024 * KiB
RSS_LIMIT = 32 * MiB
WINE = "/usr/lib/wine/wine64"
STATS_KEYS = ("accepted", "open", "peak_open", "bytes_in", "bytes_out",
              "peak_buffered_bytes", "accept_errors")

SIZES = [1, 2, 3, 7, 64, 512, 1460, 4096, 16383, 16384, 16385, 65536, 262144, 1 * MiB]
CONCURRENT = 300
STORM = 500
STORM_BURST = 50
NONREAD_TOTAL = 64 * MiB
SOAK_CLIENTS = 64


class CheckFail(Exception):
    """A check found the server wrong; the message says how."""


def fmt_bytes(n):
    if abs(n) >= MiB:
        return f"{n / MiB:.1f} MiB"
    if abs(n) >= KiB:
        return f"{n / KiB:.1f} KiB"
    return f"{n} B"


def first_diff(a, b):
    """Index of the first differing byte of two equal-length byte strings."""
    lo, hi = 0, len(a)
    while hi - lo > 64:  # bisect on slices: fast even for MiB-sized chunks
        mid = (lo + hi) // 2
        if a[lo:mid] != b[lo:mid]:
            hi = mid
        else:
            lo = mid
    for i in range(lo, hi):
        if a[i] != b[i]:
            return i
    return hi


def describe_mismatch(base, expected, got):
    i = first_diff(expected, got)
    e, g = bytes(expected[i:i + 8]), bytes(got[i:i + 8])
    hint = ""
    if len(got) - i > 16 and bytes(got[i:i + 16]) == bytes(expected[i + 1:i + 17]):
        hint = " (looks like a byte was dropped)"
    elif len(got) - i > 16 and bytes(got[i + 1:i + 17]) == bytes(expected[i:i + 16]):
        hint = " (looks like a byte was inserted)"
    return (f"echoed data differs at stream offset {base + i}: expected {e.hex(' ')}, "
            f"got {g.hex(' ')}{hint}")


class Expect:
    """The bytes a connection still has to get back, compared as they arrive."""

    def __init__(self, data=b""):
        self.buf = bytearray(data)
        self.pos = 0  # bytes verified so far

    def add(self, data):
        self.buf += data

    @property
    def pending(self):
        return len(self.buf)

    def feed(self, b):
        n = len(b)
        if n > len(self.buf):
            raise CheckFail(f"server sent {n - len(self.buf)} bytes more than it was sent "
                            f"(after {self.pos} correct bytes)")
        if self.buf[:n] != b:
            raise CheckFail(describe_mismatch(self.pos, self.buf[:n], b))
        del self.buf[:n]  # O(1) at the front of a bytearray
        self.pos += n


class Ctx:
    """What one run of checks shares: the address, the PRNG, and what the checker counted."""

    def __init__(self, addr, pid=None, proc=None, verbose=False, scale=1.0, seed=0, out=None):
        self.addr_text = addr
        self.family, self.sockaddr = resolve(addr)
        self.pid = pid
        self.proc = proc
        self.verbose = verbose
        self.scale = scale
        self.rng = random.Random(seed)
        self.out = out or sys.stdout
        self.lock = threading.Lock()
        self.sent = 0           # bytes the checker wrote into sockets
        self.received = 0       # bytes the checker read from sockets
        self.attempted = 0      # connections the checker tried to open
        self.echoed = set()     # id() of connections that got at least one byte back
        self.all_socks = []     # keeps sockets referenced so their id() stays unique
        self.live = set()       # open sockets of the running check (closed by the watchdog)
        self.peak_concurrent = 0
        self.ran = set()        # checks that completed (pass or fail)
        self.passed = set()

    def log(self, msg):
        if self.verbose:
            print(f"    {msg}", file=self.out, flush=True)

    def t(self, seconds):
        return seconds * self.scale

    def socket(self):
        s = socket.socket(self.family, socket.SOCK_STREAM)
        with self.lock:
            self.all_socks.append(s)
            self.live.add(s)
            self.attempted += 1
        return s

    def connect(self, timeout=5.0, nodelay=False, rcvbuf=None):
        s = self.socket()
        s.settimeout(self.t(timeout))
        if rcvbuf:  # before connect(): the window scale is fixed by the handshake
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if nodelay:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            s.connect(self.sockaddr)
        except OSError as e:
            self.close(s)
            raise CheckFail(f"cannot connect to {self.addr_text}: {e}") from None
        return s

    def send(self, s, data):
        n = s.send(data)
        with self.lock:
            self.sent += n
        return n

    def recv(self, s, n, flags=0):
        b = s.recv(n, flags)
        if b:
            with self.lock:
                self.received += len(b)
                self.echoed.add(id(s))
        return b

    def close(self, s, rst=False):
        try:
            if rst:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        except OSError:
            pass
        with self.lock:
            self.live.discard(s)

    def close_live(self):
        with self.lock:
            socks, self.live = list(self.live), set()
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in send/recv
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass

    def alive(self):
        """(alive?, why not) of the server process, if the checker knows it."""
        if self.proc is not None:
            rc = self.proc.poll()
            return (rc is None, f"server process exited with status {rc}")
        if self.pid:
            try:
                with open(f"/proc/{self.pid}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
                if state in ("Z", "X"):
                    return (False, f"server process {self.pid} is a zombie (exited)")
            except OSError:
                return (False, f"server process {self.pid} no longer exists")
        return (True, "")


def resolve(addr):
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address must be HOST:PORT, got {addr!r}")
    host = host.strip("[]")
    infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    if not infos:
        raise ValueError(f"cannot resolve {addr!r}")
    return infos[0][0], infos[0][4]


def pump(ctx, s, data, timeout, *, shut_wr=False, until_eof=False, eof_timeout=5.0,
         hold_reads=0.0, chunk=256 * KiB, present=0, stall=10.0):
    """Send `data` on `s` while reading its echo back (non-blocking, so server backpressure
    cannot deadlock us), and verify every byte. Optionally shut down our write side once all is
    sent and require the server's EOF after the echo; optionally read nothing for the first
    `hold_reads` seconds. The first `present` bytes of `data` count as sent already. Fails
    after `timeout` seconds in all, or after `stall` seconds without a byte moving either way.
    Returns a dict with what happened."""
    s.setblocking(False)
    total = len(data)
    view = memoryview(data)
    exp = Expect(data)
    sent = present
    eof = False
    t0 = time.monotonic()
    deadline = t0 + ctx.t(timeout)
    reads_from = t0 + hold_reads
    info = {"held_sent": None, "echo_done": None, "eof_after": None}
    last_move = reads_from
    sel = selectors.DefaultSelector()
    registered = None

    def progress():
        return f"sent {sent} of {total} bytes, {exp.pos} echoed back"

    try:
        while True:
            now = time.monotonic()
            if exp.pos == total and (not until_eof or eof):
                break
            if now >= deadline:
                if exp.pos == total and until_eof:
                    raise CheckFail("all data echoed, but the server never closed the connection")
                raise CheckFail(f"timed out after {now - t0:.1f}s: {progress()}")
            if exp.pos < total and now - last_move > ctx.t(stall):
                raise CheckFail(f"no byte moved for {ctx.t(stall):.0f}s: {progress()}")
            if info["echo_done"] is not None and until_eof and \
                    now - info["echo_done"] > ctx.t(eof_timeout):
                raise CheckFail(f"all {total} bytes echoed, but no EOF from the server within "
                                f"{ctx.t(eof_timeout):.0f}s after our shutdown(SHUT_WR)")
            want = selectors.EVENT_WRITE if sent < total else 0
            reading = now >= reads_from
            if reading:
                want |= selectors.EVENT_READ
                if hold_reads and info["held_sent"] is None:
                    info["held_sent"] = sent
            wait = min(deadline - now, 0.25)
            if not reading:
                wait = min(wait, reads_from - now)
            if want == 0:
                time.sleep(max(wait, 0))
                continue
            if registered is None:
                sel.register(s, want)
            elif registered != want:
                sel.modify(s, want)
            registered = want
            for _key, ev in sel.select(max(wait, 0)):
                if ev & selectors.EVENT_WRITE and sent < total:
                    try:
                        sent += ctx.send(s, view[sent:sent + chunk])
                        last_move = max(last_move, time.monotonic())
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError as e:
                        raise CheckFail(f"send failed ({e}); {progress()}") from None
                    if sent == total and shut_wr:
                        s.shutdown(socket.SHUT_WR)
                if ev & selectors.EVENT_READ:
                    try:
                        b = ctx.recv(s, 256 * KiB)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError as e:
                        raise CheckFail(f"recv failed ({e}); {progress()}") from None
                    if not b:
                        if exp.pos < total:
                            raise CheckFail(f"server closed the connection early: {progress()}")
                        eof = True
                        info["eof_after"] = time.monotonic() - info["echo_done"]
                        continue
                    exp.feed(b)
                    last_move = max(last_move, time.monotonic())
                    if exp.pos == total and info["echo_done"] is None:
                        info["echo_done"] = time.monotonic()
    finally:
        sel.close()
    return info


# ----------------------------------------------------------------------------------------------
# The checks. Each takes the Ctx, returns a detail string, or raises CheckFail.


def check_sizes(ctx):
    for n in SIZES:
        data = ctx.rng.randbytes(n)
        s = ctx.connect()
        try:
            pump(ctx, s, data, 20)
        except CheckFail as e:
            raise CheckFail(f"{n}-byte message on its own connection: {e}") from None
        finally:
            ctx.close(s)
    s = ctx.connect()
    try:
        for n in SIZES:
            try:
                pump(ctx, s, ctx.rng.randbytes(n), 20)
            except CheckFail as e:
                raise CheckFail(f"{n}-byte message, all sizes in turn on one connection: {e}") \
                    from None
    finally:
        ctx.close(s)
    return f"{len(SIZES)} sizes 1 B..1 MiB, each alone and all on one connection"


def check_pipelining(ctx):
    sizes = [ctx.rng.randint(1, 2048) for _ in range(1000)]
    blob = ctx.rng.randbytes(sum(sizes))
    total = len(blob)
    s = ctx.connect()
    deadline = time.monotonic() + ctx.t(30)
    s.settimeout(ctx.t(30))
    err = []
    sent = [0]

    def writer():  # sendall, written out so the checker counts what really went out
        view = memoryview(blob)
        try:
            while sent[0] < total:
                sent[0] += ctx.send(s, view[sent[0]:])
        except OSError as e:
            err.append(e)

    w = threading.Thread(target=writer, daemon=True)
    w.start()
    exp = Expect(blob)
    try:
        while exp.pos < total:
            if time.monotonic() > deadline:
                raise CheckFail(f"timed out: sent {sent[0]} of {total}, {exp.pos} echoed back")
            try:
                b = ctx.recv(s, 256 * KiB)
            except TimeoutError:
                continue
            except OSError as e:
                raise CheckFail(f"recv failed ({e}) after {exp.pos} of {total} bytes") from None
            if not b:
                raise CheckFail(f"server closed the connection after echoing {exp.pos} of "
                                f"{total} bytes" + (f" (send error: {err[0]})" if err else ""))
            try:
                exp.feed(b)
            except CheckFail as e:
                # which message does the bad byte fall in?
                m = re.search(r"offset (\d+)", str(e))
                if m:
                    off, acc = int(m.group(1)), 0
                    for i, n in enumerate(sizes):
                        if acc + n > off:
                            raise CheckFail(f"message {i} of 1000 ({n} bytes, starting at "
                                            f"offset {acc}): {e}") from None
                        acc += n
                raise
        w.join(ctx.t(5))
    finally:
        ctx.close(s)
    return f"1000 messages, {fmt_bytes(total)} in one burst"


def check_drip(ctx):
    data = ctx.rng.randbytes(300)
    s = ctx.connect(nodelay=True)
    exp = Expect(data)
    worst = 0.0
    try:
        # phase 1: lock step, each byte must come back before the next one is sent
        for i in range(100):
            ctx.send(s, data[i:i + 1])
            t0 = time.monotonic()
            limit = t0 + ctx.t(5)
            while exp.pos <= i:
                left = limit - time.monotonic()
                if left <= 0:
                    raise CheckFail(f"byte {i} sent alone was not echoed within "
                                    f"{ctx.t(5):.0f}s (does the server wait for more data?)")
                s.settimeout(left)
                try:
                    b = ctx.recv(s, 4096)
                except TimeoutError:
                    continue
                except OSError as e:
                    raise CheckFail(f"recv failed ({e}) after {exp.pos} bytes") from None
                if not b:
                    raise CheckFail(f"server closed the connection after {exp.pos} bytes")
                exp.feed(b)
            worst = max(worst, time.monotonic() - t0)
        # phase 2: back to back, one byte per send, reading whatever has arrived in between
        s.setblocking(False)
        for i in range(100, 300):
            while True:
                try:
                    ctx.send(s, data[i:i + 1])
                    break
                except (BlockingIOError, InterruptedError):
                    time.sleep(0.001)  # cannot happen with 300 bytes, but never spin hot
            try:
                b = ctx.recv(s, 4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:
                raise CheckFail(f"recv failed ({e}) after {exp.pos} bytes") from None
            if not b:
                raise CheckFail(f"server closed the connection after {exp.pos} bytes")
            exp.feed(b)
        limit = time.monotonic() + ctx.t(10)
        while exp.pos < 300:
            left = limit - time.monotonic()
            if left <= 0:
                raise CheckFail(f"only {exp.pos} of 300 dripped bytes echoed within "
                                f"{ctx.t(10):.0f}s")
            s.settimeout(left)
            try:
                b = ctx.recv(s, 4096)
            except TimeoutError:
                continue
            if not b:
                raise CheckFail(f"server closed the connection after {exp.pos} bytes")
            exp.feed(b)
    finally:
        ctx.close(s)
    return f"300 single-byte sends, slowest lock-step echo {worst * 1000:.1f} ms"


def connect_many(ctx, n, timeout):
    """Open n connections at once with non-blocking connects; return them when all are up."""
    socks = []
    sel = selectors.DefaultSelector()
    try:
        for i in range(n):
            s = ctx.socket()
            s.setblocking(False)
            rc = s.connect_ex(ctx.sockaddr)
            if rc not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
                raise CheckFail(f"connection {i} of {n} failed at once: {os.strerror(rc)}")
            socks.append(s)
            sel.register(s, selectors.EVENT_WRITE, i)
        up = 0
        deadline = time.monotonic() + ctx.t(timeout)
        while up < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CheckFail(f"only {up} of {n} connections established within "
                                f"{ctx.t(timeout):.0f}s")
            for key, _ev in sel.select(min(left, 0.5)):
                err = key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise CheckFail(f"connection {key.data} of {n} failed: {os.strerror(err)} "
                                    f"({up} were up)")
                sel.unregister(key.fileobj)
                up += 1
    finally:
        sel.close()
    return socks


def check_concurrency(ctx):
    rounds = 10
    socks = connect_many(ctx, CONCURRENT, 30)
    sel = selectors.DefaultSelector()
    state = {}
    total = 0
    try:
        def next_round(s, st):
            nonlocal total
            msg = ctx.rng.randbytes(ctx.rng.randint(1, 4096))
            total += len(msg)
            st["exp"].add(msg)
            st["out"] = memoryview(msg)
            sel.modify(s, selectors.EVENT_READ | selectors.EVENT_WRITE, st)

        for i, s in enumerate(socks):
            st = {"i": i, "round": 0, "exp": Expect(), "out": None}
            state[s] = st
            sel.register(s, selectors.EVENT_READ, st)
        for s in socks:
            next_round(s, state[s])
        done = 0
        deadline = time.monotonic() + ctx.t(30)
        while done < CONCURRENT:
            left = deadline - time.monotonic()
            if left <= 0:
                behind = sorted(st["round"] for st in state.values())
                silent = sum(1 for s in socks if id(s) not in ctx.echoed)
                raise CheckFail(f"timed out after {ctx.t(30):.0f}s: {done} of {CONCURRENT} "
                                f"connections finished their {rounds} round trips; slowest is "
                                f"in round {behind[0]}; {silent} never got a byte back")
            for key, ev in sel.select(min(left, 0.5)):
                s, st = key.fileobj, key.data
                where = f"connection {st['i']}, round {st['round']}"
                if ev & selectors.EVENT_WRITE and st["out"] is not None:
                    try:
                        n = ctx.send(s, st["out"])
                    except (BlockingIOError, InterruptedError):
                        n = 0
                    except OSError as e:
                        raise CheckFail(f"{where}: send failed: {e}") from None
                    st["out"] = st["out"][n:]
                    if not len(st["out"]):
                        st["out"] = None
                        sel.modify(s, selectors.EVENT_READ, st)
                if ev & selectors.EVENT_READ:
                    try:
                        b = ctx.recv(s, 65536)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError as e:
                        raise CheckFail(f"{where}: recv failed: {e}") from None
                    if not b:
                        raise CheckFail(f"{where}: server closed the connection")
                    try:
                        st["exp"].feed(b)
                    except CheckFail as e:
                        raise CheckFail(f"{where}: {e}") from None
                    if st["exp"].pending == 0 and st["out"] is None:
                        st["round"] += 1
                        if st["round"] == rounds:
                            done += 1
                            sel.unregister(s)
                        else:
                            next_round(s, st)
        # every connection echoed while none of them had been closed: all were open at once
        with ctx.lock:
            ctx.peak_concurrent = max(ctx.peak_concurrent, CONCURRENT)
    finally:
        sel.close()
        for s in socks:
            ctx.close(s)
    return f"{CONCURRENT} connections x {rounds} round trips, {fmt_bytes(total)}"


def check_half_close(ctx):
    # 1. The plain case: 100 KiB, SHUT_WR, read to EOF.
    data = ctx.rng.randbytes(100 * KiB)
    s = ctx.connect()
    try:
        info = pump(ctx, s, data, 20, shut_wr=True, until_eof=True, eof_timeout=5)
    except CheckFail as e:
        raise CheckFail(f"100 KiB then SHUT_WR: {e}") from None
    finally:
        ctx.close(s)
    eof1 = info["eof_after"]
    # 2. FIN while the server still holds echo it has not written: write without reading until
    # the writer stalls (every buffer on the way is full), SHUT_WR at once, then read. Loopback
    # buffers swallow 100 KiB whole, so a server that drops its pending echo when it sees EOF
    # passes part 1 and fails here.
    data = ctx.rng.randbytes(16 * MiB)
    view = memoryview(data)
    s = ctx.connect()
    sel = selectors.DefaultSelector()
    sent = 0
    try:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_WRITE)
        limit = time.monotonic() + ctx.t(5)
        while sent < len(data) and time.monotonic() < limit:
            if not sel.select(0.2):
                break  # stalled for 0.2 s: the pipe is full
            try:
                sent += ctx.send(s, view[sent:sent + 1 * MiB])
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as e:
                raise CheckFail(f"stalled writer: send failed after {sent} bytes: {e}") from None
        s.shutdown(socket.SHUT_WR)
        try:
            info = pump(ctx, s, data[:sent], 20, until_eof=True, eof_timeout=5, present=sent)
        except CheckFail as e:
            raise CheckFail(f"SHUT_WR after {sent} bytes written without reading: {e}") from None
    finally:
        sel.close()
        ctx.close(s)
    return (f"100 KiB, EOF {eof1 * 1000:.0f} ms after the echo; {fmt_bytes(sent)} with SHUT_WR "
            f"while stalled, EOF {info['eof_after'] * 1000:.0f} ms after the echo")


def fresh_echo(ctx, what):
    for n in (1, 64 * KiB):
        s = ctx.connect()
        try:
            pump(ctx, s, ctx.rng.randbytes(n), 10)
        except CheckFail as e:
            raise CheckFail(f"{what}: a fresh {n}-byte echo failed: {e}") from None
        finally:
            ctx.close(s)


def check_reset_storm(ctx):
    sent_on_reset = 0
    senders = 0
    mid_echo = 0
    for start in range(0, STORM, STORM_BURST):
        socks = connect_many(ctx, STORM_BURST, 30)
        for j, s in enumerate(socks):
            k = start + j
            if k % 2 == 0:
                senders += 1
                size = 256 * KiB if k % 10 == 0 else ctx.rng.randint(1, 8192)
                try:
                    sent_on_reset += ctx.send(s, ctx.rng.randbytes(size))  # as much as fits
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError as e:
                    raise CheckFail(f"storm connection {k}: send failed: {e}") from None
                if k % 10 == 4:  # reset just after the echo has started to come back
                    s.settimeout(ctx.t(0.5))
                    try:
                        if ctx.recv(s, 1):
                            mid_echo += 1
                    except OSError:
                        pass
            ctx.close(s, rst=True)
        ok, why = ctx.alive()
        if not ok:
            raise CheckFail(f"{why} during the reset storm (after {start + STORM_BURST} "
                            f"connections were reset)")
    time.sleep(0.2)
    fresh_echo(ctx, "after the reset storm")
    ok, why = ctx.alive()
    if not ok:
        raise CheckFail(f"{why} after the reset storm")
    alive_note = "server alive" if (ctx.proc is not None or ctx.pid) else "server answers"
    return (f"{STORM} RSTs, {senders} after sending {fmt_bytes(sent_on_reset)} "
            f"({mid_echo} mid-echo); fresh echo OK, {alive_note}")


def read_mem(pid):
    """(VmRSS, VmHWM) in bytes, or None if /proc does not tell."""
    try:
        with open(f"/proc/{pid}/status") as f:
            text = f.read()
        rss = int(re.search(r"^VmRSS:\s+(\d+) kB", text, re.M).group(1)) * KiB
        hwm = int(re.search(r"^VmHWM:\s+(\d+) kB", text, re.M).group(1)) * KiB
        return rss, hwm
    except (OSError, AttributeError, ValueError):
        return None


def check_non_reading(ctx):
    data = ctx.rng.randbytes(NONREAD_TOTAL)
    pid = ctx.pid or (ctx.proc.pid if ctx.proc is not None else None)
    before = read_mem(pid) if pid else None
    samples = []
    stop = threading.Event()

    def sampler():
        while not stop.is_set():
            m = read_mem(pid)
            if m:
                samples.append(m[0])
            stop.wait(0.05)

    th = None
    if before:
        th = threading.Thread(target=sampler, daemon=True)
        th.start()
    s = ctx.connect()
    t0 = time.monotonic()
    try:
        info = pump(ctx, s, data, 120, hold_reads=2.0, chunk=1 * MiB)
    finally:
        stop.set()
        if th:
            th.join(1)
        ctx.close(s)
    took = time.monotonic() - t0
    held = info["held_sent"] or 0
    base = f"64 MiB intact, {fmt_bytes(held)} written before the writer stalled"
    if not pid:
        return base + "; RSS not measured (no --pid)"
    after = read_mem(pid)
    if not before or not after or not samples:
        return base + f"; RSS of pid {pid} not readable (best effort)"
    peak = max(samples + [after[0]])
    if after[1] > before[1]:  # the high-water mark moved during the check: it is the peak
        peak = max(peak, after[1])
    growth = peak - before[0]
    mem = (f"RSS +{fmt_bytes(max(growth, 0))} ({fmt_bytes(before[0])} -> peak "
           f"{fmt_bytes(peak)}, {len(samples)} samples)")
    ctx.log(f"non-reading: {fmt_bytes(NONREAD_TOTAL / took)}/s overall, {mem}")
    if held >= NONREAD_TOTAL:
        ctx.log("non-reading: the server took all 64 MiB while the client read nothing")
    if growth >= RSS_LIMIT:
        raise CheckFail(f"{mem} while a client wrote without reading: the server buffers "
                        f"without bound (limit {fmt_bytes(RSS_LIMIT)}); "
                        f"{fmt_bytes(held)} were accepted before the writer stalled")
    return f"{base}; {mem}"


def check_soak(ctx):
    duration = 2.0
    socks = connect_many(ctx, SOAK_CLIENTS, 30)
    sel = selectors.DefaultSelector()
    msgs = 0
    total = 0
    try:
        state = {}
        for i, s in enumerate(socks):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            st = {"i": i, "exp": Expect(), "out": bytearray(), "ends": [], "sent_total": 0}
            state[s] = st
            sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, st)
        t0 = time.monotonic()
        end = t0 + duration
        deadline = end + ctx.t(20)
        while True:
            now = time.monotonic()
            feeding = now < end
            if not feeding and all(st["exp"].pending == 0 for st in state.values()):
                break
            if now > deadline:
                left = sum(st["exp"].pending for st in state.values())
                raise CheckFail(f"timed out draining: {left} bytes never came back")
            for s, st in state.items():  # top up: at most 4 messages in flight per client
                if feeding and len(st["ends"]) < 4:
                    while len(st["ends"]) < 4:
                        msg = ctx.rng.randbytes(ctx.rng.randint(1, 512))
                        st["exp"].add(msg)
                        st["out"] += msg
                        st["sent_total"] += len(msg)
                        st["ends"].append(st["sent_total"])
                want = selectors.EVENT_READ | (selectors.EVENT_WRITE if st["out"] else 0)
                if sel.get_key(s).events != want:
                    sel.modify(s, want, st)
            for key, ev in sel.select(0.1):
                s, st = key.fileobj, key.data
                if ev & selectors.EVENT_WRITE and st["out"]:
                    try:
                        n = ctx.send(s, st["out"])
                    except (BlockingIOError, InterruptedError):
                        n = 0
                    except OSError as e:
                        raise CheckFail(f"client {st['i']}: send failed: {e}") from None
                    del st["out"][:n]
                if ev & selectors.EVENT_READ:
                    try:
                        b = ctx.recv(s, 65536)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError as e:
                        raise CheckFail(f"client {st['i']}: recv failed: {e}") from None
                    if not b:
                        raise CheckFail(f"client {st['i']}: server closed the connection")
                    try:
                        st["exp"].feed(b)
                    except CheckFail as e:
                        raise CheckFail(f"client {st['i']}: {e}") from None
                    total += len(b)
                    while st["ends"] and st["ends"][0] <= st["exp"].pos:
                        st["ends"].pop(0)
                        msgs += 1
        took = time.monotonic() - t0
    finally:
        sel.close()
        for s in socks:
            ctx.close(s)
    return (f"{SOAK_CLIENTS} clients, {msgs} messages ({msgs / took:.0f}/s), "
            f"{fmt_bytes(total)} verified")


CHECKS = [  # name, function, time limit in seconds (scaled by --timeout-scale)
    ("sizes", check_sizes, 90),
    ("pipelining", check_pipelining, 40),
    ("drip", check_drip, 40),
    ("concurrency", check_concurrency, 70),
    ("half-close", check_half_close, 30),
    ("reset-storm", check_reset_storm, 120),
    ("non-reading", check_non_reading, 130),
    ("soak", check_soak, 40),
]
CHECK_NAMES = [c[0] for c in CHECKS]


# ----------------------------------------------------------------------------------------------
# Running checks, reporting


class Reporter:
    def __init__(self, out=sys.stdout, prefix=""):
        self.out = out
        self.prefix = prefix
        self.results = []  # (name, ok, seconds, text)

    def add(self, name, ok, seconds, text):
        self.results.append((name, ok, seconds, text))
        if ok:
            line = f"PASS {name} ({text}) {seconds:.2f}s"
        else:
            line = f"FAIL {name}: {text} ({seconds:.2f}s)"
        print(self.prefix + line, file=self.out, flush=True)

    @property
    def failed(self):
        return sum(1 for r in self.results if not r[1])

    @property
    def passed(self):
        return sum(1 for r in self.results if r[1])


def run_checks(ctx, names, rep):
    dead = None
    for name, fn, limit in CHECKS:
        if name not in names:
            continue
        if dead:
            rep.add(name, False, 0.0, f"not run: {dead}")
            continue
        result = {}

        def target(fn=fn, result=result):
            try:
                result["detail"] = fn(ctx)
            except CheckFail as e:
                result["error"] = str(e)
            except Exception as e:  # a bug in the checker must not look like a pass
                result["error"] = f"checker error: {type(e).__name__}: {e}"
                if ctx.verbose:
                    traceback.print_exc()

        t0 = time.monotonic()
        th = threading.Thread(target=target, name=f"check-{name}", daemon=True)
        th.start()
        th.join(ctx.t(limit) + 10)
        if th.is_alive():  # internal deadlines failed us: unblock the check and move on
            ctx.close_live()
            th.join(5)
            result.setdefault("error", f"no result within {ctx.t(limit) + 10:.0f}s (watchdog)")
        ctx.close_live()
        took = time.monotonic() - t0
        ok, why = ctx.alive()
        if not ok:
            dead = why
            if why not in result.get("error", ""):
                result["error"] = (result["error"] + "; " if "error" in result else "") + \
                    f"{why} during this check"
        ctx.ran.add(name)
        if "error" in result:
            rep.add(name, False, took, result["error"])
        else:
            ctx.passed.add(name)
            rep.add(name, True, took, result.get("detail", ""))


class ServerProcess:
    """A server the checker started: its stdout lines, stderr in a temp file, stopping it."""

    def __init__(self, cmd, verbose=False, scale=1.0, wine=False):
        self.cmd = cmd
        self.verbose = verbose
        self.scale = scale
        self.wine = wine
        self.proc = None
        self.lines = queue.Queue()
        self.reader = None
        self.errf = None

    def start(self):
        self.errf = tempfile.TemporaryFile(prefix="echo-check-stderr-")
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = getattr(libc, "prctl", None)

        def die_with_parent():  # PR_SET_PDEATHSIG: the server dies if the checker is killed
            if prctl is not None:
                prctl(1, int(signal.SIGKILL))

        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.errf, start_new_session=True,
                                     preexec_fn=die_with_parent)

        def read():
            try:
                for raw in self.proc.stdout:
                    self.lines.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
            except (OSError, ValueError):
                pass
            self.lines.put(None)

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()

    def wait_listening(self, timeout):
        """The address from the first stdout line, or raise CheckFail."""
        try:
            line = self.lines.get(timeout=timeout * self.scale)
        except queue.Empty:
            raise CheckFail(f"no 'listening ADDR' line on stdout within "
                            f"{timeout * self.scale:.0f}s{self.stderr_tail()}") from None
        if line is None:
            try:
                rc = self.proc.wait(2)
            except subprocess.TimeoutExpired:
                rc = "?"
            raise CheckFail(f"server closed stdout (exit status {rc}) before printing "
                            f"'listening ADDR'{self.stderr_tail()}")
        m = re.fullmatch(r"listening (\S+:\d+)", line.strip())
        if not m:
            raise CheckFail(f"first stdout line should be 'listening HOST:PORT', got {line!r}")
        return m.group(1)

    def stderr_tail(self, n=600):
        if not self.errf:
            return ""
        try:
            self.errf.seek(0)
            text = self.errf.read().decode("utf-8", "replace").strip()
        except OSError:
            return ""
        if not text:
            return ""
        return "; stderr: " + (("..." + text[-n:]) if len(text) > n else text).replace("\n", " | ")

    def stop(self, timeout):
        """SIGINT, wait; returns (exit status, stdout lines after the listening line)."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(timeout * self.scale)
        except subprocess.TimeoutExpired:
            self.kill()
            raise CheckFail(f"server did not exit within {timeout * self.scale:.0f}s of SIGINT "
                            f"(killed){self.stderr_tail()}") from None
        took = time.monotonic() - t0
        self.reader.join(2)
        lines = []
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                lines.append(line)
        return rc, took, lines

    def kill(self):
        """Make sure nothing we started is left running (idempotent)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        elif not self.wine:
            # the server is gone; reap any helper it left in its process group (not under Wine,
            # whose wineserver may be shared with other Wine processes)
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except (OSError, ValueError):
                pass
        if self.errf:
            self.errf.close()
            self.errf = None


def verify_stats(ctx, stats):
    """Cross-check the server's own stats with what the checker counted. Returns (problems,
    notes)."""
    problems, notes = [], []
    if stats["open"] != 0:
        problems.append(f"open = {stats['open']} after shutdown (every client connection had "
                        f"been closed before SIGINT)")
    sent, received = ctx.sent, ctx.received
    bi, bo = stats["bytes_in"], stats["bytes_out"]
    if bo < received:
        problems.append(f"bytes_out = {bo} but the checker read {received} echoed bytes")
    if bi > sent:
        problems.append(f"bytes_in = {bi} but the checker sent only {sent} bytes")
    if bo > bi:
        problems.append(f"bytes_out = {bo} > bytes_in = {bi}: more written than read")
    if not problems:
        if bi == bo:
            notes.append(f"bytes_in = bytes_out = {bi}")
        else:
            notes.append(f"bytes_in - bytes_out = {bi - bo} <= {sent - received} bytes sent but "
                         f"never read back (reset-storm connections: read, then not writable)")
    if stats["accepted"] > ctx.attempted:
        problems.append(f"accepted = {stats['accepted']} but the checker opened only "
                        f"{ctx.attempted} connections")
    if stats["accepted"] < len(ctx.echoed):
        problems.append(f"accepted = {stats['accepted']} but {len(ctx.echoed)} connections got "
                        f"echoed data")
    if stats["peak_open"] < ctx.peak_concurrent:
        problems.append(f"peak_open = {stats['peak_open']} but {ctx.peak_concurrent} connections "
                        f"were open and echoing at the same time")
    if "non-reading" in ctx.ran and stats["peak_buffered_bytes"] >= RSS_LIMIT:
        problems.append(f"peak_buffered_bytes = {stats['peak_buffered_bytes']} "
                        f"(>= {fmt_bytes(RSS_LIMIT)}): unbounded buffering")
    notes.append(f"accepted={stats['accepted']} peak_open={stats['peak_open']} "
                 f"peak_buffered={fmt_bytes(stats['peak_buffered_bytes'])} "
                 f"accept_errors={stats['accept_errors']}")
    return problems, notes


def serve_and_check(cmd, names, args, rep, model=None):
    """Start a server, check it, stop it. Results go to rep."""
    server = ServerProcess(cmd, verbose=args.verbose, scale=args.timeout_scale, wine=args.wine)
    t0 = time.monotonic()
    try:
        try:
            server.start()
        except OSError as e:
            rep.add("start", False, time.monotonic() - t0, f"cannot run {cmd[0]!r}: {e}")
            return
        try:
            addr = server.wait_listening(20)
        except CheckFail as e:
            # Under Wine a process can die before any Windows code runs when its connection to
            # wineserver fails ("wine client error: ... recvmsg: Connection reset by peer", seen
            # on a loaded machine): Wine's, not the model's. One fresh start, said in the report.
            if not (args.wine and "wine client error" in str(e)):
                rep.add("start", False, time.monotonic() - t0, str(e))
                return
            server.kill()
            server = ServerProcess(cmd, verbose=args.verbose, scale=args.timeout_scale, wine=args.wine)
            try:
                server.start()
                addr = server.wait_listening(20)
            except (OSError, CheckFail) as e2:
                rep.add("start", False, time.monotonic() - t0, f"{e2} (second start; first: {e})")
                return
            print(f"  note: started again after a Wine client error: {e}")
        rep.add("start", True, time.monotonic() - t0, f"listening {addr}, pid {server.proc.pid}")
        ctx = Ctx(addr, proc=server.proc, verbose=args.verbose, scale=args.timeout_scale,
                  seed=args.seed, out=rep.out)
        run_checks(ctx, names, rep)
        time.sleep(args.settle)  # let the server see the last closes before we ask for stats
        t1 = time.monotonic()
        if server.proc.poll() is not None:
            rep.add("stop", False, 0.0, f"server had already exited with status "
                    f"{server.proc.returncode} before SIGINT{server.stderr_tail()}")
            return
        try:
            rc, took, lines = server.stop(5)
        except CheckFail as e:
            rep.add("stop", False, time.monotonic() - t1, str(e))
            return
        texts = [ln for ln in (x.strip() for x in lines) if ln]
        ctx.log(f"stdout after SIGINT: {texts!r}")
        if rc != 0:
            rep.add("stop", False, took, f"exit status {rc} after SIGINT (expected 0)"
                    f"{server.stderr_tail()}")
            return
        if len(texts) != 1:
            rep.add("stop", False, took, f"expected exactly one JSON stats line on stdout "
                    f"after SIGINT, got {len(texts)}: {texts[:3]!r}")
            return
        try:
            stats = json.loads(texts[0])
        except ValueError as e:
            rep.add("stop", False, took, f"stats line is not JSON ({e}): {texts[0][:200]!r}")
            return
        if not isinstance(stats, dict):
            rep.add("stop", False, took, f"stats line is not a JSON object: {texts[0][:200]!r}")
            return
        missing = [k for k in STATS_KEYS if k not in stats]
        bad = [k for k in STATS_KEYS if k in stats and
               (not isinstance(stats[k], int) or isinstance(stats[k], bool) or stats[k] < 0)]
        if missing or bad:
            rep.add("stop", False, took, f"stats JSON: missing keys {missing}, not "
                    f"non-negative integers {bad}: {texts[0][:300]}")
            return
        problems, notes = verify_stats(ctx, stats)
        if model is not None and "model" in stats and stats["model"] != model:
            problems.append(f"stats say model {stats['model']!r}, but {model!r} was started")
        if problems:
            rep.add("stop", False, took, "; ".join(problems) + f" [stats: {texts[0][:300]}]")
        else:
            rep.add("stop", True, took, "exit 0; " + "; ".join(notes))
    finally:
        if args.verbose and server.errf:
            print(f"    server stderr{server.stderr_tail(2000) or ': (empty)'}", file=rep.out)
        server.kill()


def print_table(models, per_model, columns):
    width = max([5] + [len(m) for m in models])
    cellw = max([11] + [len(c) for c in columns])
    print("", flush=True)
    print(" ".join([f"{'model':<{width}}"] + [f"{c:<{cellw}}" for c in columns]))
    for m in models:
        res = {r[0]: r for r in per_model[m].results}
        cells = []
        for c in columns:
            if c not in res:
                cells.append(f"{'-':<{cellw}}")
            else:
                _, ok, secs, _ = res[c]
                cells.append(f"{('PASS' if ok else 'FAIL') + f' {secs:.2f}s':<{cellw}}")
        print(" ".join([f"{m:<{width}}"] + cells))
    failures = [(m, r) for m in models for r in per_model[m].results if not r[1]]
    if failures:
        print("\nfailures:")
        for m, (name, _, _, text) in failures:
            print(f"  {m} {name}: {text}")
    sys.stdout.flush()


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Independent black-box checker for RFC 862 echo servers (iomodels).",
        epilog="--serve takes the rest of the command line: put other options before it.")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--addr", metavar="HOST:PORT", help="check an already running server")
    mode.add_argument("--serve", nargs=argparse.REMAINDER, metavar="CMD",
                      help="start CMD (which must print 'listening ADDR'), check it, stop it")
    mode.add_argument("--models-from", metavar="BIN",
                      help="check every model of `BIN models --names` with "
                           "`BIN serve MODEL --listen 127.0.0.1:0`")
    p.add_argument("--pid", type=int, help="with --addr: the server's PID, for memory checks")
    p.add_argument("--wine", action="store_true", help=f"prefix server commands with {WINE}")
    p.add_argument("--only", action="append", metavar="CHECK",
                   help=f"run only these checks (comma-separated, repeatable): "
                        f"{', '.join(CHECK_NAMES)}")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--seed", type=int, help="PRNG seed (default: random, printed with -v)")
    p.add_argument("--timeout-scale", type=float, default=1.0, metavar="F",
                   help="multiply every time limit by F (slow debug builds, Wine)")
    p.add_argument("--settle", type=float, default=1.0, metavar="SECONDS",
                   help="pause between the last check and SIGINT (default 1)")
    args = p.parse_args(argv)
    if args.serve is not None and not args.serve:
        p.error("--serve needs a command")
    if args.pid is not None and args.addr is None:
        p.error("--pid goes with --addr")
    if args.timeout_scale <= 0:
        p.error("--timeout-scale must be positive")
    names = CHECK_NAMES
    if args.only:
        names = [n.strip() for o in args.only for n in o.split(",") if n.strip()]
        unknown = [n for n in names if n not in CHECK_NAMES]
        if unknown:
            p.error(f"unknown check(s) {unknown}; known: {', '.join(CHECK_NAMES)}")
    if args.addr:
        try:
            resolve(args.addr)
        except (ValueError, OSError) as e:
            p.error(str(e))
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 32)
    return args, set(names)


def raise_fd_limit():
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, ValueError, OSError):
        pass


def main(argv=None):
    args, names = parse_args(sys.argv[1:] if argv is None else argv)
    raise_fd_limit()

    def on_term(signum, _frame):  # run the finally blocks: stop the servers we started
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    prefix = [WINE] if args.wine else []
    if args.verbose:
        print(f"seed {args.seed} (replay with --seed {args.seed})", flush=True)
    try:
        if args.addr:
            rep = Reporter()
            ctx = Ctx(args.addr, pid=args.pid, verbose=args.verbose, scale=args.timeout_scale,
                      seed=args.seed)
            run_checks(ctx, names, rep)
            passed, failed = rep.passed, rep.failed
        elif args.serve:
            rep = Reporter()
            serve_and_check(prefix + args.serve, names, args, rep)
            passed, failed = rep.passed, rep.failed
        else:
            cmd = prefix + [args.models_from, "models", "--names"]
            try:
                r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                                   timeout=30 * args.timeout_scale)
            except (OSError, subprocess.TimeoutExpired) as e:
                print(f"FAIL models: cannot run {' '.join(cmd)}: {e}", flush=True)
                print("0 passed, 1 failed")
                return 1
            models = [m.strip() for m in r.stdout.decode("utf-8", "replace").splitlines()
                      if m.strip()]
            if r.returncode != 0 or not models:
                err = r.stderr.decode("utf-8", "replace").strip()[-300:]
                print(f"FAIL models: `{' '.join(cmd)}` exited {r.returncode} listing "
                      f"{len(models)} models; stderr: {err}", flush=True)
                print("0 passed, 1 failed")
                return 1
            print(f"models: {' '.join(models)}", flush=True)
            per_model = {}
            for m in models:
                print(f"== {m}", flush=True)
                per_model[m] = Reporter(prefix="  ")
                serve_and_check(prefix + [args.models_from, "serve", m, "--listen",
                                          "127.0.0.1:0"], names, args, per_model[m], model=m)
            columns = ["start"] + [n for n in CHECK_NAMES if n in names] + ["stop"]
            print_table(models, per_model, columns)
            passed = sum(r.passed for r in per_model.values())
            failed = sum(r.failed for r in per_model.values())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        return 1
    print(f"{passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
