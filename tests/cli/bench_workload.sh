#!/usr/bin/env bash
# icalign bench --workload urial (issue 5's benchmark): counts add up, the
# prefix cache computes fewer prompt tokens than --no-cache for the same
# generated tokens, the decode-only passes hold every sequence at once, JSON
# parses, --dump-prompts writes the requests, bad arguments exit 2.
set -u
bin=$1
shared=$2
model=$shared/fixtures/stories260K/stories260K.gguf
[ -f "$model" ] || { echo "skip: $model not found (../shared absent)"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for i in 1 2 3 4; do
    echo "{\"question_id\": $i, \"category\": \"x\", \"turns\": [\"Tell me a story number $i.\", \"More.\"]}"
done >"$tmp/q.jsonl"
run() { "$bin" bench --workload urial -m "$model" --demos header-only --questions "$tmp/q.jsonl" \
    --limit 4 -n 5 -t 1 --json "$@"; }
get() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

run --batch-seqs 4 >"$tmp/c.json" 2>"$tmp/err" || fail "cache run: $(cat "$tmp/err")"
run --batch-seqs 4 --no-cache >"$tmp/n.json" 2>"$tmp/err" || fail "no-cache run: $(cat "$tmp/err")"
run --batch-seqs 1 >"$tmp/one.json" 2>"$tmp/err" || fail "one at a time: $(cat "$tmp/err")"
for f in c n one; do
    [ "$(get "$tmp/$f.json" questions)" = 4 ] || fail "$f: questions"
    [ "$(get "$tmp/$f.json" generated)" = 20 ] || fail "$f: 4 x 5 tokens expected"
done
pc=$(get "$tmp/c.json" prefill_computed)
pn=$(get "$tmp/n.json" prefill_computed)
pt=$(get "$tmp/n.json" prompt_tokens)
[ "$pn" = "$pt" ] || fail "--no-cache must compute every prompt token ($pn of $pt)"
[ "$pc" -lt "$pn" ] || fail "the cache computed $pc prompt tokens, --no-cache $pn"
[ "$(get "$tmp/c.json" prompt_tokens)" = "$pt" ] || fail "same prompts either way"
# one at a time: every decode pass holds one sequence; batched: more than one on average
python3 - "$tmp/one.json" "$tmp/c.json" <<'PY' || fail "decode-only passes"
import json, sys
one, four = (json.load(open(p)) for p in sys.argv[1:])
assert one["decode_steps"] == one["decode_step_tokens"] == 16, one   # 4 x (5 - 1)
assert four["decode_step_tokens"] > four["decode_steps"], four
assert four["decode_step_tok_s"] > 0 and one["decode_step_tok_s"] > 0
PY
"$bin" bench --workload urial -m "$model" --demos header-only --questions "$tmp/q.jsonl" --limit 2 \
    -n 3 -t 1 >"$tmp/table" 2>&1 || fail "table run"
grep -q '^decode-only: ' "$tmp/table" || fail "table: $(cat "$tmp/table")"
grep -q '^prompt tokens: ' "$tmp/table" || fail "table prompt line"

"$bin" bench --workload urial -m "$model" --demos header-only --questions "$tmp/q.jsonl" \
    --limit 3 --dump-prompts "$tmp/d.jsonl" >/dev/null 2>&1 || fail "dump"
[ "$(wc -l <"$tmp/d.jsonl")" = 3 ] || fail "3 dumped requests"
python3 -c 'import json,sys; [json.loads(l)["tokens"] for l in open(sys.argv[1])]' "$tmp/d.jsonl" ||
    fail "dump is not JSON lines"

"$bin" bench --workload nope -m "$model" >/dev/null 2>&1; [ $? = 2 ] || fail "unknown workload"
"$bin" bench --workload urial -m "$model" --batch-seqs 0 >/dev/null 2>&1; [ $? = 2 ] || fail "--batch-seqs 0"
"$bin" bench --workload urial --help | grep -q -- '--no-cache' || fail "help"
echo "bench_workload: ok"
