#!/bin/bash
# icalign chat driven through a pipe: two turns, /save, /reset, a third turn; the rendered
# prompt of turn 2 equals URIAL's two-turn rendering (icalign prompt --conversation) with the
# model's own cleaned turn-1 answer, and after /reset the prompt is a single-turn one again.
set -u
bin=$1
shared=$2
model=$shared/fixtures/stories260K/stories260K.gguf
[ -f "$model" ] || { echo "skip: $model absent"; exit 77; }
command -v python3 >/dev/null || { echo "skip: python3 absent"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
demos=none
# a demonstration file small enough for the fixture's vocabulary-heavy tokenization
printf '# Instruction\n\nBe nice.\n' >"$tmp/rules.txt"
demos="header-only:$tmp/rules.txt"
"$bin" prompt --demos "$demos" --query x >/dev/null 2>"$tmp/err" || demos=none

printf 'Hello there\nTell me more\n/save %s\n/params\n/bogus\n/reset\nOnce upon a time\n/quit\nnot read\n' \
    "$tmp/conv.json" |
    "$bin" chat -m "$model" -c 1024 --demos "$demos" --max-tokens 12 --show-prompt \
        >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err"; fail "chat exited with an error"; }
grep -q "unknown command '/bogus'" "$tmp/err" || fail "unknown command not reported"
grep -q "conversation cleared" "$tmp/err" || fail "/reset not acknowledged"
grep -q "preset urial: temperature 0" "$tmp/out" || fail "/params output"
python3 - "$tmp/err" "$tmp/conv.json" "$tmp" <<'PY' || fail "prompt split"
import json, re, sys
data = open(sys.argv[1], "rb").read()
prompts, pos = [], 0
while True:
    m = re.compile(rb"=== prompt (\d+) \((\d+) bytes\) ===\n").search(data, pos)
    if not m:
        break
    n = int(m.group(2))
    prompts.append(data[m.end():m.end() + n])
    pos = m.end() + n
assert len(prompts) == 3, len(prompts)
for i, p in enumerate(prompts):
    open(f"{sys.argv[3]}/p{i + 1}.txt", "wb").write(p)
conv = json.load(open(sys.argv[2]))
msgs = [m["content"] for m in conv["messages"]]
assert len(msgs) == 4 and msgs[0] == "Hello there" and msgs[2] == "Tell me more", msgs
json.dump(msgs[:3], open(f"{sys.argv[3]}/c2.json", "w"))
PY
"$bin" prompt --demos "$demos" --query "Hello there" >"$tmp/r1.txt" || fail "prompt 1"
"$bin" prompt --demos "$demos" --conversation "$tmp/c2.json" >"$tmp/r2.txt" || fail "prompt 2"
"$bin" prompt --demos "$demos" --query "Once upon a time" >"$tmp/r3.txt" || fail "prompt 3"
cmp "$tmp/p1.txt" "$tmp/r1.txt" || fail "turn 1 prompt differs from the URIAL rendering"
cmp "$tmp/p2.txt" "$tmp/r2.txt" || fail "turn 2 prompt differs from the URIAL two-turn rendering"
cmp "$tmp/p3.txt" "$tmp/r3.txt" || fail "after /reset the prompt must be single-turn"
[ "$(grep -c . "$tmp/out")" -ge 1 ] || fail "no answers printed"
echo "chat: all checks passed"
