#!/usr/bin/env python3
"""Compare server models the way the design notes ask: interleaved runs, best and least.

Each run starts `iomodels serve MODEL --cpus 0 --listen 127.0.0.1:0 --stop-on-stdin-eof`, loads
it with `iomodels load ADDR -c 50 -s 512 -t 3s --cpus 1 --json FILE` (closed loop, the
generator on the other core), and reads the server's CPU time (utime + stime of the whole
process, every thread, from /proc/PID/stat) right before and right after the load. The server
CPU per request is that difference over the requests the server echoed in the same window
(its stats' bytes_out / message size: warm-up included on both sides, so they match). Models
run in the order A B B A A B B A A B (with a third model: A B C C B A A B C ...), so slow drifts
of this noisy machine hit every model alike; the figures compared are the best throughput
and the least CPU per request of each model, and the ratios are against the first model.

This measures; it asserts nothing, and it is not a test.

Usage: scripts/ab-models.py [--runs 5] [--bin target/release/iomodels] MODEL_A MODEL_B [MODEL_C]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

CONNS = 50
SIZE = 512
DURATION = "3s"


def order(models, runs):
    """`runs` blocks, alternately forward and reversed: ABBAABBAAB for two models, 5 runs each."""
    return [m for i in range(runs) for m in (models if i % 2 == 0 else models[::-1])]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def one_run(binary, model, workdir, i):
    serve = subprocess.Popen(
        [binary, "serve", model, "--cpus", "0", "--listen", "127.0.0.1:0", "--stop-on-stdin-eof"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = serve.stdout.readline().split()
    if len(line) != 2 or line[0] != "listening":
        serve.kill()
        sys.exit(f"{model}: no listening line")
    addr = line[1]
    out = os.path.join(workdir, f"{i}-{model}.json")
    before = cpu_seconds(serve.pid)
    subprocess.run(
        [binary, "load", addr, "-c", str(CONNS), "-s", str(SIZE), "-t", DURATION,
         "--cpus", "1", "--json", out],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    after = cpu_seconds(serve.pid)
    serve.stdin.close()
    stats = json.loads(serve.stdout.readline())
    serve.wait(timeout=10)
    with open(out) as f:
        result = json.load(f)
    served = stats["bytes_out"] / SIZE
    return {
        "rps": result["throughput_rps"],
        "cpu_us": (after - before) * 1e6 / served if served else float("inf"),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="runs per model (default 5)")
    ap.add_argument("--bin", default="target/release/iomodels")
    ap.add_argument("models", nargs="+")
    args = ap.parse_args()
    if len(args.models) < 2:
        ap.error("give at least two models")
    runs = {m: [] for m in args.models}
    with tempfile.TemporaryDirectory() as work:
        for i, model in enumerate(order(args.models, args.runs)):
            r = one_run(args.bin, model, work, i)
            runs[model].append(r)
            print(f"{i:2} {model:16} {r['rps']:10.0f} req/s  {r['cpu_us']:6.2f} us CPU/req", flush=True)
    base = args.models[0]
    best = {m: max(r["rps"] for r in rs) for m, rs in runs.items()}
    least = {m: min(r["cpu_us"] for r in rs) for m, rs in runs.items()}
    print()
    print(f"{'model':16} {'runs':>4} {'best req/s':>11} {'ratio':>6} {'least us CPU/req':>17} {'ratio':>6}")
    for m in args.models:
        print(
            f"{m:16} {len(runs[m]):4} {best[m]:11.0f} {best[m] / best[base]:6.2f} "
            f"{least[m]:17.2f} {least[m] / least[base]:6.2f}"
        )


if __name__ == "__main__":
    main()
