#!/usr/bin/env bash
# Cargo's runner for x86_64-pc-windows-gnu (CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER): runs a
# Windows test executable under Wine, with the bcryptprimitives.dll stand-in (see
# bcryptprimitives.c) beside it. scripts/windows-test.sh builds the DLL and sets WINE_SHIM_DLL.
# Tests see IOMODELS_UNDER_WINE=1 and list the cases Wine itself cannot pass as ignored, with
# the reason (servers/tests/conformance.rs, WINE_KNOWN).
set -euo pipefail
exe=$1
dir=$(dirname "$exe")
[[ -e $dir/bcryptprimitives.dll ]] || cp "${WINE_SHIM_DLL:?built by scripts/windows-test.sh}" "$dir/"
export IOMODELS_UNDER_WINE=1 WINEDEBUG=${WINEDEBUG:--all}
exec /usr/lib/wine/wine64 "$@"
