#!/usr/bin/env python3
"""epoll against the io_uring models, and the io_uring ablation, measured the way the design
notes ask: interleaved runs, best throughput and least server CPU per request.

Comparison: `epoll`, `uring`, `uring-multishot` at 1, 50 and 500 connections x 512 B (closed
loop). Ablation, at 50 connections: `uring-multishot` as it ships (DEFER_TASKRUN), with
`--no-defer-taskrun`, with `--fixed-files`, with `--sqpoll` (its kernel thread's CPU shown on
its own), and `uring` (one-shot).

Each run starts `iomodels serve MODEL [FLAGS] --cpus 0 --listen 127.0.0.1:0 --stop-on-stdin-eof`
and loads it with `iomodels load ADDR -c N -s 512 -t DUR --warmup W --cpus 1 --json FILE`. Inside
the measured part of the load a window of WINDOW seconds is observed on the server process:
its CPU time (utime + stime of the whole process, every thread, from /proc/PID/stat), the CPU of
its io_uring SQ poll thread (`iou-sqp-*` in /proc/PID/task) and, with `perf stat -p PID` (all
its threads), system calls, io_uring_enter calls, io_uring:io_uring_task_work_run (task-work
runs; under DEFER_TASKRUN they are io_uring:io_uring_local_work_run instead, counted in the same
column), io_uring:io_uring_queue_async_work (io-wq punts), io_uring:io_uring_poll_arm and
context switches. Requests in the window = the run's throughput x WINDOW. The perf counters
cost the counted process CPU per system call (≈ +8 % server CPU per request for epoll, less for
io_uring, which makes fewer calls), so they would tilt the very comparison: the rounds that give
throughput, latency and CPU run without them, and one more round at the end counts (its figures
are used for the counts only). Without `perf` (or without root) the per-request counts are left
empty; the rest still runs.

Order: every round runs each variant once, alternately forward and reversed (A B C, C B A, ...),
five rounds by default, so slow drifts of a noisy machine hit every variant alike. Reported:
the best throughput and the least server CPU per request of each variant (ratios against the
first variant of the group), and the median of the other figures over its runs. Markdown on
stdout; the raw runs as JSON with --json FILE.

This measures; it asserts nothing and is not a test. On a machine where other work runs, the
figures say more about that work than about the models.

Usage: scripts/uring-compare.py [--quick] [--runs 5] [--duration 3] [--bin target/release/iomodels]
  --quick: one round, 1 s of load after 0.5 s of warm-up: a check that it all runs.
"""

import argparse
import csv
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

SIZE = 512
COMPARE = [("epoll", []), ("uring", []), ("uring-multishot", [])]
ABLATION = [
    ("uring-multishot", []),
    ("uring-multishot", ["--no-defer-taskrun"]),
    ("uring-multishot", ["--fixed-files"]),
    ("uring-multishot", ["--sqpoll"]),
    ("uring", []),
]
EVENTS = {
    "syscalls": "raw_syscalls:sys_enter",
    "enter": "syscalls:sys_enter_io_uring_enter",
    "task_work": "io_uring:io_uring_task_work_run",
    "local_work": "io_uring:io_uring_local_work_run",
    "punts": "io_uring:io_uring_queue_async_work",
    "poll_arm": "io_uring:io_uring_poll_arm",
    "ctx_sw": "context-switches",
}
COLUMNS = ["syscalls", "enter", "task_work", "punts", "poll_arm", "ctx_sw"]
HZ = os.sysconf("SC_CLK_TCK")


def label(model, flags):
    return " ".join([model] + flags)


def ticks(path):
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def sqpoll_ticks(pid):
    """CPU ticks of the process's io_uring SQ poll threads (0 when there are none)."""
    total = 0
    for task in glob.glob(f"/proc/{pid}/task/*"):
        try:
            with open(f"{task}/comm") as f:
                if f.read().startswith("iou-sqp"):
                    total += ticks(f"{task}/stat")
        except OSError:
            pass
    return total


def perf_usable():
    if not shutil.which("perf"):
        return False
    probe = subprocess.run(
        ["perf", "stat", "-x,", "-e", EVENTS["enter"], "--", "true"],
        capture_output=True, text=True,
    )
    return probe.returncode == 0


def observe(pid, window, use_perf, out):
    """Counts the server's events and CPU over `window` seconds; fills `out`."""
    t0, s0 = ticks(f"/proc/{pid}/stat"), sqpoll_ticks(pid)
    if use_perf:
        cmd = ["perf", "stat", "-x,", "-p", str(pid)]
        for ev in EVENTS.values():
            cmd += ["-e", ev]
        r = subprocess.run(cmd + ["--", "sleep", str(window)], capture_output=True, text=True)
        counts = {}
        for row in csv.reader(r.stderr.splitlines()):
            if len(row) > 2 and row[0].strip().isdigit():
                counts[row[2]] = int(row[0])
        out["counts"] = {k: counts.get(ev) for k, ev in EVENTS.items()}
        tw = [out["counts"].pop("task_work"), out["counts"].pop("local_work")]
        out["counts"]["task_work"] = None if None in tw else sum(tw)
    else:
        time.sleep(window)
    out["cpu_s"] = (ticks(f"/proc/{pid}/stat") - t0) / HZ
    out["sqpoll_cpu_s"] = (sqpoll_ticks(pid) - s0) / HZ


