#!/usr/bin/env bash
# Compare two echo clients against one server on a 2-core machine, honestly:
#   A = `iomodels load` (mio event loop, pinned with --cpus 1)
#   B = examples/blocking_client (thread per connection, taskset -c 1)
# The server runs alone on CPU 0 (taskset -c 0). Runs interleave A B B A A B B A A B (5 each)
# so drift hits both; we report each client's best throughput and least CPU per request, and
# the ratios A/B. Workload: 50 connections x 512 B, closed loop, DUR seconds each (default 5).
#
# Usage:
#   scripts/bench-clients.sh                      # server: target/release/iomodels serve epoll
#   scripts/bench-clients.sh --addr 127.0.0.1:7700  # an already running server
#   scripts/bench-clients.sh -- CMD ARGS...       # any server command that prints `listening ADDR`
#     e.g. scripts/bench-clients.sh -- target/release/examples/echo_server
# Environment: DUR (seconds per run, default 5), CONNS (50), SIZE (512).
set -euo pipefail
cd "$(dirname "$0")/.."

DUR=${DUR:-5}
CONNS=${CONNS:-50}
SIZE=${SIZE:-512}
ADDR=""
SERVER_CMD=(target/release/iomodels serve epoll --listen 127.0.0.1:0)
if [[ ${1:-} == --addr ]]; then
  ADDR=$2
elif [[ ${1:-} == -- ]]; then
  shift
  SERVER_CMD=("$@")
fi

cargo build --release -q -p iomodels --bin iomodels
cargo build --release -q -p loadgen --example blocking_client --example echo_server
IOMODELS=target/release/iomodels
BLOCKING=target/release/examples/blocking_client
WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
  if [[ -n $SERVER_PID ]]; then
    # SIGINT first (the server's graceful stop), but a background job of a non-interactive
    # shell may ignore SIGINT, so fall back to SIGTERM after a grace period.
    kill -INT "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

if [[ -z $ADDR ]]; then
  taskset -c 0 "${SERVER_CMD[@]}" >"$WORK/server.out" 2>"$WORK/server.err" &
  SERVER_PID=$!
  for _ in $(seq 100); do
    ADDR=$(awk '/^listening /{print $2; exit}' "$WORK/server.out")
    [[ -n $ADDR ]] && break
    sleep 0.1
  done
  [[ -n $ADDR ]] || { echo "server did not print 'listening ADDR':" >&2; cat "$WORK/server.err" >&2; exit 1; }
fi
echo "server ${SERVER_CMD[*]} at $ADDR (CPU 0); clients on CPU 1; $CONNS x $SIZE B, ${DUR}s per run"

run_a() {
  taskset -c 1 "$IOMODELS" load "$ADDR" -c "$CONNS" -s "$SIZE" -t "${DUR}s" --warmup 1s --cpus 1 \
    --json "$WORK/a.json" >/dev/null
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["throughput_rps"], r["client_cpu"]["us_per_request"])' "$WORK/a.json"
}
run_b() {
  taskset -c 1 "$BLOCKING" "$ADDR" -c "$CONNS" -s "$SIZE" -t "$DUR" --warmup 1 |
    python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print(r["throughput_rps"], r["client_cpu"]["us_per_request"])'
}

# Server CPU (user + system ticks) from /proc, so each run shows whether the *server* was the
# limit: at ~1.00 of its core, no client can push more through it.
server_ticks() {
  if [[ -n $SERVER_PID && -r /proc/$SERVER_PID/stat ]]; then
    awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"
  else
    echo 0
  fi
}
HZ=$(getconf CLK_TCK)

: >"$WORK/A"; : >"$WORK/B"
for who in A B B A A B B A A B; do
  t0=$(server_ticks); s0=$(date +%s.%N)
  if [[ $who == A ]]; then line=$(run_a); else line=$(run_b); fi
  t1=$(server_ticks); s1=$(date +%s.%N)
  # The run includes a 1 s warm-up and process start-up, so this slightly understates the
  # server's utilisation during the measured window.
  util=$(python3 -c "print(f'{($t1 - $t0) / $HZ / ($s1 - $s0):.2f}')")
  echo "$who $line $util" | tee -a "$WORK/$who" |
    awk '{printf "%s  %10.0f req/s  %8.2f us/request  server CPU %s of its core\n", $1, $2, $3, $4}'
done

python3 - "$WORK/A" "$WORK/B" <<'PY'
import sys
def load(p):
    rows = [l.split() for l in open(p) if l.strip()]
    return max(float(r[1]) for r in rows), min(float(r[2]) for r in rows)
(ta, ca), (tb, cb) = load(sys.argv[1]), load(sys.argv[2])
print(f"A iomodels load     best {ta:10.0f} req/s   least {ca:7.2f} us CPU/request")
print(f"B blocking client   best {tb:10.0f} req/s   least {cb:7.2f} us CPU/request")
print(f"ratio A/B           throughput {ta/tb:5.2f}x   CPU/request {ca/cb:5.2f}x (lower is better)")
PY
