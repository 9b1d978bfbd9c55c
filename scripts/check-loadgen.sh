#!/usr/bin/env bash
# Checks `iomodels load` against servers of known latency written outside the Rust project
# (scripts/known-latency-server.py), the acceptance figures of the load-generator issue:
#   1. closed loop against a fixed 2 ms server: p50 within 2.0-2.6 ms;
#   2. open loop at 1,000 req/s against a server that stops 200 ms of every second:
#      corrected p90 ~ 100 ms (80-130) and p99 ~ 190 ms (170-210), uncorrected p50 far below.
# These are correctness checks of the instrument (does it report what the server does), with
# bounds set by the servers' known behaviour, not speed claims. Prints `N passed, M failed`.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${IOMODELS:-target/release/iomodels}
[[ -x $BIN ]] || cargo build --release -q --bin iomodels
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

start_server() { # NAME ARGS... → starts it, sets ADDR (not in a subshell, so PIDS is kept)
  local name=$1
  shift
  python3 scripts/known-latency-server.py --max-s 60 "$@" >"$WORK/$name.out" &
  PIDS+=("$!")
  ADDR=""
  for _ in $(seq 100); do
    ADDR=$(awk '/^listening /{print $2; exit}' "$WORK/$name.out")
    [[ -n $ADDR ]] && return
    sleep 0.1
  done
  echo "known-latency-server did not start" >&2
  exit 1
}

passed=0
failed=0
verdict() { # name ok detail
  if [[ $2 == ok ]]; then passed=$((passed + 1)); echo "PASS $1 ($3)"; else failed=$((failed + 1)); echo "FAIL $1: $3"; fi
}

start_server delay --delay-ms 2
"$BIN" load "$ADDR" -c 10 -t 5s --json "$WORK/delay.json" >/dev/null
read -r ok detail < <(python3 - "$WORK/delay.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
p50 = r["latency_us"]["p50"] / 1000
ok = 2.0 <= p50 <= 2.6 and r["errors"]["total"] == 0
print("ok" if ok else "bad", f"p50 {p50:.2f} ms, want 2.0-2.6; errors {r['errors']['total']}")
PY
)
verdict "fixed 2 ms server, closed loop" "$ok" "$detail"

start_server stall --stall-ms 200 --every-ms 1000
"$BIN" load "$ADDR" -c 50 -R 1000 -t 10s --json "$WORK/stall.json" >/dev/null
read -r ok detail < <(python3 - "$WORK/stall.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
c, u = r["latency_us"], r["uncorrected_latency_us"]
p90, p99 = c["p90"] / 1000, c["p99"] / 1000
ok = 80 <= p90 <= 130 and 170 <= p99 <= 210 and u["p50"] < c["p90"] / 10
print("ok" if ok else "bad",
      f"corrected p90 {p90:.1f} ms (80-130), p99 {p99:.1f} ms (170-210); uncorrected p50 {u['p50']/1000:.2f} ms")
PY
)
verdict "200 ms stall every second, open loop 1000 req/s" "$ok" "$detail"

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
