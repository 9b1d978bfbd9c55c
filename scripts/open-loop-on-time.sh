#!/usr/bin/env bash
# Does the open-loop generator send on time? (issue 18) An open-loop latency counts from each
# request's intended send time, so every µs the generator sends late is charged to the server.
# This loads a server written without the project's code (scripts/known-latency-server.py,
# answering at once: --delay-ms 0) pinned to CPU 0, from the generator pinned to CPU 1, at
# 100, 1,000, 10,000 and 50,000 req/s, and prints per run:
#   send lag p50/p99 (µs), corrected p99 - uncorrected p99 (µs: the generator's share of the
#   tail), generator CPU µs/request (`client_cpu`: the price of sending on time, it spins part
#   of every gap), and `saturated` with the first reason.
# A Python server is slow (tens of µs per answer, one core): at the highest rates it is the
# server that falls behind, and the result says so (saturated, corrected >> uncorrected).
#
#   scripts/open-loop-on-time.sh [--quick] [--conns N]
#     --quick   1 s runs at 100 and 1,000 req/s (CI runs this form).
#   Exits 1 if any run's verdict disagrees with its figures: send lag p99 above the saturation
#   rule's limit without "the generator sent late", or that reason without the lag. Whether the
#   generator is on time on this machine is the table's to show, not a gate: on a shared 2-CPU
#   machine other work on the generator's CPU can make any generator late (measured while
#   another build ran: p99 1-4 ms, old and new alike), and then the run must say so.
#   IOMODELS=path      the binary to test (default target/release/iomodels)
#   IOMODELS_OLD=path  also run this binary, interleaved (old new new old per rate), to compare
#   ON_TIME_OUT=dir    keep every run's JSON there (default: a temporary directory)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${IOMODELS:-target/release/iomodels}
[[ -x $BIN ]] || cargo build --release -q --bin iomodels
OLD=${IOMODELS_OLD:-}
QUICK=0
CONNS=50
while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) QUICK=1 ;;
    --conns) CONNS=$2; shift ;;
    *) echo "usage: $0 [--quick] [--conns N]" >&2; exit 2 ;;
  esac
  shift
done
if [[ $QUICK == 1 ]]; then
  RATES=(100 1000); DUR=1s; WARM=500ms
else
  RATES=(100 1000 10000 50000); DUR=3s; WARM=1s
