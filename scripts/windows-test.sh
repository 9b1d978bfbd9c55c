#!/usr/bin/env bash
# The Windows build, run for real under Wine (whose sockets are the host's loopback sockets):
#   1. builds iomodels.exe and the test executables (x86_64-pc-windows-gnu, one debug build:
#      the tests need it anyway, and a second, release build would double the step's time);
#   2. runs the Rust test suites under Wine (CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER, see
#      scripts/wine/runner.sh): every test of `servers` (the conformance suite for every
#      Windows model included), `loadgen` and the binary's own. Cases that cannot pass under
#      Wine are not dropped: the conformance suite lists its known ones as ignored with the
#      reason (IOMODELS_UNDER_WINE, WINE_KNOWN), and the ones skipped here are printed below,
#      by name and with the reason;
#   3. checks which models the Windows build offers, then every one of them, iocp included,
#      with the independent echo checker from the Linux side (each stopped by SIGINT, which
#      Wine turns into Ctrl-C, and required to exit with its stats line within 5 s);
#   4. runs `iomodels.exe run --quick` and checks a result was written for every model.
# Installs what it needs on a fresh Debian machine (mingw-w64, wine64, the rustup target).
#
# Wine 8 facts this relies on or works around (each minimal case in scripts/wine/):
# - Wine 8 lacks bcryptprimitives.dll (Rust's std calls its ProcessPrng): a stand-in is built
#   beside every .exe (bcryptprimitives.c).
# - SIGTERM ends a Wine process before any Windows code runs; SIGINT becomes CTRL_C_EVENT.
# - shutdown(SD_BOTH) does not wake a thread blocked in recv (shutdown-wake.c): `blocking`'s
#   stop case is listed as known in the conformance suite.
# - A nonblocking UDP sendto fails with WSAEWOULDBLOCK while another thread sends on the same
#   socket (udp-shared-send.c): two loops sharing one UDP socket drop some echoes as send drops,
#   so `t2-handoff/udp_100_sockets` is listed as known for the readiness models.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS

if ! command -v x86_64-w64-mingw32-gcc >/dev/null || [[ ! -x /usr/lib/wine/wine64 ]]; then
  apt-get update -qq
  apt-get install -y -qq gcc-mingw-w64-x86-64 wine64 >/dev/null
fi
rustup target add x86_64-pc-windows-gnu >/dev/null

TARGET=x86_64-pc-windows-gnu
OUT=target/$TARGET/debug
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=$PWD/scripts/wine/runner.sh
export WINE_SHIM_DLL=$PWD/$OUT/bcryptprimitives.dll
export WINEDEBUG=-all
export WINEPREFIX=${WINEPREFIX:-$PWD/target/wineprefix}
WINE=/usr/lib/wine/wine64

cargo build --target $TARGET --bin iomodels
cargo test --target $TARGET --workspace --no-run
mkdir -p "$OUT/deps"
x86_64-w64-mingw32-gcc -shared -O2 -o "$WINE_SHIM_DLL" \
  scripts/wine/bcryptprimitives.c scripts/wine/bcryptprimitives.def -ladvapi32
cp "$WINE_SHIM_DLL" "$OUT/deps/"
"$WINE" wineboot -i >/dev/null 2>&1 || true # the prefix, once, outside any timed check
echo "::: windows: built in $((SECONDS - t0)) s"

# 2. The Rust suites under Wine. Each skip: test binary, test name, reason (printed).
skips=(
  "engine|fixed_delay_closed_loop_latency_sits_at_the_delay|under Wine the p90 of a 2 ms fixed-delay server reads ~16 ms (not investigated: Wine's timer or wineserver round trips)"
  "engine|reset_is_counted_and_the_run_ends_at_its_deadline|under Wine a peer's reset reaches the generator as an error it counts as 'other', not 'reset' (not investigated)"
  "engine|busy_poll_keeps_the_rules_of_the_sleeping_generator|the same reset classification as above"
  "bins|udp_takes_the_first_address_that_does_not_refuse|Wine does not report an ICMP port unreachable on a UDP socket as WSAECONNRESET (Windows does, SIO_UDP_CONNRESET on by default), so a port with nothing bound is not told apart from a live one"
  "cli_sweep|an_idle_sweep_records_steps_past_select_fd_setsize_as_skipped|its 1,100 idle connections per step take longer than the test allows under Wine (not investigated)"
)
declare -A skip_args=()
for s in "${skips[@]}"; do
  IFS='|' read -r bin name why <<<"$s"
  echo "SKIPPED under Wine: $bin::$name: $why"
  skip_args[$bin]+=" --skip $name"
