#!/usr/bin/env python3
"""udp-check.py: an independent, black-box checker for the iomodels UDP echo servers.

Why it exists, and why it is independent
----------------------------------------
`iomodels serve MODEL --proto udp` echoes every datagram back to its sender (RFC 862, UDP
part). The Rust conformance suite tests this with the project's own helpers; this script is
the second opinion, written without any of the project's code or constants: Python 3 standard
library only, talking to a server only through what any user sees (UDP sockets, the process's
stdout and exit status). Payloads are random bytes from a seeded PRNG (-v prints the seed,
--seed replays it), and every datagram that comes back is compared with what was sent.

UDP may lose datagrams, even on loopback when a receive buffer is full. The checker does not
hide loss and does not fail on it blindly either: a datagram whose echo does not come back is
sent again (at most 3 times in the one-at-a-time checks), the burst reports what it lost, and
at stop the server's own counters must account for every datagram the checker sent (received
by the server, or counted as dropped by the kernel where the server reports that).

What it checks (each check has its own time limit)
-------------------------------------------------
  sizes        Datagrams of 1, 2, 100, 512, 1472, 1473, 8192, 32768 and 65507 bytes (the IPv4
               maximum), one at a time from one socket; each echo intact and from the server's
               address.
  empty        A zero-length datagram comes back as a zero-length datagram; the next datagram
               after it still echoes.
  burst        1,000 datagrams of 64 bytes sent back to back from one socket (its receive
               buffer raised to 4 MiB so the checker is not the one losing them); every echo
               that comes back must be intact, sent once and never duplicated; the loss is
               reported. At least one echo must come back.
  many         100 sockets at once, each sending its own datagram; each gets back its own echo
               (the server answers each sender, not the last one it heard).
  ports        A datagram from an unconnected socket comes back to that socket's port; then one
               from another socket on another port comes back there and not to the first; and
               a sender that closes before its echo arrives (the kernel answers the echo with
               ICMP port-unreachable) leaves the server serving: a fresh socket still echoes.
With --serve and --models-from the checker also owns the server process:
  start        The first stdout line must be `listening HOST:PORT` within 20 s.
  stop         Before SIGINT, one more datagram is sent until its echo returns, so the server's
               kernel drop count is current. After SIGINT the server must exit 0 within 5 s and
               print one JSON line with proto "udp" and the keys datagrams_in, datagrams_out,
               bytes_in, bytes_out, send_drops and rcvbuf_drops (a number, or null where the
               OS does not count). Cross-checks with what the checker counted:
                 datagrams_out + send_drops == datagrams_in;
                 echoes received by the checker <= datagrams_out;
                 datagrams_in <= datagrams sent, bytes_in <= bytes sent;
                 where rcvbuf_drops is a number: datagrams_in + rcvbuf_drops == datagrams sent
                   (every datagram the server did not read is one the kernel counted), and
                   when it is 0, bytes_in == bytes sent.

Usage
-----
  udp-check.py [options] --addr 127.0.0.1:PORT
  udp-check.py [options] --serve target/release/iomodels serve epoll --proto udp --listen 127.0.0.1:0
  udp-check.py [options] --models-from target/release/iomodels
--models-from checks every model of `BIN models --names --proto udp` with
`BIN serve MODEL --proto udp --listen 127.0.0.1:0`. Options: --only CHECK[,CHECK], -v,
--seed N, --timeout-scale F (slow builds, Wine), --wine (prefix server commands with
/usr/lib/wine/wine64; SIGINT stays the stop). --serve takes the rest of the command line.

Output: `PASS name (detail) 0.42s` or `FAIL name: reason (2.01s)` per check, `N passed,
M failed`, and with --models-from a model x check table. Exit status 0 if every check passed,
1 if any failed, 2 on a usage error. Every started server is stopped (SIGINT, then SIGKILL of
its process group) even when the checker fails or is interrupted.
"""

import argparse
import ctypes
import json
import os
import queue
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

WINE = "/usr/lib/wine/wine64"
MAX_DATAGRAM = 65507
SIZES = [1, 2, 100, 512, 1472, 1473, 8192, 32768, MAX_DATAGRAM]
BURST = 1000
SOCKETS = 100
ATTEMPTS = 3
UDP_KEYS = ("datagrams_in", "datagrams_out", "bytes_in", "bytes_out", "send_drops")
CHECK_NAMES = ["sizes", "empty", "burst", "many", "ports"]


class CheckFail(Exception):
    """A check found the server wrong; the message says how."""


