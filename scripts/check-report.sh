#!/usr/bin/env bash
# check-report.sh REPORT.html: render an iomodels HTML report in headless Chromium and check
# that a person would see something: the screenshot is not blank (more than 1 % of pixels
# differ from the background, several distinct colours), and every <svg> in the rendered page
# holds coloured marks (a data line, bar or dot, not only white background and grey axes).
# It also refuses pages that load anything from the network.
#
# Exit 0 when the report looks drawn; 1 with a one-line reason when it does not; 2 for a usage
# or environment problem (no such file, no Chromium and no way to install it).
#
# Not a layout review: look at the screenshot (kept with --keep DIR) for overlaps and legibility.
#
# Needs: chromium (Debian package `chromium`; installed with apt-get when absent and run as
# root) and python3 (standard library only). Works from any directory.
set -euo pipefail

usage() { echo "usage: $0 [--keep DIR] REPORT.html" >&2; exit 2; }

keep=""
if [[ "${1:-}" == "--keep" ]]; then
    [[ $# -ge 2 ]] || usage
    keep="$2"
    shift 2
fi
[[ $# -eq 1 ]] || usage
report="$1"
[[ -f "$report" ]] || { echo "check-report: no such file: $report" >&2; exit 2; }
report="$(cd "$(dirname "$report")" && pwd)/$(basename "$report")"

browser=""
for b in chromium chromium-browser; do
    if command -v "$b" >/dev/null 2>&1; then browser="$b"; break; fi
done
if [[ -z "$browser" ]]; then
    if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "check-report: installing chromium" >&2
        { apt-get install -y chromium || { apt-get update && apt-get install -y chromium; }; } \
            >/dev/null 2>&1 || true
    fi
    command -v chromium >/dev/null 2>&1 || {
        echo "check-report: chromium is not installed (apt-get install -y chromium)" >&2
        exit 2
    }
    browser=chromium
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# No network, no first-run work, a throwaway profile; root needs --no-sandbox.
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
    --disable-background-networking --disable-component-update --disable-sync
    --user-data-dir="$work/profile")
url="file://$report"

if ! timeout 120 "$browser" "${flags[@]}" --screenshot="$work/shot.png" --window-size=1280,4000 \
    "$url" >"$work/shot.log" 2>&1 || [[ ! -s "$work/shot.png" ]]; then
    echo "check-report: chromium took no screenshot ($(tail -n 1 "$work/shot.log"))"
    exit 1
fi
if ! timeout 120 "$browser" "${flags[@]}" --dump-dom "$url" >"$work/dom.html" 2>"$work/dom.log" \
    || [[ ! -s "$work/dom.html" ]]; then
    echo "check-report: chromium dumped no DOM ($(tail -n 1 "$work/dom.log"))"
    exit 1
fi
if [[ -n "$keep" ]]; then
    mkdir -p "$keep"
    cp "$work/shot.png" "$work/dom.html" "$keep/"
fi

exec python3 - "$work/shot.png" "$work/dom.html" <<'PY'
"""Check a screenshot (PNG, decoded here with zlib) and a dumped DOM; print one reason and
exit 1 on the first failure."""
import collections
import html.parser
import re
import struct
import sys
import zlib


def fail(reason):
    print(f"check-report: {reason}")
    sys.exit(1)


def decode_png(data):
    """(width, height, bytes per pixel, rows): 8-bit RGB or RGBA, not interlaced."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        fail("the screenshot is not a PNG")
    pos, idat, ihdr = 8, [], None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if ihdr is None:
        fail("the screenshot has no PNG header")
    w, h, depth, colour, _, _, interlace = ihdr
    if depth != 8 or colour not in (2, 6) or interlace:
        fail(f"unexpected PNG format (depth {depth}, colour type {colour}, interlace {interlace})")
    bpp = 3 if colour == 2 else 4
    stride = w * bpp
    raw = zlib.decompress(b"".join(idat))
    lo7 = int.from_bytes(b"\x7f" * stride, "big")
    hi1 = int.from_bytes(b"\x80" * stride, "big")
    prev = bytes(stride)
    prev_uniform = True
    rows = []
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]
        zero = not any(line)
        if f == 0:
            out = line
        elif f == 2 or (f == 4 and zero and prev_uniform):
            # Up: bytewise add without carries between bytes. A zero Paeth row under a row of
            # one colour repeats it (the predictor picks the pixel above, then the one left).
            a, b = int.from_bytes(line, "big"), int.from_bytes(prev, "big")
            s = ((a & lo7) + (b & lo7)) ^ ((a ^ b) & hi1)
            out = s.to_bytes(stride, "big")
        else:
            o = bytearray(line)
            if f == 1:
                for i in range(bpp, stride):
                    o[i] = (o[i] + o[i - bpp]) & 0xFF
            elif f == 3:
                for i in range(stride):
                    left = o[i - bpp] if i >= bpp else 0
                    o[i] = (o[i] + ((left + prev[i]) >> 1)) & 0xFF
            elif f == 4:
                for i in range(stride):
                    a = o[i - bpp] if i >= bpp else 0
                    b = prev[i]
                    c = prev[i - bpp] if i >= bpp else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                    o[i] = (o[i] + pred) & 0xFF
            else:
                fail(f"unknown PNG filter {f}")
            out = bytes(o)
        rows.append(out)
        prev = out
        prev_uniform = out == out[:bpp] * w
    return w, h, bpp, rows


png, dom_path = sys.argv[1], sys.argv[2]
w, h, bpp, rows = decode_png(open(png, "rb").read())

# Every other row, every other pixel: plenty for "is anything there", fast in pure Python.
colours = collections.Counter()
for row in rows[::2]:
    colours.update(row[i : i + 3] for i in range(0, len(row), 2 * bpp))
total = sum(colours.values())
background, bg_count = colours.most_common(1)[0]
differing = 1 - bg_count / total
vivid = sum(1 for c in colours if max(c) - min(c) > 40)
if differing < 0.01:
    fail(f"the screenshot is blank: {differing:.2%} of pixels differ from the background")
if len(colours) < 8 or vivid < 3:
    fail(f"the screenshot has {len(colours)} colours ({vivid} vivid): nothing drawn in colour")


class Svgs(html.parser.HTMLParser):
    """Per <svg>: how many coloured marks (shapes with a non-grey stroke or fill)."""

    SHAPES = {"polyline", "path", "rect", "circle", "line", "polygon", "ellipse"}

    def __init__(self):
        super().__init__()
        self.depth = 0
        self.marks = []
        self.remote = []

    @staticmethod
    def coloured(value):
        if not value:
            return False
        v = value.strip().lower()
        m = re.fullmatch(r"#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})", v)
        if m:
            rgb = [int(x, 16) for x in m.groups()]
        else:
            m = re.fullmatch(r"rgba?\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+).*\)", v)
            if not m:
                return False
            rgb = [int(x) for x in m.groups()]
        return max(rgb) - min(rgb) > 20

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ("src", "href", "xlink:href"):
            v = (a.get(k) or "").strip().lower()
            if v.startswith(("http:", "https:", "//")):
                self.remote.append(v)
        if tag == "svg":
            if self.depth == 0:
                self.marks.append(0)
            self.depth += 1
        elif self.depth and tag in self.SHAPES:
            if self.coloured(a.get("stroke")) or self.coloured(a.get("fill")):
                self.marks[-1] += 1

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag == "svg":
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag == "svg" and self.depth:
            self.depth -= 1


p = Svgs()
p.feed(open(dom_path, encoding="utf-8", errors="replace").read())
if p.remote:
    fail(f"the page loads from the network: {p.remote[0]}")
if not p.marks:
    fail("the page has no <svg> plot")
empty = [i + 1 for i, n in enumerate(p.marks) if n == 0]
if empty:
    fail(f"{len(empty)} of {len(p.marks)} plots have no coloured marks (plot {empty[0]} first)")
print(
    f"check-report: ok: {len(p.marks)} plots, each with coloured marks; "
    f"{differing:.1%} of the {w}x{h} screenshot drawn in {len(colours)} colours"
)
PY
