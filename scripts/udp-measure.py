#!/usr/bin/env python3
"""udp-measure.py: a quick look at UDP echo servers: server CPU per datagram, and loss.

Not the project's UDP load generator (that is `iomodels load --proto udp`); a small stand-in,
Python standard library only, for two questions about `serve MODEL --proto udp`:

  cpu   Server CPU (user + system, all its threads, from /proc/PID/stat) per datagram at a
        modest fixed rate (default 20,000 datagrams/s of 64 B from 4 sockets), for each
        model, rounds interleaved A B C C B A ... so drift hits every model alike.
  loss  At a high offered rate (default 100,000 datagrams/s of 64 B), the datagrams the
        server's kernel dropped (the stats' rcvbuf_drops, from SO_RXQ_OVFL) with the default
        receive buffer and with --rcvbuf 4M, and /proc/net/snmp's Udp RcvbufErrors over the
        same window as a second count (system-wide: it includes any other UDP socket's drops,
        the sender's own too).

The sender is one Python thread pinned to one CPU (the server gets the other, via taskset), so
a rate it cannot reach is reported as achieved, not as asked. It pipelines: it sends by the
clock and a receiver thread reads the echoes and counts them; echoes lost in the sender's own
receive buffer are not the server's loss and are reported apart (sent - server read - kernel
drops is 0 when the counts add up).

Usage: udp-measure.py BIN [--models epoll,uring-multishot,poll] [--rounds 3] [--seconds 3]
                          [--rate 20000] [--loss-rate 100000] [--only cpu|loss]
Linux only (taskset, /proc). Prints one table per question.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

CLK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def rcvbuf_errors():
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    head, vals = rows[0], rows[1]
    return int(vals[head.index("RcvbufErrors")])


def start(bin_, model, extra):
    p = subprocess.Popen(["taskset", "-c", "0", bin_, "serve", model, "--proto", "udp",
                          "--listen", "127.0.0.1:0"] + extra,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline().split()
    host, port = line[1].rsplit(":", 1)
    return p, (host, int(port))


def stop(p):
    p.send_signal(signal.SIGINT)
    out = p.stdout.read()
    p.wait(10)
    return json.loads(out.strip().splitlines()[-1])


def offer(addr, rate, seconds, sockets=4, size=64):
    """Send at `rate` datagrams/s for `seconds` from `sockets` sockets; count echoes."""
    os.sched_setaffinity(0, {1})
    socks = []
    for _ in range(sockets):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.connect(addr)
        s.setblocking(False)
        socks.append(s)
    payload = b"m" * size
    got = [0]
    done = threading.Event()

    def receive():
        import selectors
        sel = selectors.DefaultSelector()
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        while not done.is_set():
            for key, _ in sel.select(0.1):
                try:
                    while True:
                        key.fileobj.recv(2048)
                        got[0] += 1
                except BlockingIOError:
                    pass

    rx = threading.Thread(target=receive, daemon=True)
    rx.start()
    sent = 0
    t0 = time.monotonic()
    end = t0 + seconds
    batch = max(1, rate // 2000)  # send in small batches, by the clock
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = int((now - t0) * rate)
        while sent < due:
            for _ in range(min(batch, due - sent)):
                try:
                    socks[sent % sockets].send(payload)
                except BlockingIOError:
                    pass
                sent += 1
        time.sleep(0.0002)
    took = time.monotonic() - t0
    time.sleep(0.3)
    done.set()
    rx.join(1)
    for s in socks:
        s.close()
    return sent, got[0], took


def measure_cpu(args):
    models = args.models
    order = []
    for r in range(args.rounds):
        order += models if r % 2 == 0 else list(reversed(models))
    res = {m: [] for m in models}
    for m in order:
        p, addr = start(args.bin, m, [])
        time.sleep(0.2)
        c0 = cpu_seconds(p.pid)
        sent, got, took = offer(addr, args.rate, args.seconds)
        c1 = cpu_seconds(p.pid)
        st = stop(p)
        us = (c1 - c0) * 1e6 / max(1, st["datagrams_in"])
        res[m].append((us, sent / took, st["datagrams_in"], st["rcvbuf_drops"]))
        print(f"  {m}: {sent / took:,.0f}/s offered, server read {st['datagrams_in']}, "
              f"drops {st['rcvbuf_drops']}, {us:.2f} us CPU per datagram", flush=True)
    print(f"\nserver CPU per datagram at ~{args.rate:,}/s, 64 B, 4 sockets "
          f"(min and median of {args.rounds} interleaved rounds)")
    base = None
    for m in models:
        v = sorted(x[0] for x in res[m])
        base = base or v[0]
        print(f"  {m:<16} min {v[0]:6.2f} us  median {v[len(v) // 2]:6.2f} us  "
              f"({v[0] / base:.2f}x {models[0]})")


def measure_loss(args):
    rows = []
    for r in range(args.rounds):
        for label, extra in ([("default", []), ("--rcvbuf 4M", ["--rcvbuf", "4M"])]
                             if r % 2 == 0 else
                             [("--rcvbuf 4M", ["--rcvbuf", "4M"]), ("default", [])]):
            for m in args.models:
                p, addr = start(args.bin, m, extra)
                time.sleep(0.2)
                e0 = rcvbuf_errors()
                sent, got, took = offer(addr, args.loss_rate, args.seconds)
                # one last datagram so SO_RXQ_OVFL reports the final count
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.settimeout(1)
                s.sendto(b"last", addr)
                try:
                    s.recv(16)
                except socket.timeout:
                    pass
                sent += 1
                e1 = rcvbuf_errors()
                st = stop(p)
                d = st["rcvbuf_drops"]
                rows.append((m, label, sent / took, sent, st["datagrams_in"], d, e1 - e0,
                             st["settings"].get("rcvbuf")))
                print(f"  {m} {label}: offered {sent / took:,.0f}/s, sent {sent}, read "
                      f"{st['datagrams_in']}, SO_RXQ_OVFL drops {d} "
                      f"({100.0 * d / sent:.2f} %), RcvbufErrors delta {e1 - e0}, "
                      f"unaccounted {sent - st['datagrams_in'] - d}", flush=True)
    print(f"\nloss at ~{args.loss_rate:,}/s offered, 64 B, 4 sockets")
    for m, label, rate, sent, read, d, snmp, granted in rows:
        print(f"  {m:<16} {label:<12} rcvbuf {granted:>8}  achieved {rate:9,.0f}/s  "
              f"loss {100.0 * d / sent:5.2f} %  (SO_RXQ_OVFL {d}, RcvbufErrors {snmp})")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("bin")
    p.add_argument("--models", default="epoll,uring-multishot,poll")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--rate", type=int, default=20000)
    p.add_argument("--loss-rate", type=int, default=100000)
    p.add_argument("--only", choices=["cpu", "loss"])
    args = p.parse_args()
    args.models = [m for m in args.models.split(",") if m]
    if args.only in (None, "cpu"):
        measure_cpu(args)
    if args.only in (None, "loss"):
        args.models = args.models[:1]
        measure_loss(args)


if __name__ == "__main__":
    sys.exit(main())
