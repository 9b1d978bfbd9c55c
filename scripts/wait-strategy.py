#!/usr/bin/env python3
"""The generator's round trip against two C reference clients, by wait strategy (issue 14).

One server, `iomodels serve epoll --cpus 0 --listen 127.0.0.1:0 --stop-on-stdin-eof` (add
`--server-busy-poll` to make it spin too), serves every run. Against it, pinned to CPU 1 with
one connection of 64 B messages (closed loop, TCP_NODELAY on both sides):

  spinning:  A = `iomodels load ADDR -c 1 -s 64 --busy-poll --cpus 1`
             B = scripts/pingpong-spin.c   (send, then recv(MSG_DONTWAIT) in a loop)
  sleeping:  A = `iomodels load ADDR -c 1 -s 64 --cpus 1`
             B = scripts/pingpong-block.c  (send, then a blocking recv)

Each pair runs interleaved, A B B A per round, for several rounds (so slow drifts of this noisy
machine hit both alike), each run `--seconds` measured after `--warmup`. The figure compared
is the p50 round trip: the median over a pair's runs of each run's p50, and the ratio A / B.
The issue's target is 0.95-1.05 for both pairs: above, the generator adds overhead of its
own; below, part of the round trip is not measured. Both clients time a round trip the same
way: from immediately before the send to the return of the read that completes the echo.

The C clients are compiled here with `cc -O2` into a temporary folder. This measures; it
asserts nothing, and it is not a test.

Usage: scripts/wait-strategy.py [--rounds 3] [--seconds 3] [--warmup 1]
                                [--bin target/release/iomodels] [--server-busy-poll]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def compile_clients(workdir):
    out = {}
    for name in ("spin", "block"):
        exe = os.path.join(workdir, f"pingpong-{name}")
        src = os.path.join(HERE, f"pingpong-{name}.c")
        subprocess.run(["cc", "-O2", "-Wall", "-o", exe, src], check=True)
        out[name] = exe
    return out


def start_server(binary, busy_poll):
    cmd = [binary, "serve", "epoll", "--cpus", "0", "--listen", "127.0.0.1:0", "--stop-on-stdin-eof"]
    if busy_poll:
        cmd.append("--busy-poll")
    serve = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = serve.stdout.readline().split()
    if len(line) != 2 or line[0] != "listening":
        serve.kill()
        sys.exit("serve: no listening line")
    return serve, line[1]


def run_load(binary, addr, busy_poll, args, out):
    cmd = [binary, "load", addr, "-c", "1", "-s", "64", "--cpus", "1",
           "-t", f"{args.seconds}s", "--warmup", f"{args.warmup}s", "--json", out]
    if busy_poll:
        cmd.append("--busy-poll")
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out) as f:
        r = json.load(f)
    assert r["workload"].get("busy_poll", False) == busy_poll, "workload.busy_poll not recorded"
    return r["latency_us"]["p50"], r["latency_us"]["p99"]


def run_c(exe, addr, args):
    host, port = addr.rsplit(":", 1)
    out = subprocess.run(
        ["taskset", "-c", "1", exe, host, port, str(args.seconds), str(args.warmup), "64"],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    fields = dict(zip(out[::2], out[1::2]))
    return float(fields["p50_us"]), float(fields["p99_us"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="A B B A rounds per pair (default 3)")
    ap.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run (default 3)")
    ap.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per run (default 1)")
    ap.add_argument("--bin", default="target/release/iomodels")
    ap.add_argument("--server-busy-poll", action="store_true", help="serve with --busy-poll too")
    args = ap.parse_args()
    if not os.access(args.bin, os.X_OK):
        sys.exit(f"{args.bin} not found: build it with `cargo build --release --bin iomodels`")

    pairs = [
        ("spinning", True, "spin"),
        ("sleeping", False, "block"),
    ]
    with tempfile.TemporaryDirectory() as workdir:
        exes = compile_clients(workdir)
        serve, addr = start_server(args.bin, args.server_busy_poll)
        p50 = {(name, who): [] for name, _, _ in pairs for who in ("load", "c")}
        p99 = {k: [] for k in p50}
        try:
            i = 0
            for r in range(args.rounds):
                for name, busy, c in pairs:
                    for who in ("load", "c", "c", "load"):
                        i += 1
                        if who == "load":
                            a, b = run_load(args.bin, addr, busy, args, os.path.join(workdir, f"{i}.json"))
                        else:
                            a, b = run_c(exes[c], addr, args)
                        p50[(name, who)].append(a)
                        p99[(name, who)].append(b)
                        label = f"load{' --busy-poll' if busy else ''}" if who == "load" else f"pingpong-{c}"
                        print(f"round {r + 1} {name:<8} {label:<18} p50 {a:8.2f} µs  p99 {b:8.2f} µs", flush=True)
        finally:
            serve.stdin.close()
            stats = serve.stdout.readline().strip()
            serve.wait(timeout=10)
        server_busy = json.loads(stats).get("settings", {}).get("busy_poll") if stats else None
        print(f"\nserver: epoll on CPU 0, busy_poll {server_busy}; clients on CPU 1; "
              f"{args.rounds} rounds of A B B A, {args.seconds} s each after {args.warmup} s warm-up")
        for name, busy, c in pairs:
            lm = statistics.median(p50[(name, "load")])
            cm = statistics.median(p50[(name, "c")])
            l99 = statistics.median(p99[(name, "load")])
            c99 = statistics.median(p99[(name, "c")])
            label = "load --busy-poll" if busy else "load"
            print(f"{name}: {label} p50 {lm:.2f} µs (p99 {l99:.2f}) vs pingpong-{c} p50 {cm:.2f} µs "
                  f"(p99 {c99:.2f}): ratio {lm / cm:.3f}")
        wake = statistics.median(p50[("sleeping", "load")]) - statistics.median(p50[("spinning", "load")])
        print(f"wake-up cost per round trip (load sleeping p50 - busy-poll p50): {wake:.2f} µs")


if __name__ == "__main__":
    main()
