#!/bin/bash
# The report charts render in a browser: a fixture-model run of icalign search, sweep and ablate
# (synth --preset tiny answering, a python3 fake judge rating 1 + byte sum % 9), then every SVG
# (search.svg, sweep-*.svg, ablate.svg) is rendered by headless Chromium to a 900x600 PNG and
# the PNG is checked: it decodes, most of it is the white background, and it has the chart's
# blue (#4c72b0: line, band, points, bars) and dark text/axis pixels - an XML error page or a
# blank page has neither.
# Usage: svg_render.sh ICALIGN_BINARY SHARED_DIR   (exit 77 = skipped: chromium or python3
# absent). SVG_RENDER_KEEP=DIR keeps the SVGs and PNGs there. Not part of .ci/run (Chromium is
# slow to start); run it by hand, see docs/EXPERIMENTS.md.
set -u
bin=$1
shared=$2
chromium=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$chromium" ] || { echo "skip: chromium absent (apt-get install -y chromium)"; exit 77; }
command -v python3 >/dev/null || { echo "skip: python3 absent"; exit 77; }
[ -f "$shared/data/mt_bench/judge_prompts.jsonl" ] || { echo "skip: mt_bench data absent"; exit 77; }
export ICALIGN_SHARED=$shared ICALIGN_NO_PROGRESS=1
tmp=$(mktemp -d)
srv=
cleanup() {
    [ -n "$srv" ] && kill "$srv" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

model=$tmp/tiny.gguf
"$bin" synth --preset tiny --type q8_0 -o "$model" 2>"$tmp/err" || { cat "$tmp/err"; fail "synth"; }
printf '# Instruction\n\nAnswer well.\n\n# Query:\n```\nHi?\n```\n\n# Answer:\n```\nHello.\n```\n' >"$tmp/base.txt"
cat >"$tmp/pool.jsonl" <<'EOF'
{"id": "p0", "query": "Two plus two?", "answer": "Four.", "source": "math"}
{"id": "p1", "query": "Capital of France?", "answer": "Paris.", "source": "geo"}
{"id": "p2", "query": "A colour?", "answer": "Blue.", "source": "misc"}
{"id": "p3", "query": "Say yes.", "answer": "Yes.", "source": "misc"}
EOF
cat >"$tmp/val.jsonl" <<'EOF'
{"question_id": 1, "turns": ["Name a fruit."]}
{"question_id": 2, "turns": ["Name a city."]}
{"question_id": 3, "turns": ["Name a dog."]}
EOF
cat >"$tmp/fake.py" <<'PY'
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        user = body["messages"][-1]["content"]
        a = user.split("[The Start of Assistant's Answer]\n", 1)[-1].split("\n[The End of Assistant's Answer]", 1)[0]
        ch = {"index": 0, "finish_reason": "stop",
              "message": {"role": "assistant", "content": "Rating: [[%d]]" % (1 + sum(a.encode()) % 9)}}
        out = json.dumps({"id": "x", "object": "chat.completion", "model": body["model"], "choices": [ch],
                          "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
open(sys.argv[1], "w").write(str(s.server_address[1]))
s.serve_forever()
PY
python3 "$tmp/fake.py" "$tmp/port" &
srv=$!
for _ in $(seq 1 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
[ -s "$tmp/port" ] || fail "fake judge did not start"
bo=(-m "$model" -c 1024 --max-tokens 4 --val "$tmp/val.jsonl"
    --judge-base-url "http://127.0.0.1:$(cat "$tmp/port")" --judge-name fake -q)
run=$tmp/run
"$bin" search "${bo[@]}" --base-demos "$tmp/base.txt" --pool "$tmp/pool.jsonl" --steps 2 \
    --always-take --out "$run" >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "search"; }
cp "$run/search.svg" "$tmp/search.svg"
"$bin" sweep "${bo[@]}" --base-demos "$tmp/base.txt" --pool "$tmp/pool.jsonl" \
    --family random,diversity --n 1,2,3 --out "$run" >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "sweep"; }
"$bin" ablate "${bo[@]}" --demos "$tmp/base.txt" --query-pool "$tmp/pool.jsonl" \
    --variants correct,no_answer,unsupervised --out "$run" >"$tmp/out" 2>&1 ||
    { cat "$tmp/out"; fail "ablate"; }
svgs=("$tmp/search.svg" "$run/sweep-random.svg" "$run/sweep-diversity.svg" "$run/ablate.svg")

cat >"$tmp/png.py" <<'PY'
# Decodes an 8-bit RGB/RGBA PNG (zlib + the five row filters) and checks what a rendered chart
# must show. Prints "W H white% blue dark".
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat, ihdr = 8, b"", None
while pos < len(data):
    n, typ = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if typ == b"IHDR":
        ihdr = struct.unpack(">IIBBBBB", body)
    elif typ == b"IDAT":
        idat += body
    pos += 12 + n
w, h, depth, ctype, _, _, interlace = ihdr
assert depth == 8 and ctype in (2, 6) and interlace == 0, ihdr
bpp = 3 if ctype == 2 else 4
raw, stride = zlib.decompress(idat), w * bpp
prev, rows, i = bytearray(stride), [], 0
for _ in range(h):
    f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
    i += 1 + stride
    for x in range(stride):
        a = line[x - bpp] if x >= bpp else 0
        b = prev[x]
        c = prev[x - bpp] if x >= bpp else 0
        if f == 1: line[x] = (line[x] + a) & 255
        elif f == 2: line[x] = (line[x] + b) & 255
        elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    rows.append(line)
    prev = line
white = blue = dark = 0
for line in rows:
    for x in range(0, stride, bpp):
        r, g, b = line[x], line[x + 1], line[x + 2]
        if r > 245 and g > 245 and b > 245: white += 1
        elif b > r + 40 and b > g + 25: blue += 1  # #4c72b0 and its lighter band / bar shades
        elif r < 90 and g < 90 and b < 90: dark += 1
print(w, h, round(100.0 * white / (w * h), 1), blue, dark)
PY
i=0
for f in "${svgs[@]}"; do
    [ -s "$f" ] || fail "$f missing"
    png=$tmp/shot$i.png
    i=$((i + 1))
    # the screenshot is written into the working directory's path given; --no-sandbox for root
    timeout 120 "$chromium" --headless --no-sandbox --disable-gpu --hide-scrollbars \
        --screenshot="$png" --window-size=900,600 "file://$f" >"$tmp/chr.log" 2>&1
    [ -s "$png" ] || { cat "$tmp/chr.log"; fail "chromium wrote no screenshot of $(basename "$f")"; }
    read -r w h white blue dark < <(python3 "$tmp/png.py" "$png") || fail "$png does not decode"
    echo "$(basename "$f"): ${w}x$h, ${white}% white, $blue blue, $dark dark pixels"
    [ "$w" -eq 900 ] && [ "$h" -eq 600 ] || fail "$(basename "$f"): screenshot is ${w}x$h"
    awk -v x="$white" 'BEGIN { exit !(x >= 50 && x < 99.5) }' || fail "$(basename "$f"): ${white}% white"
    [ "$blue" -ge 100 ] || fail "$(basename "$f"): no chart colour ($blue blue pixels)"
    [ "$dark" -ge 200 ] || fail "$(basename "$f"): no text or axes ($dark dark pixels)"
    if [ -n "${SVG_RENDER_KEEP:-}" ]; then
        mkdir -p "$SVG_RENDER_KEEP"
        cp "$f" "$png" "$SVG_RENDER_KEEP/"
        mv "$SVG_RENDER_KEEP/$(basename "$png")" "$SVG_RENDER_KEEP/$(basename "$f" .svg).png"
    fi
done
echo "svg_render.sh: all good"
