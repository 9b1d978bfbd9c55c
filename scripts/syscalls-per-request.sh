#!/usr/bin/env bash
# Why a model costs what it costs, per request on the *server*: system calls (and the ones that
# tell models apart: epoll_ctl, io_uring_enter), context switches, and the io_uring tracepoints,
# for every model that runs here (or the ones named). A thin wrapper over the product's own
# counting (`iomodels load --explain --pid`: kernel tracepoints over the measured window, every
# thread of the server process, the SQPOLL kernel thread included; results/README.md, `explain`).
#
# Each model is served alone on CPU 0 and loaded from CPU 1 (closed loop, CONNS x SIZE B). Needs
# root (or CAP_PERFMON): without it the counts are null and the reason is printed.
#
# The io_uring columns: `enter` io_uring_enter calls; `sqe` operations submitted
# (io_uring:io_uring_submit_req); `tw` task-work runs (io_uring_task_work_run plus
# io_uring_local_work_run, which is what fires under DEFER_TASKRUN); `punt` operations handed to
# io-wq (io_uring_queue_async_work); `parm` polls armed (io_uring_poll_arm).
#
# This explains costs; it is not a ranking (one sample on a noisy machine). `iomodels run` gives
# the same counts for every point beside interleaved figures; `scripts/uring-compare.py` the
# io_uring comparison and ablation.
#
# Usage: scripts/syscalls-per-request.sh [MODEL...]   (default: every model `models --names` lists)
# Environment: CONNS (50), SIZE (512), DUR (3s), SERVE_ARGS (extra `serve` flags, e.g.
#   "--sqpoll" or "--fixed-files"), JSON (a file: also write each model's `explain` there, one
#   JSON object per line).
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${CONNS:-50}
SIZE=${SIZE:-512}
DUR=${DUR:-3s}
SERVE_ARGS=${SERVE_ARGS:-}
BIN=target/release/iomodels
[[ -x $BIN ]] || cargo build --release -q --bin iomodels
if [[ $# -gt 0 ]]; then MODELS=("$@"); else mapfile -t MODELS < <("$BIN" models --names); fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
[[ -n ${JSON:-} ]] && : >"$JSON"

printf '%-16s %9s %9s %8s %8s %8s %8s %8s %8s %8s\n' model syscalls epoll_ctl ctx-sw enter sqe tw punt parm req/s
for model in "${MODELS[@]}"; do
  # shellcheck disable=SC2086 # SERVE_ARGS is a list of flags
  coproc SERVER { exec "$BIN" serve "$model" $SERVE_ARGS --cpus 0 --listen 127.0.0.1:0 --stop-on-stdin-eof; }
  pid=$SERVER_PID
  read -r -t 10 word addr <&"${SERVER[0]}" || true
  if [[ ${word:-} != listening ]]; then
    echo "$model: did not start" >&2
    kill "$pid" 2>/dev/null || true
    continue
  fi
  out="$WORK/$model.json"
  "$BIN" load "$addr" -c "$CONNS" -s "$SIZE" -t "$DUR" --cpus 1 --explain --pid "$pid" \
    --json "$out" >/dev/null 2>"$WORK/$model.err" || echo "$model: load failed: $(tail -1 "$WORK/$model.err")" >&2
  exec {SERVER[1]}>&-
  wait "$pid" 2>/dev/null || true
  [[ -f $out ]] || continue
  python3 - "$out" "$model" "${JSON:-}" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); model = sys.argv[2]
e = r.get("explain")
if not e or not e.get("server"):
    why = next((w for w in r.get("warnings", []) if "explain" in w), "no counts")
    print(f"{model:<16} {why}")
    sys.exit(0)
s = e["server"]; by = s.get("by_name", {}); u = s.get("io_uring") or {}
f = lambda v: "-" if v is None else f"{v:.3f}"
tw = None if not u else (u.get("task_work_run") or 0) + (u.get("local_work_run") or 0)
print(f"{model:<16} {f(s['syscalls_per_request']):>9} {f(by.get('epoll_ctl', 0)):>9} "
      f"{f(s['context_switches_per_request']):>8} {f(by.get('io_uring_enter', 0)):>8} "
      f"{f(u.get('submit_req')):>8} {f(tw):>8} {f(u.get('queue_async_work')):>8} "
      f"{f(u.get('poll_arm')):>8} {r['throughput_rps']:>8.0f}")
if sys.argv[3]:
    with open(sys.argv[3], "a") as out:
        out.write(json.dumps({"model": model, "explain": e}) + "\n")
PY
done
