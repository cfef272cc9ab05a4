#!/usr/bin/env bash
# End-to-end: icalign info / logits / generate on the fixtures, and clear
# errors on bad input. Usage: model.sh ICALIGN SHARED_DIR
set -u
bin=$1; shared=$2
fx=$shared/fixtures
[ -d "$fx" ] || { echo "SKIP: $fx not found"; exit 77; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fails=0
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fails=$((fails+1)); }

"$bin" --help | grep -q "generate" && ok "--help lists commands" || bad "--help"
for c in info logits generate; do
  "$bin" $c --help | grep -q "usage: icalign $c" && ok "$c --help" || bad "$c --help"
done

st=$fx/stories260K/stories260K.gguf
out=$("$bin" info -m "$st") && echo "$out" | grep -q "architecture:  llama" &&
  echo "$out" | grep -q "n_embd 64, layers 5, heads 8 (kv 4)" && ok "info" || bad "info: $out"

# logits of the P1 prompt equal the reference file within 1e-3
ids=$(python3 -c "import json;print(','.join(map(str,json.load(open('$fx/stories260K/stories260K.p1.json'))['prompt_ids'])))")
"$bin" logits -m "$st" --kv-type f32 --ids "$ids" -o "$tmp/l.f32" 2>/dev/null && python3 - "$tmp/l.f32" "$fx/stories260K/stories260K.p1.logits.f32" <<'PY' && ok "logits --ids" || bad "logits --ids"
import sys, array
a = array.array('f'); a.frombytes(open(sys.argv[1], 'rb').read())
b = array.array('f'); b.frombytes(open(sys.argv[2], 'rb').read())
assert len(a) == len(b), (len(a), len(b))
m = max(abs(x - y) for x, y in zip(a, b))
print("max abs diff", m)
sys.exit(0 if m <= 1e-3 else 1)
PY

# -p tokenizes like llama.cpp: same logits as the reference prompt
prompt=$(python3 -c "import json;print(json.load(open('$fx/stories260K/stories260K.p1.json'))['prompt'])")
"$bin" logits -m "$st" --kv-type f32 -p "$prompt" -o "$tmp/p.f32" 2>/dev/null && cmp -s "$tmp/p.f32" "$tmp/l.f32" &&
  ok "logits -p equals --ids" || bad "logits -p"

# greedy continuation of "Once upon a time" equals llama.cpp's 64 tokens
want=$(python3 -c "import json;print(','.join(map(str,json.load(open('$fx/stories260K/stories260K.once.json'))['greedy_ids'])))")
got=$("$bin" generate -m "$st" --kv-type f32 -p "Once upon a time" -n 64 --ignore-eos --print-ids -q | sed -n 's/^ids: //p')
[ "$got" = "$want" ] && ok "generate greedy ids" || bad "generate: got $got want $want"

# stop strings cut the text before the match
txt=$("$bin" generate -m "$st" -p "Once upon a time" -n 64 --stop "Lily" -q)
case "$txt" in *Lily*) bad "stop string kept: $txt" ;; *) ok "stop string" ;; esac

# errors: clear message, non-zero exit, no crash
"$bin" info -m "$tmp/none.gguf" 2>"$tmp/e" && bad "missing file accepted" ||
  { grep -q "none.gguf" "$tmp/e" && ok "missing file named"; } || bad "missing file message"
head -c 3000 "$st" > "$tmp/trunc.gguf"
"$bin" info -m "$tmp/trunc.gguf" 2>"$tmp/e"; rc=$?
[ $rc -ne 0 ] && [ $rc -lt 128 ] && [ -s "$tmp/e" ] && ok "truncated file: exit $rc, $(head -c 120 "$tmp/e")" || bad "truncated file rc=$rc"
"$bin" logits -m "$st" --ids 1,99999 -o "$tmp/x" 2>"$tmp/e"; rc=$?
[ $rc -eq 1 ] && grep -q "99999" "$tmp/e" && ok "token id out of range" || bad "token out of range rc=$rc"
"$bin" generate -m "$st" -p x --temp abc 2>"$tmp/e"; rc=$?
[ $rc -eq 2 ] && grep -q -- "--temp" "$tmp/e" && ok "bad option value" || bad "bad option rc=$rc"

echo "$((fails == 0 ? 1 : 0)) passed, $fails failed" >/dev/null
[ $fails -eq 0 ]
