#!/usr/bin/env bash
# Shows that an open-loop rate the generator cannot reach is reported, not paid for in memory
# or time: `iomodels load -R RATE` against `iomodels serve epoll --cpus 0`, from 1e5 to 1e8
# requests per second, printing for each rate the generator's peak RSS (GNU time's %M), the
# achieved rate, the wall time and whether the run was marked saturated.
#
# Checks (the kind of the open-loop memory fault): every run ends within its duration + 2 s,
# stays under 64 MB, is marked saturated when the rate was out of reach, and the largest peak is
# within 16 MB of the smallest (flat: memory does not grow with rate x duration). Not a speed
# claim: the achieved rate is whatever this machine gives. Prints `N passed, M failed`.
#
# Usage: scripts/open-loop-memory.sh [DURATION_S] [CONNECTIONS]   (defaults: 1 and 1)
# Needs GNU time at /usr/bin/time (Debian: apt-get install time).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${IOMODELS:-target/release/iomodels}
DURATION=${1:-1}
CONNS=${2:-1}
[[ -x /usr/bin/time ]] || { echo "needs GNU time at /usr/bin/time (apt-get install time)" >&2; exit 2; }
[[ -x $BIN ]] || cargo build --release -q --bin iomodels
WORK=$(mktemp -d)
SERVER=""
cleanup() {
  [[ -n $SERVER ]] && kill "$SERVER" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

CLIENT_CPUS=()
if (($(nproc) >= 2)); then CLIENT_CPUS=(--cpus 1); fi

"$BIN" serve epoll --cpus 0 --listen 127.0.0.1:0 >"$WORK/serve.out" 2>"$WORK/serve.err" &
SERVER=$!
ADDR=""
for _ in $(seq 100); do
  ADDR=$(awk '/^listening /{print $2; exit}' "$WORK/serve.out")
  [[ -n $ADDR ]] && break
  sleep 0.1
done
[[ -n $ADDR ]] || { echo "serve did not start: $(cat "$WORK/serve.err")" >&2; exit 1; }

echo "iomodels load $ADDR -c $CONNS -t ${DURATION}s --warmup 0s -R RATE (server: epoll on CPU 0)"
printf '%-8s %14s %14s %10s %10s\n' rate peak_rss_MB achieved_rps wall_s saturated
for rate in 1e5 1e6 1e7 1e8; do
  /usr/bin/time -f '%M %e' -o "$WORK/$rate.time" \
    "$BIN" load "$ADDR" -c "$CONNS" -R "$rate" -t "${DURATION}s" --warmup 0s "${CLIENT_CPUS[@]}" \
    --json "$WORK/$rate.json" >/dev/null
  read -r kb wall <"$WORK/$rate.time"
  python3 - "$WORK/$rate.json" "$rate" "$kb" "$wall" <<'PY' | tee -a "$WORK/rows"
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:<8} {int(sys.argv[3]) / 1024:14.1f} {r['achieved_rps']:14.0f} {float(sys.argv[4]):10.2f} {str(r['saturated']).lower():>10}")
PY
done

python3 - "$WORK/rows" "$DURATION" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
duration = float(sys.argv[2])
passed = failed = 0
def verdict(name, ok, detail):
    global passed, failed
    if ok:
        passed += 1
        print(f"PASS {name} ({detail})")
    else:
        failed += 1
        print(f"FAIL {name}: {detail}")
peaks = [float(r[1]) for r in rows]
for rate, mb, achieved, wall, sat in rows:
    verdict(f"{rate} ends on time", float(wall) <= duration + 2, f"{wall} s for a {duration:g} s run")
    verdict(f"{rate} memory bounded", float(mb) < 64, f"{mb} MB, limit 64")
    if float(achieved) < 0.95 * float(rate):
        verdict(f"{rate} out of reach is reported", sat == "true", f"achieved {achieved}, saturated {sat}")
verdict("peak memory flat over rates", max(peaks) - min(peaks) <= 16, f"{min(peaks):.1f}-{max(peaks):.1f} MB")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
