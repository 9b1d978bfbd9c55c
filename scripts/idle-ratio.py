#!/usr/bin/env python3
"""The C10K question as one ratio per model: throughput and server CPU per request of 50
active connections with N idle ones (default 10,000) against the same 50 alone.

It runs `iomodels sweep idle --idle-steps 0,N --models LIST` ROUNDS times, each round into a
folder of its own, the model list rotated one place each round. Inside a round the sweep
measures idle-0 for every model, then idle-N for every model (in alternating order), each
step against a fresh server with its CPU read over exactly the measured window; so the two
figures of a ratio are minutes apart, not hours, and a slow drift of this noisy machine hits
both models' steps alike. Per model it prints every round's ratios and their median, and the
idle connections the server really held (`idle_held`, from its own count).

The issue's bar (issue 15): at 10,000 idle, epoll, mio and uring-multishot keep ≥ 0.9× their
throughput; select/poll do not (select cannot: FD_SETSIZE, skipped). This script measures; it
asserts nothing, and it is not a test.

Usage: scripts/idle-ratio.py [--rounds 3] [--idle 10000] [-t 3s] [--bin target/release/iomodels]
                             [--models epoll,mio,uring-multishot,poll] [--keep DIR]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--idle", type=int, default=10000)
    ap.add_argument("-t", "--duration", default="3s")
    ap.add_argument("--bin", default="target/release/iomodels")
    ap.add_argument("--models", default="epoll,mio,uring-multishot,poll")
    ap.add_argument("--keep", help="write the sweep folders here instead of a temporary folder")
    a = ap.parse_args()
    models = a.models.split(",")
    root = a.keep or tempfile.mkdtemp(prefix="idle-ratio-")
    os.makedirs(root, exist_ok=True)
    rows = {m: [] for m in models}  # model -> [(rps ratio, cpu ratio, held)]
    for r in range(a.rounds):
        order = models[r % len(models):] + models[: r % len(models)]
        out = os.path.join(root, f"round-{r + 1}")
        cmd = [a.bin, "sweep", "idle", "--idle-steps", f"0,{a.idle}", "--models", ",".join(order),
               "-t", a.duration, "--out", out]
        print(f"round {r + 1}/{a.rounds}: {' '.join(cmd)}", file=sys.stderr, flush=True)
        p = subprocess.run(cmd, stdout=subprocess.DEVNULL)
        if p.returncode not in (0, 3):
            sys.exit(f"sweep exited {p.returncode}")
        with open(os.path.join(out, "summary.json")) as f:
            s = json.load(f)
        for m in models:
            steps = {st["step"]: st for st in s["models"][m]["steps"]}
            base, loaded = steps.get("idle-0"), steps.get(f"idle-{a.idle}")
            if not base or not loaded or base.get("achieved_rps") is None \
                    or loaded.get("achieved_rps") is None:
                why = (loaded or {}).get("skipped") or (loaded or {}).get("failed") or "not measured"
                rows[m].append((None, None, why))
                continue
            cpu = None
            if base.get("server_cpu") and loaded.get("server_cpu"):
                cpu = loaded["server_cpu"] / base["server_cpu"]
            rows[m].append((loaded["achieved_rps"] / base["achieved_rps"], cpu,
                            loaded.get("idle_held")))
    print(f"\n50 active × 512 B closed loop, {a.idle:,} idle against 0 idle; "
          f"{a.rounds} rounds of {a.duration} per step; folders in {root}\n")
    print(f"{'model':<16} {'req/s ratio (median)':>21} {'CPU/req ratio (median)':>23}  rounds (req/s ×, CPU ×, idle held)")
    for m in models:
        got = [x for x in rows[m] if x[0] is not None]
        if not got:
            print(f"{m:<16} {'–':>21} {'–':>23}  {rows[m][0][2]}")
            continue
        rps = statistics.median(x[0] for x in got)
        cpus = [x[1] for x in got if x[1] is not None]
        cpu = f"{statistics.median(cpus):.2f}×" if cpus else "–"
        each = "; ".join(f"{x[0]:.2f}×, {x[1]:.2f}×, {x[2]}" if x[1] else f"{x[0]:.2f}×" for x in got)
        print(f"{m:<16} {rps:>20.2f}× {cpu:>23}  {each}")


if __name__ == "__main__":
    main()