class Ctx:
    """The server under test, and what the checker sent and received."""

    def __init__(self, addr, verbose=False, scale=1.0, seed=0):
        host, port = addr.rsplit(":", 1)
        host = host.strip("[]")
        info = socket.getaddrinfo(host, int(port), type=socket.SOCK_DGRAM)[0]
        self.family, self.addr = info[0], info[4][:2]
        self.verbose = verbose
        self.scale = scale
        self.rng = random.Random(seed)
        self.sent = 0  # datagrams sent to the server, every socket, every check
        self.sent_bytes = 0
        self.echoes = 0  # datagrams received back (any, intact or not)
        self.sockets = []

    def log(self, msg):
        if self.verbose:
            print(f"    {msg}", flush=True)

    def t(self, seconds):
        return seconds * self.scale

    def socket(self, rcvbuf=None):
        s = socket.socket(self.family, socket.SOCK_DGRAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.bind(("127.0.0.1", 0) if self.family == socket.AF_INET else ("::1", 0))
        self.sockets.append(s)
        return s

    def send(self, s, data):
        s.sendto(data, self.addr)
        self.sent += 1
        self.sent_bytes += len(data)

    def recv(self, s, timeout):
        """One datagram (data, sender) within timeout, or None."""
        s.settimeout(timeout)
        try:
            data, sender = s.recvfrom(70000)
        except socket.timeout:
            return None
        self.echoes += 1
        return data, sender[:2]

    def close_all(self):
        for s in self.sockets:
            s.close()
        self.sockets = []


def same_addr(a, b):
    return a[0] == b[0] and a[1] == b[1]


def round_trip(ctx, s, data, what):
    """Send data until its echo comes back (at most ATTEMPTS times); returns attempts used."""
    for attempt in range(1, ATTEMPTS + 1):
        ctx.send(s, data)
        deadline = time.monotonic() + ctx.t(2.0)
        while time.monotonic() < deadline:
            got = ctx.recv(s, max(0.01, deadline - time.monotonic()))
            if got is None:
                break
            echo, sender = got
            if not same_addr(sender, ctx.addr):
                raise CheckFail(f"{what}: a datagram from {sender}, not the server {ctx.addr}")
            if echo == data:
                return attempt
            if len(echo) != len(data):
                # an echo of an earlier attempt of another datagram would be a server bug too
                raise CheckFail(f"{what}: sent {len(data)} B, got back {len(echo)} B")
            first = next(i for i in range(len(data)) if echo[i] != data[i])
            raise CheckFail(f"{what}: echo differs at byte {first} of {len(data)}")
        ctx.log(f"{what}: no echo within {ctx.t(2.0):.1f}s (attempt {attempt})")
    raise CheckFail(f"{what}: no echo after {ATTEMPTS} attempts")


def check_sizes(ctx):
    s = ctx.socket(rcvbuf=1 << 20)
    retries = 0
    for size in SIZES:
        retries += round_trip(ctx, s, ctx.rng.randbytes(size), f"{size} B") - 1
    return f"{len(SIZES)} sizes 1..{MAX_DATAGRAM} B, {retries} resent"


def check_empty(ctx):
    s = ctx.socket()
    for attempt in range(1, ATTEMPTS + 1):
        ctx.send(s, b"")
        got = ctx.recv(s, ctx.t(2.0))
        if got is None:
            continue
        if got[0] != b"":
            raise CheckFail(f"an empty datagram came back as {len(got[0])} B")
        break
    else:
        raise CheckFail(f"no echo of an empty datagram after {ATTEMPTS} attempts")
    round_trip(ctx, s, b"after-empty", "the datagram after an empty one")
    return "empty echoed empty; served on"


def check_burst(ctx):
    s = ctx.socket(rcvbuf=4 << 20)
    payloads = [struct.pack("<I", i) + ctx.rng.randbytes(60) for i in range(BURST)]
    for p in payloads:
        ctx.send(s, p)
    seen = set()
    deadline = time.monotonic() + ctx.t(5.0)
    while len(seen) < BURST and time.monotonic() < deadline:
        got = ctx.recv(s, min(ctx.t(1.0), max(0.01, deadline - time.monotonic())))
        if got is None:
            break  # a second with nothing: the rest is lost
        echo, sender = got
        if not same_addr(sender, ctx.addr):
            raise CheckFail(f"a datagram from {sender}, not the server")
        if len(echo) != 64:
            raise CheckFail(f"an echo of {len(echo)} B; every datagram sent was 64 B")
        i = struct.unpack("<I", echo[:4])[0]
        if i >= BURST or echo != payloads[i]:
            raise CheckFail(f"echo #{i} does not match what was sent")
        if i in seen:
            raise CheckFail(f"echo #{i} came back twice")
        seen.add(i)
    if not seen:
        raise CheckFail(f"none of {BURST} datagrams came back")
    lost = BURST - len(seen)
    return f"{len(seen)}/{BURST} echoed, {lost} lost ({100.0 * lost / BURST:.1f} %)"


def check_many(ctx):
    socks = [ctx.socket() for _ in range(SOCKETS)]
    want = {i: f"socket {i} {ctx.rng.getrandbits(64):x}".encode() for i in range(SOCKETS)}
    pending = set(range(SOCKETS))
    for attempt in range(1, ATTEMPTS + 1):
        for i in sorted(pending):
            ctx.send(socks[i], want[i])
        deadline = time.monotonic() + ctx.t(3.0)
        for i in sorted(pending):
            got = ctx.recv(socks[i], max(0.01, deadline - time.monotonic()))
            if got is None:
                continue
            if got[0] != want[i]:
                raise CheckFail(f"socket {i} got {got[0][:40]!r}, not its own datagram")
            pending.discard(i)
        if not pending:
            return f"{SOCKETS} sockets, each its own echo ({attempt} round(s))"
    raise CheckFail(f"{len(pending)} of {SOCKETS} sockets got no echo after {ATTEMPTS} tries")


def check_ports(ctx):
    a = ctx.socket()
    round_trip(ctx, a, b"from a", "socket a")
    b = ctx.socket()
    round_trip(ctx, b, b"from b", "socket b (another port)")
    stray = ctx.recv(a, ctx.t(0.3))
    if stray is not None:
        raise CheckFail(f"socket a received {stray[0][:20]!r}, meant for socket b")
    # A sender gone before its echo: the echo meets ICMP port-unreachable.
    for _ in range(20):
        c = socket.socket(ctx.family, socket.SOCK_DGRAM)
        c.sendto(b"gone", ctx.addr)
        ctx.sent += 1
        ctx.sent_bytes += 4
        c.close()
    time.sleep(ctx.t(0.2))
    d = ctx.socket()
    round_trip(ctx, d, b"after the gone senders", "a fresh socket after 20 gone senders")
    return "echo goes to each sender's port; gone senders do not hurt"


CHECKS = {"sizes": check_sizes, "empty": check_empty, "burst": check_burst,
          "many": check_many, "ports": check_ports}


class Reporter:
    def __init__(self, prefix=""):
        self.prefix = prefix
        self.results = []

    def add(self, name, ok, secs, text):
        self.results.append((name, ok, secs, text))
        if ok:
            print(f"{self.prefix}PASS {name} ({text}) {secs:.2f}s", flush=True)
        else:
            print(f"{self.prefix}FAIL {name}: {text} ({secs:.2f}s)", flush=True)

    @property
    def passed(self):
        return sum(1 for r in self.results if r[1])

    @property
    def failed(self):
        return sum(1 for r in self.results if not r[1])


def run_checks(ctx, names, rep):
    for name in CHECK_NAMES:
        if name not in names:
            continue
        t0 = time.monotonic()
        try:
            detail = CHECKS[name](ctx)
            rep.add(name, True, time.monotonic() - t0, detail)
        except CheckFail as e:
            rep.add(name, False, time.monotonic() - t0, str(e))
        except OSError as e:
            rep.add(name, False, time.monotonic() - t0, f"socket error: {e}")
        finally:
            ctx.close_all()


class ServerProcess:
    """A server the checker started: stdout lines, stderr in a temp file, stopping it."""

    def __init__(self, cmd, scale=1.0, wine=False):
        self.cmd, self.scale, self.wine = cmd, scale, wine
        self.proc, self.errf = None, None
        self.lines = queue.Queue()

    def start(self):
        self.errf = tempfile.TemporaryFile(prefix="udp-check-stderr-")
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = getattr(libc, "prctl", None)

        def die_with_parent():  # PR_SET_PDEATHSIG
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

    def stderr_tail(self, n=600):
        try:
            self.errf.seek(0)
            text = self.errf.read().decode("utf-8", "replace").strip()
        except (OSError, AttributeError):
            return ""
        return ("; stderr: " + text[-n:].replace("\n", " | ")) if text else ""

    def wait_listening(self, timeout):
        try:
            line = self.lines.get(timeout=timeout * self.scale)
        except queue.Empty:
            raise CheckFail(f"no 'listening ADDR' line within {timeout * self.scale:.0f}s"
                            f"{self.stderr_tail()}") from None
        if line is None:
            raise CheckFail(f"server exited before 'listening ADDR'{self.stderr_tail()}")
        m = re.fullmatch(r"listening (\S+:\d+)", line.strip())
        if not m:
            raise CheckFail(f"first stdout line should be 'listening HOST:PORT', got {line!r}")
        return m.group(1)

    def stop(self, timeout):
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(timeout * self.scale)
        except subprocess.TimeoutExpired:
            self.kill()
            raise CheckFail(f"no exit within {timeout * self.scale:.0f}s of SIGINT (killed)"
                            f"{self.stderr_tail()}") from None
        took = time.monotonic() - t0
        self.reader.join(2)
        lines = []
        while not self.lines.empty():
            line = self.lines.get_nowait()
            if line is not None and line.strip():
                lines.append(line.strip())
        return rc, took, lines

    def kill(self):
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
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except (OSError, ValueError):
                pass
        if self.errf:
            self.errf.close()
            self.errf = None


def settle(ctx):
    """One last datagram until its echo returns, so the server's drop count is current."""
    s = ctx.socket()
    try:
        round_trip(ctx, s, b"final", "the final datagram before stop")
    finally:
        ctx.close_all()


def verify_stats(ctx, stats):
    problems, notes = [], []
    if stats.get("proto") != "udp":
        problems.append(f"proto is {stats.get('proto')!r}, not 'udp'")
    for k in UDP_KEYS:
        v = stats.get(k)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            problems.append(f"{k} is {v!r}, not a non-negative integer")
    drops = stats.get("rcvbuf_drops", "missing")
    if drops is not None and (not isinstance(drops, int) or isinstance(drops, bool) or drops < 0):
        problems.append(f"rcvbuf_drops is {drops!r}, not a count or null")
    if problems:
        return problems, notes
    d_in, d_out, s_drops = stats["datagrams_in"], stats["datagrams_out"], stats["send_drops"]
    if d_out + s_drops != d_in:
        problems.append(f"datagrams_out {d_out} + send_drops {s_drops} != datagrams_in {d_in}")
    if ctx.echoes > d_out:
        problems.append(f"the checker received {ctx.echoes} echoes, the server sent {d_out}")
    if d_in > ctx.sent or stats["bytes_in"] > ctx.sent_bytes:
        problems.append(f"server received {d_in} datagrams / {stats['bytes_in']} B, more than "
                        f"the {ctx.sent} / {ctx.sent_bytes} B sent")
    if isinstance(drops, int):
        if d_in + drops != ctx.sent:
            problems.append(f"sent {ctx.sent}: the server read {d_in} and counted {drops} "
                            f"kernel drops ({ctx.sent - d_in - drops} unaccounted)")
        if drops == 0 and stats["bytes_in"] != ctx.sent_bytes:
            problems.append(f"no drops, but bytes_in {stats['bytes_in']} != {ctx.sent_bytes} sent")
        notes.append(f"sent {ctx.sent}, read {d_in}, kernel drops {drops}")
    else:
        notes.append(f"sent {ctx.sent}, read {d_in}, kernel drops not counted here")
    notes.append(f"echoed {d_out}, send drops {s_drops}, checker got {ctx.echoes}")
    return problems, notes


def serve_and_check(cmd, names, args, rep, model=None):
    server = ServerProcess(cmd, scale=args.timeout_scale, wine=args.wine)
    t0 = time.monotonic()
    try:
        try:
            server.start()
            addr = server.wait_listening(20)
        except (OSError, CheckFail) as e:
            # Under Wine a process can die before any Windows code runs when its connection to
            # wineserver fails ("wine client error: ... recvmsg: Connection reset by peer", seen
            # on a loaded machine): Wine's, not the model's. One fresh start, said in the report.
            if not (args.wine and "wine client error" in str(e)):
                rep.add("start", False, time.monotonic() - t0, str(e))
                return
            server.kill()
            server = ServerProcess(cmd, scale=args.timeout_scale, wine=args.wine)
            try:
                server.start()
                addr = server.wait_listening(20)
            except (OSError, CheckFail) as e2:
                rep.add("start", False, time.monotonic() - t0, f"{e2} (second start; first: {e})")
                return
            print(f"  note: started again after a Wine client error: {e}")
        rep.add("start", True, time.monotonic() - t0, f"listening {addr}")
        ctx = Ctx(addr, verbose=args.verbose, scale=args.timeout_scale, seed=args.seed)
        run_checks(ctx, names, rep)
        t1 = time.monotonic()
        try:
            settle(ctx)
            if server.proc.poll() is not None:
                raise CheckFail(f"server exited ({server.proc.returncode}) before SIGINT"
                                f"{server.stderr_tail()}")
            rc, took, lines = server.stop(5)
        except (CheckFail, OSError) as e:
            rep.add("stop", False, time.monotonic() - t1, str(e))
            return
        if rc != 0:
            rep.add("stop", False, took, f"exit status {rc} after SIGINT{server.stderr_tail()}")
            return
        if len(lines) != 1:
            rep.add("stop", False, took, f"expected one stats line after SIGINT, got {lines!r}")
            return
        try:
            stats = json.loads(lines[0])
        except ValueError as e:
            rep.add("stop", False, took, f"stats line is not JSON ({e})")
            return
        problems, notes = verify_stats(ctx, stats)
        if model is not None and stats.get("model") != model:
            problems.append(f"stats name model {stats.get('model')!r}, not {model!r}")
        if problems:
            rep.add("stop", False, took, "; ".join(problems) + f" [stats: {lines[0][:300]}]")
        else:
            rep.add("stop", True, took, "exit 0; " + "; ".join(notes))
    finally:
        server.kill()


def print_table(models, per_model, columns):
    width = max([5] + [len(m) for m in models])
    cellw = max([11] + [len(c) for c in columns])
    print()
    print(" ".join([f"{'model':<{width}}"] + [f"{c:<{cellw}}" for c in columns]))
    for m in models:
        res = {r[0]: r for r in per_model[m].results}
        cells = [f"{'-':<{cellw}}" if c not in res else
                 f"{('PASS' if res[c][1] else 'FAIL') + f' {res[c][2]:.2f}s':<{cellw}}"
                 for c in columns]
        print(" ".join([f"{m:<{width}}"] + cells))
    sys.stdout.flush()


def parse_args(argv):
    p = argparse.ArgumentParser(description="Independent checker for UDP echo servers.",
                                epilog="--serve takes the rest of the command line.")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--addr", metavar="HOST:PORT", help="check a running server")
    mode.add_argument("--serve", nargs=argparse.REMAINDER, metavar="CMD",
                      help="start CMD (it prints 'listening ADDR'), check it, stop it")
    mode.add_argument("--models-from", metavar="BIN",
                      help="check every model of `BIN models --names --proto udp`")
    p.add_argument("--wine", action="store_true", help=f"prefix server commands with {WINE}")
    p.add_argument("--only", action="append", metavar="CHECK",
                   help=f"only these checks: {', '.join(CHECK_NAMES)}")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--seed", type=int)
    p.add_argument("--timeout-scale", type=float, default=1.0, metavar="F")
    args = p.parse_args(argv)
    if args.serve is not None and not args.serve:
        p.error("--serve needs a command")
    if args.timeout_scale <= 0:
        p.error("--timeout-scale must be positive")
    names = CHECK_NAMES
    if args.only:
        names = [n.strip() for o in args.only for n in o.split(",") if n.strip()]
        unknown = [n for n in names if n not in CHECK_NAMES]
        if unknown:
            p.error(f"unknown check(s) {unknown}; known: {', '.join(CHECK_NAMES)}")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 32)
    return args, set(names)