fi
WORK=${ON_TIME_OUT:-$(mktemp -d)}
mkdir -p "$WORK"
SERVER_PID=""
cleanup() {
  [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null || true
  [[ -z ${ON_TIME_OUT:-} ]] && rm -rf "$WORK"
}
trap cleanup EXIT

# The server on CPU 0, the generator on CPU 1 (a one-CPU machine shares, and says so).
PIN_SERVER=(taskset -c 0)
GEN_CPU=1
if [[ $(nproc) -lt 2 ]] || ! command -v taskset >/dev/null; then
  PIN_SERVER=()
  GEN_CPU=0
  echo "note: fewer than 2 CPUs or no taskset: server and generator share a CPU" >&2
fi
"${PIN_SERVER[@]}" python3 scripts/known-latency-server.py --delay-ms 0 --max-s 600 >"$WORK/server.out" &
SERVER_PID=$!
ADDR=""
for _ in $(seq 100); do
  ADDR=$(awk '/^listening /{print $2; exit}' "$WORK/server.out")
  [[ -n $ADDR ]] && break
  sleep 0.1
done
[[ -n $ADDR ]] || { echo "known-latency-server did not start" >&2; exit 1; }

# One run; prints one table row, and `LAG <bin> <rate> <p90 µs>` on stderr for the gross-failure check.
one() { # LABEL BINARY RATE
  local label=$1 bin=$2 rate=$3 json="$WORK/$1-$3.json"
  "$bin" load "$ADDR" -R "$rate" -c "$CONNS" -s 64 -t "$DUR" --warmup "$WARM" --cpus "$GEN_CPU" \
    --json "$json" >/dev/null 2>"$WORK/$label-$rate.err" || {
    echo "$label at $rate req/s failed: $(tail -1 "$WORK/$label-$rate.err")" >&2
    return 1
  }
  python3 - "$json" "$label" "$rate" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
lag, c, u = r["send_lag_us"], r["latency_us"], r["uncorrected_latency_us"]
why = next((w for w in r["warnings"] if w.startswith("saturated")), "")
why = why.replace("saturated: ", "")[:60]
print(f"{sys.argv[2]:<4} {int(sys.argv[3]):>7} {r['achieved_rps']:>9.0f} {lag['p50']:>8.1f} {lag['p90']:>8.1f} {lag['p99']:>8.1f}"
      f" {c['p99'] - u['p99']:>10.1f} {u['p99']:>9.1f} {r['client_cpu']['us_per_request']:>8.1f}"
      f"  {'yes' if r['saturated'] else 'no':<4} {why}")
print(f"LAG {sys.argv[2]} {sys.argv[3]} {lag['p90']}", file=sys.stderr)
PY
}

echo "server: known-latency-server.py --delay-ms 0 at $ADDR (CPU 0); generator: $BIN (CPU $GEN_CPU), -c $CONNS, -s 64, $DUR after $WARM warm-up"
printf '%-4s %7s %9s %8s %8s %8s %10s %9s %8s  %s\n' bin rate achieved "lag p50" "lag p90" "lag p99" "corr-unc99" "unc p99" "cpu us/r" "saturated"
: >"$WORK/lag"
for rate in "${RATES[@]}"; do
  if [[ -n $OLD ]]; then
    # Interleaved so both see the same machine: old new new old.
    one old "$OLD" "$rate" 2>>"$WORK/lag"
    one new "$BIN" "$rate" 2>>"$WORK/lag"
    one new "$BIN" "$rate" 2>>"$WORK/lag"
    one old "$OLD" "$rate" 2>>"$WORK/lag"
  else
    one new "$BIN" "$rate" 2>>"$WORK/lag"
  fi
done

# Every run, quick or not: the verdict must agree with the figures. A run whose send lag p99
# is above the saturation rule's limit (the largest of 25 µs, 10 % of the thread's gap between
# sends, 5 % of the corrected p99; results/README.md) must say "the generator sent late", and a
# run that says so must be above it. This is what CI gates on: whether this machine lets the
# generator be on time is a measurement (the table above), whether a late generator is caught
# is correctness.
python3 - "$WORK" <<'PY'
import glob, json, sys
bad = 0
for f in sorted(glob.glob(sys.argv[1] + "/*.json")):
    r = json.load(open(f))
    w = r["workload"]
    threads = min(w["threads"], len(w["cpus"])) if w.get("cpus") else w["threads"]
    gap_us = 1e6 * threads / w["rate"]
    limit = max(25.0, 0.10 * gap_us, 0.05 * r["latency_us"]["p99"])
    lag = r["send_lag_us"]["p99"]
    late = any("the generator sent late" in x for x in r["warnings"])
    if (lag > limit * 1.001) != late:
        bad += 1
        print(f"FAIL: {f}: send lag p99 {lag:.1f} µs, limit {limit:.1f} µs, flagged late: {late}")
    elif late and not r["saturated"]:
        bad += 1
        print(f"FAIL: {f}: says the generator sent late but is not marked saturated")
n = len(glob.glob(sys.argv[1] + "/*.json"))
if bad:
    sys.exit(1)
print(f"ok: in all {n} runs the 'generator sent late' verdict agrees with the send lag p99")
PY

if [[ $QUICK == 1 ]]; then
  # Not a gate (a shared CI machine can make any generator late): the gross-failure figure,
  # the best p90 send lag at 1,000 req/s, printed for whoever reads the log.
  best=$(awk '$1 == "LAG" && $2 == "new" && $3 == 1000 { if (m == "" || $4 < m) m = $4 } END { print m + 0 }' "$WORK/lag")
  echo "note: best send lag p90 at 1,000 req/s: $best µs (a working generator: a few µs on a quiet machine)"
fi