done
run_suite() { # cargo test args... -- then the suite's own
  echo "::: windows: cargo test $*"
  cargo test --target $TARGET "$@"
}
run_suite -p servers
run_suite -p loadgen --lib
run_suite -p loadgen --test files
run_suite -p loadgen --test engine -- ${skip_args[engine]}
run_suite -p iomodels --lib
run_suite -p iomodels --bins -- ${skip_args[bins]}
for t in child cli_compare cli_load cli_run cli_serve; do
  run_suite -p iomodels --test "$t" -- ${skip_args[$t]:-}
done
run_suite -p iomodels --test cli_sweep -- ${skip_args[cli_sweep]}
echo "::: windows: Rust suites done at $((SECONDS - t0)) s"

# 3. The models the build offers, each against the independent checker.
names=$("$WINE" "$OUT/iomodels.exe" models --names 2>/dev/null | tr -d '\r')
echo "Windows build offers: $(echo $names)"
for m in blocking select poll mio polling tokio tokio-mt iocp; do
  grep -qx "$m" <<<"$names" || { echo "FAIL: $m missing from the Windows build's models --names" >&2; exit 1; }
done
for m in epoll uring uring-multishot; do
  if grep -qx "$m" <<<"$names"; then echo "FAIL: $m must be unavailable on Windows" >&2; exit 1; fi
done
# --models-from asks the build itself (`models --names`), so a new Windows model is checked
# without editing this list.
python3 scripts/echo-check.py --wine --models-from "$OUT/iomodels.exe"
# Several loops share one listener through the acceptor hand-off on Windows (no balancing
# SO_REUSEPORT there), and iocp's workers share one port: check both paths too.
python3 scripts/echo-check.py --wine --serve "$OUT/iomodels.exe" serve mio --threads 2 --listen 127.0.0.1:0
python3 scripts/echo-check.py --wine --serve "$OUT/iomodels.exe" serve iocp --threads 2 --listen 127.0.0.1:0
# UDP (`serve --proto udp`): every Windows model that lists it (iocp included), two receiving
# threads of `blocking` sharing one socket (their stop: shutdown plus a wake-up datagram each),
# and two iocp workers dequeuing the one socket's receives from one port.
python3 scripts/udp-check.py --wine --timeout-scale 3 --models-from "$OUT/iomodels.exe"
python3 scripts/udp-check.py --wine --timeout-scale 3 --serve "$OUT/iomodels.exe" serve blocking --proto udp --threads 2 --listen 127.0.0.1:0
python3 scripts/udp-check.py --wine --timeout-scale 3 --serve "$OUT/iomodels.exe" serve iocp --proto udp --threads 2 --listen 127.0.0.1:0
echo "::: windows: echo checks done at $((SECONDS - t0)) s"

# 4. The whole matrix, once, quickly: a result for every model the build offers.
# Exit 3 (a point failed) is reported, not fatal: under Wine the 500-connection `heavy` point
# fails for some models (no request completed in its 1 s: Wine's connects and receives go
# through wineserver; not investigated further). Every model must have its other results.
run=$(mktemp -d)/run
rc=0
"$WINE" "$OUT/iomodels.exe" run --quick --out "Z:$run" </dev/null >"$run.log" 2>&1 || rc=$?
tail -n 25 "$run.log"
[[ $rc == 0 || $rc == 3 ]] || { echo "FAIL: run --quick under Wine exited $rc" >&2; exit 1; }
grep FAILED "$run.log" | sed 's/^/run --quick under Wine, failed point: /' || true
for m in $names; do
  [[ -f $run/$m/latency.json && -f $run/$m/throughput.json ]] ||
    { echo "FAIL: run --quick wrote no result for $m under $run" >&2; exit 1; }
done
echo "run --quick under Wine: a result for each of $(echo $names | wc -w) models in $run"
echo "::: windows: total $((SECONDS - t0)) s"
