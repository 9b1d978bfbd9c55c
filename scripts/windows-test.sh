#!/usr/bin/env bash
# The Windows build, run for real under Wine: builds iomodels.exe (x86_64-pc-windows-gnu),
# checks which models it offers, and runs the independent echo checker from the Linux side
# against every model the Windows build lists (Wine's sockets are the host's loopback sockets).
# Installs what it needs on a fresh Debian machine (mingw-w64, wine64, the rustup target).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v x86_64-w64-mingw32-gcc >/dev/null || [[ ! -x /usr/lib/wine/wine64 ]]; then
  apt-get update -qq
  apt-get install -y -qq gcc-mingw-w64-x86-64 wine64 >/dev/null
fi
rustup target add x86_64-pc-windows-gnu >/dev/null

export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
cargo build --release --target x86_64-pc-windows-gnu --bin iomodels
OUT=target/x86_64-pc-windows-gnu/release
x86_64-w64-mingw32-gcc -shared -O2 -o "$OUT/bcryptprimitives.dll" \
  scripts/wine/bcryptprimitives.c scripts/wine/bcryptprimitives.def -ladvapi32

export WINEDEBUG=-all
export WINEPREFIX=${WINEPREFIX:-$PWD/target/wineprefix}
WINE=/usr/lib/wine/wine64

names=$("$WINE" "$OUT/iomodels.exe" models --names 2>/dev/null | tr -d '\r')
echo "Windows build offers: $(echo $names)"
for m in blocking mio polling tokio tokio-mt; do
  grep -qx "$m" <<<"$names" || { echo "FAIL: $m missing from the Windows build's models --names" >&2; exit 1; }
done
for m in epoll; do
  if grep -qx "$m" <<<"$names"; then echo "FAIL: $m must be unavailable on Windows" >&2; exit 1; fi
done

python3 scripts/echo-check.py --wine --models-from "$OUT/iomodels.exe"
# Several loops share one listener through the acceptor hand-off on Windows (no balancing
# SO_REUSEPORT there): check that path too.
python3 scripts/echo-check.py --wine --serve "$OUT/iomodels.exe" serve mio --threads 2 --listen 127.0.0.1:0
# UDP (`serve --proto udp`): every Windows model that lists it, and two receiving threads of
# `blocking` sharing one socket (their stop: shutdown plus a wake-up datagram each).
python3 scripts/udp-check.py --wine --timeout-scale 3 --models-from "$OUT/iomodels.exe"
python3 scripts/udp-check.py --wine --timeout-scale 3 --serve "$OUT/iomodels.exe" serve blocking --proto udp --threads 2 --listen 127.0.0.1:0
