#!/usr/bin/env bash
# Why a model costs what it costs: system calls, epoll_ctl calls and context switches per
# request on the *server*, plus its CPU time per request, for every model that runs here.
#
# Each model is served alone on CPU 0 (taskset), loaded from CPU 1 (`iomodels load --cpus 1`,
# closed loop, CONNS x SIZE B), and `perf stat` counts the server's kernel tracepoints for
# WINDOW seconds inside the measured part of the run. Requests in that window are estimated
# from the run's throughput. Needs `perf` (Debian: linux-perf) and root (tracepoints).
#
# This explains costs; it is not a ranking. For comparisons use interleaved runs (best of five),
# as the design notes say: one pass here is one sample on a noisy machine.
#
# Usage: scripts/syscalls-per-request.sh [MODEL...]   (default: every model `models --names` lists)
# Environment: CONNS (50), SIZE (512), DUR (6, seconds of load), WINDOW (3, seconds counted).
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${CONNS:-50}
SIZE=${SIZE:-512}
DUR=${DUR:-6}
WINDOW=${WINDOW:-3}
BIN=target/release/iomodels
command -v perf >/dev/null || { echo "needs perf (apt-get install linux-perf)" >&2; exit 2; }
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

printf "%-9s %9s %8s %8s %8s %8s %8s %8s %8s %10s\n" model "req/s" syscalls recv send wait epoll_ctl ctx-sw wakeups "server-us"
printf "%-9s %9s %8s %8s %8s %8s %8s %8s %8s %10s\n" "" "" "/req" "/req" "/req" "/req" "/req" "/req" "/req" "CPU/req"
for model in "${MODELS[@]}"; do
  taskset -c 0 "$BIN" serve "$model" --listen 127.0.0.1:0 >"$WORK/out" 2>"$WORK/err" &
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
    -p "$SERVER_PID" -- sleep "$WINDOW" 2>"$WORK/perf" >/dev/null
  t1=$(awk '{print $14 + $15}' "/proc/$SERVER_PID/stat")
  wait "$load_pid"
  kill -INT "$SERVER_PID"
  wait "$SERVER_PID" || true
  SERVER_PID=""
  python3 - "$model" "$WORK/r.json" "$WORK/perf" "$WINDOW" "$((t1 - t0))" "$HZ" <<'PY'
import csv, json, sys
model, rjson, perf, window, ticks, hz = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
r = json.load(open(rjson))
rps = r["throughput_rps"]
n = rps * window
counts = {}
for row in csv.reader(open(perf)):
    if len(row) > 2 and row[0].strip().isdigit():
        counts[row[2]] = int(row[0])
def per(*events):
    total = sum(counts.get(e, 0) for e in events)
    return f"{total / n:8.2f}" if n else "     n/a"
sc = lambda *names: [f"syscalls:sys_enter_{x}" for x in names]
cpu_us = ticks / hz / n * 1e6 if n else float("nan")
print(f"{model:<9} {rps:9.0f} {per('raw_syscalls:sys_enter')} {per(*sc('recvfrom', 'read'))} "
      f"{per(*sc('sendto', 'write'))} {per(*sc('epoll_wait', 'epoll_pwait', 'poll', 'ppoll', 'select', 'pselect6'))} "
      f"{per(*sc('epoll_ctl'))} {per('context-switches')} {per('sched:sched_wakeup')} {cpu_us:10.2f}")
PY
done