def one_run(args, model, flags, conns, workdir, i, use_perf):
    serve = subprocess.Popen(
        [args.bin, "serve", model, *flags, "--cpus", "0", "--listen", "127.0.0.1:0",
         "--stop-on-stdin-eof"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        line = serve.stdout.readline().split()
        if len(line) != 2 or line[0] != "listening":
            sys.exit(f"{label(model, flags)}: did not start")
        out = os.path.join(workdir, f"{i}.json")
        load = subprocess.Popen(
            [args.bin, "load", line[1], "-c", str(conns), "-s", str(SIZE),
             "-t", f"{args.duration}s", "--warmup", f"{args.warmup}s", "--cpus", "1",
             "--json", out],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        # The window sits inside the measured part: after the warm-up, before the end.
        window = max(args.duration - 0.4, 0.2)
        time.sleep(args.warmup + 0.2)
        seen = {}
        watcher = threading.Thread(target=observe, args=(serve.pid, window, use_perf, seen))
        watcher.start()
        watcher.join()
        if load.wait(timeout=args.duration + args.warmup + 60) != 0:
            sys.exit(f"{label(model, flags)} at {conns}: load failed")
        serve.stdin.close()
        stats = json.loads(serve.stdout.readline())
        serve.wait(timeout=30)
    finally:
        if serve.poll() is None:
            serve.kill()
    with open(out) as f:
        result = json.load(f)
    rps = result["throughput_rps"]
    n = rps * window
    per = lambda v: v / n if (v is not None and n) else None
    return {
        "variant": label(model, flags),
        "connections": conns,
        "rps": rps,
        "p50_us": result["latency_us"]["p50"],
        "p99_us": result["latency_us"]["p99"],
        "errors": result["errors"]["total"],
        "cpu_us": per(seen["cpu_s"] * 1e6),
        "sqpoll_cpu_us": per(seen["sqpoll_cpu_s"] * 1e6),
        **{k: per(v) for k, v in seen.get("counts", {}).items()},
        "settings": stats.get("settings", {}),
    }


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


def table(title, runs, variants, conns_list):
    lines = [f"### {title}", ""]
    head = ["variant", "conns", "runs", "best req/s", "ratio", "p50 µs", "p99 µs",
            "least CPU µs/req", "ratio", "SQPOLL µs/req", "syscalls", "enter", "task-work",
            "io-wq punts", "poll arms", "ctx-sw"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for conns in conns_list:
        base = None
        for v in variants:
            every = [r for r in runs if r["variant"] == v and r["connections"] == conns]
            rs = [r for r in every if not r["counted"]]
            counted = [r for r in every if r["counted"]]
            if not rs:
                continue
            best = max(r["rps"] for r in rs)
            least = min(r["cpu_us"] for r in rs if r["cpu_us"] is not None)
            if base is None:
                base = (best, least)
            row = [v, str(conns), str(len(rs)), f"{best:,.0f}", f"{best / base[0]:.2f}",
                   fmt(med(r["p50_us"] for r in rs), ".0f"), fmt(med(r["p99_us"] for r in rs), ".0f"),
                   f"{least:.2f}", f"{least / base[1]:.2f}",
                   fmt(med(r["sqpoll_cpu_us"] for r in rs), ".2f")]
            row += [fmt(med(r.get(k) for r in counted), ".3f") for k in COLUMNS]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 round, 1 s of load: a check that it runs")
    ap.add_argument("--runs", type=int, default=5, help="rounds (default 5)")
    ap.add_argument("--duration", type=float, default=3.0, help="seconds of measured load per run")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up per run")
    ap.add_argument("--bin", default="target/release/iomodels")
    ap.add_argument("--json", help="also write every run here")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.duration, args.warmup = 1, 1.0, 0.5
    if not os.path.exists(args.bin):
        sys.exit(f"{args.bin} not found: cargo build --release --bin iomodels")
    use_perf = perf_usable()
    if not use_perf:
        print("perf not usable here (missing, or not root): per-request counts left empty",
              file=sys.stderr)
    plan = [(COMPARE, c) for c in (1, 50, 500)] + [(ABLATION, 50)]
    runs = []
    with tempfile.TemporaryDirectory() as work:
        i = 0
        # The last round counts kernel events (perf), apart from the measured rounds.
        for rnd in range(args.runs + (1 if use_perf else 0)):
            counting = rnd == args.runs
            for variants, conns in plan:
                order = variants if rnd % 2 == 0 else variants[::-1]
                for model, flags in order:
                    # The ablation's first and last variants are the comparison's own runs at
                    # 50 connections when they match; they are measured again in their group so
                    # each group is interleaved on its own.
                    r = one_run(args, model, flags, conns, work, i, counting)
                    r["group"] = "ablation" if variants is ABLATION else "compare"
                    r["counted"] = counting
                    runs.append(r)
                    i += 1
                    print(f"{i:3} {r['variant']:34} {conns:4} conns {r['rps']:10.0f} req/s "
                          f"{fmt(r['cpu_us'], '6.2f')} µs CPU/req", file=sys.stderr, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=1)
    compare = [r for r in runs if r["group"] == "compare"]
    ablation = [r for r in runs if r["group"] == "ablation"]
    print(f"{args.runs} round(s), {args.duration:g} s of load after {args.warmup:g} s of warm-up, "
          f"{SIZE} B, server on CPU 0, generator on CPU 1; req/s, latency and CPU from those rounds; "
          "per-request counts from one more round with perf counters on (they cost CPU), per "
          "echoed request over the observed window\n")
    print(table("epoll against io_uring", compare, [label(m, f) for m, f in COMPARE], (1, 50, 500)))
    print()
    print(table("io_uring ablation (50 connections)", ablation, [label(m, f) for m, f in ABLATION], (50,)))


if __name__ == "__main__":
    main()
