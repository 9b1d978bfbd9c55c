#!/usr/bin/env bash
# Why a model costs what it costs: system calls, epoll_ctl calls, io_uring_enter calls, the
# io_uring tracepoints and context switches per request on the *server*, plus its CPU time per
# request, for every model that runs here (or the ones named).
#
# Each model is served alone on CPU 0 (taskset), loaded from CPU 1 (`iomodels load --cpus 1`,
# closed loop, CONNS x SIZE B), and `perf stat` counts the server's events (every thread of the
# process, the SQPOLL kernel thread included) for WINDOW seconds inside the measured part of the
# run. Requests in that window are estimated from the run's throughput. Needs `perf` (Debian:
# linux-perf; installed with apt-get when missing and we are root) and root (tracepoints).
#
# The io_uring columns: `enter` io_uring_enter calls; `sqe` io_uring:io_uring_submit_req
# (operations submitted); `tw` task-work runs: io_uring:io_uring_task_work_run (completions
# processed in the thread's context by the normal task-work path) plus
# io_uring:io_uring_local_work_run (the same under DEFER_TASKRUN, run inside io_uring_enter,
# which the first tracepoint does not see); `punt` io_uring:io_uring_queue_async_work
# (operations handed to an io-wq worker thread: blocking fallbacks); `parm`
# io_uring:io_uring_poll_arm (an operation had to wait and armed a poll on its socket).
#
# This explains costs; it is not a ranking. For comparisons use interleaved runs (best of five),
# as the design notes say: one pass here is one sample on a noisy machine.
#
# Usage: scripts/syscalls-per-request.sh [MODEL...]   (default: every model `models --names` lists)
# Environment: CONNS (50), SIZE (512), DUR (6, seconds of load), WINDOW (3, seconds counted),
#   SERVE_ARGS (extra `serve` flags, e.g. "--sqpoll" or "--fixed-files"), JSON (a file: also
#   write one JSON object per model there, one per line, for scripts).
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${CONNS:-50}
SIZE=${SIZE:-512}
DUR=${DUR:-6}
WINDOW=${WINDOW:-3}
BIN=target/release/iomodels
if ! command -v perf >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    apt-get install -y -q linux-perf >/dev/null || true
  fi
  command -v perf >/dev/null || { echo "needs perf (apt-get install linux-perf)" >&2; exit 2; }
fi
SERVE_ARGS=${SERVE_ARGS:-}
JSON=${JSON:-}
cargo build --release -q --bin iomodels
MODELS=("$@")
[[ ${#MODELS[@]} -gt 0 ]] || mapfile -t MODELS < <("$BIN" models --names)
WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
  [[ -n $SERVER_PID ]] && kill -INT "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
HZ=$(getconf CLK_TCK)

printf "%-16s %9s %7s %7s %7s %7s %7s %7s %7s %7s %7s %7s %7s %7s %9s\n" model "req/s" syscalls recv send wait epl_ctl enter sqe tw punt parm ctx-sw wakeups "server-us"
printf "%-16s %9s %7s %7s %7s %7s %7s %7s %7s %7s %7s %7s %7s %7s %9s\n" "" "" "/req" "/req" "/req" "/req" "/req" "/req" "/req" "/req" "/req" "/req" "/req" "/req" "CPU/req"
for model in "${MODELS[@]}"; do
  : >"$WORK/out" # never read the previous server's listening line
  # shellcheck disable=SC2086 # SERVE_ARGS is a list of flags
  taskset -c 0 "$BIN" serve "$model" --listen 127.0.0.1:0 $SERVE_ARGS >"$WORK/out" 2>"$WORK/err" &
  SERVER_PID=$!
  addr=""
  for _ in $(seq 100); do
    addr=$(awk '/^listening /{print $2; exit}' "$WORK/out")
    [[ -n $addr ]] && break
    sleep 0.05
  done
  [[ -n $addr ]] || { echo "$model: did not start: $(cat "$WORK/err")" >&2; exit 1; }
  taskset -c 1 "$BIN" load "$addr" -c "$CONNS" -s "$SIZE" -t "${DUR}s" --warmup 1s --cpus 1 \
    --json "$WORK/r.json" >/dev/null &
  load_pid=$!
  sleep 2
  t0=$(awk '{print $14 + $15}' "/proc/$SERVER_PID/stat")
  perf stat -x, -e raw_syscalls:sys_enter,syscalls:sys_enter_epoll_ctl,context-switches,sched:sched_wakeup \
    -e syscalls:sys_enter_recvfrom,syscalls:sys_enter_read,syscalls:sys_enter_sendto,syscalls:sys_enter_write \
    -e syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_poll,syscalls:sys_enter_ppoll \
    -e syscalls:sys_enter_select,syscalls:sys_enter_pselect6 \
    -e syscalls:sys_enter_io_uring_enter,io_uring:io_uring_submit_req,io_uring:io_uring_task_work_run \
    -e io_uring:io_uring_queue_async_work,io_uring:io_uring_poll_arm,io_uring:io_uring_local_work_run \
    -p "$SERVER_PID" -- sleep "$WINDOW" 2>"$WORK/perf" >/dev/null
  t1=$(awk '{print $14 + $15}' "/proc/$SERVER_PID/stat")
  wait "$load_pid"
  kill -INT "$SERVER_PID"
  wait "$SERVER_PID" || true
  SERVER_PID=""
  python3 - "$model" "$WORK/r.json" "$WORK/perf" "$WINDOW" "$((t1 - t0))" "$HZ" "$JSON" "$SERVE_ARGS" <<'PY'
import csv, json, sys
model, rjson, perf, window, ticks, hz = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
json_out, serve_args = sys.argv[7], sys.argv[8]
r = json.load(open(rjson))
rps = r["throughput_rps"]
n = rps * window
counts = {}
for row in csv.reader(open(perf)):
    if len(row) > 2 and row[0].strip().isdigit():
        counts[row[2]] = int(row[0])
def total(*events):
    return sum(counts.get(e, 0) for e in events)
def per(*events):
    return f"{total(*events) / n:7.2f}" if n else "    n/a"
sc = lambda *names: [f"syscalls:sys_enter_{x}" for x in names]
cpu_us = ticks / hz / n * 1e6 if n else float("nan")
cols = {
    "syscalls": ["raw_syscalls:sys_enter"],
    "recv": sc("recvfrom", "read"),
    "send": sc("sendto", "write"),
    "wait": sc("epoll_wait", "epoll_pwait", "poll", "ppoll", "select", "pselect6"),
    "epoll_ctl": sc("epoll_ctl"),
    "io_uring_enter": sc("io_uring_enter"),
    "submit_req": ["io_uring:io_uring_submit_req"],
    "task_work_run": ["io_uring:io_uring_task_work_run", "io_uring:io_uring_local_work_run"],
    "queue_async_work": ["io_uring:io_uring_queue_async_work"],
    "poll_arm": ["io_uring:io_uring_poll_arm"],
    "context_switches": ["context-switches"],
    "wakeups": ["sched:sched_wakeup"],
}
name = f"{model} {serve_args}".strip()
print(f"{name:<16} {rps:9.0f} " + " ".join(per(*ev) for ev in cols.values()) + f" {cpu_us:9.2f}")
if json_out:
    with open(json_out, "a") as f:
        row = {"model": model, "serve_args": serve_args, "rps": rps, "requests": n,
               "server_cpu_us_per_request": cpu_us}
        row.update({k: (total(*ev) / n if n else None) for k, ev in cols.items()})
        f.write(json.dumps(row) + "\n")
PY
done