def main(argv=None):
    args, names = parse_args(sys.argv[1:] if argv is None else argv)

    def on_term(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    prefix = [WINE] if args.wine else []
    if args.verbose:
        print(f"seed {args.seed} (replay with --seed {args.seed})", flush=True)
    try:
        if args.addr:
            rep = Reporter()
            run_checks(Ctx(args.addr, args.verbose, args.timeout_scale, args.seed), names, rep)
            passed, failed = rep.passed, rep.failed
        elif args.serve:
            rep = Reporter()
            serve_and_check(prefix + args.serve, names, args, rep)
            passed, failed = rep.passed, rep.failed
        else:
            cmd = prefix + [args.models_from, "models", "--names", "--proto", "udp"]
            try:
                r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                                   timeout=30 * args.timeout_scale)
            except (OSError, subprocess.TimeoutExpired) as e:
                print(f"FAIL models: cannot run {' '.join(cmd)}: {e}\n0 passed, 1 failed")
                return 1
            models = [m.strip() for m in r.stdout.decode().splitlines() if m.strip()]
            if r.returncode != 0 or not models:
                print(f"FAIL models: `{' '.join(cmd)}` exited {r.returncode} listing "
                      f"{len(models)} models: {r.stderr.decode()[-300:]}\n0 passed, 1 failed")
                return 1
            print(f"models serving udp: {' '.join(models)}", flush=True)
            per_model = {}
            for m in models:
                print(f"== {m}", flush=True)
                per_model[m] = Reporter(prefix="  ")
                serve_and_check(prefix + [args.models_from, "serve", m, "--proto", "udp",
                                          "--listen", "127.0.0.1:0"],
                                names, args, per_model[m], model=m)
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
