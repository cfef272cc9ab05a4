#!/usr/bin/env bash
# icalign bench (llama-bench-like speed table): both tests reported, JSON
# well-formed with one object per test, bad arguments rejected with exit 2.
set -u
bin=$1
shared=$2
model=$shared/fixtures/stories260K/stories260K.gguf
[ -f "$model" ] || { echo "skip: $model not found (../shared absent)"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$bin" bench -m "$model" -p 16 -n 8 -r 2 -t 1 >"$tmp/out" 2>"$tmp/err" || fail "bench: $(cat "$tmp/err")"
grep -q '^| model | size | params | backend | threads | test | t/s |$' "$tmp/out" || fail "header"
grep -Eq '^\| llama F32 \| [0-9.]+ MiB \| [0-9.]+ K \| CPU \| 1 \| pp16 \| [0-9.]+ ± [0-9.]+ \|$' "$tmp/out" ||
    fail "pp16 row: $(cat "$tmp/out")"
grep -Eq '\| tg8 \| [0-9.]+ ± [0-9.]+ \|$' "$tmp/out" || fail "tg8 row"

"$bin" bench -m "$model" -p 8 -n 4 -r 3 -t 1 --json >"$tmp/json" 2>"$tmp/err" || fail "json run"
[ "$(grep -c '"avg_ts"' "$tmp/json")" = 2 ] || fail "two JSON objects expected: $(cat "$tmp/json")"
grep -q '"n_prompt": 8, "n_gen": 0' "$tmp/json" || fail "pp object"
grep -q '"n_prompt": 0, "n_gen": 4' "$tmp/json" || fail "tg object"
[ "$(grep -o '"samples_ts": \[[^]]*\]' "$tmp/json" | head -1 | tr -cd ',' | wc -c)" = 2 ] ||
    fail "3 samples expected"
if command -v python3 >/dev/null; then
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert len(d)==2 and all(x["avg_ts"]>0 for x in d)' \
        "$tmp/json" || fail "JSON does not parse"
fi

"$bin" bench -m "$model" -p 0 -n 0 >/dev/null 2>"$tmp/err"; [ $? = 2 ] || fail "-p 0 -n 0 accepted"
"$bin" bench -m "$model" -r 0 >/dev/null 2>&1; [ $? = 2 ] || fail "-r 0 accepted"
"$bin" bench -p 8 >/dev/null 2>"$tmp/err"; [ $? = 2 ] || fail "missing -m not exit 2"
"$bin" bench --help | grep -q -- '--n-prompt' || fail "help"
# synth's K_M mix (llama.cpp's use_more_bits: with 2 layers only layer 1, the last eighth)
"$bin" synth --preset tiny --type q4_k_m -o "$tmp/km.gguf" 2>"$tmp/err" || fail "synth q4_k_m: $(cat "$tmp/err")"
"$bin" info -m "$tmp/km.gguf" --tensors >"$tmp/info" || fail "info"
grep -Eq 'blk\.1\.attn_v\.weight +Q6_K' "$tmp/info" || fail "attn_v not Q6_K: $(grep attn_v "$tmp/info")"
grep -Eq 'blk\.0\.attn_v\.weight +Q4_K' "$tmp/info" || fail "layer 0 attn_v not Q4_K"
grep -Eq 'blk\.1\.ffn_down\.weight +Q6_K' "$tmp/info" || fail "ffn_down not Q6_K"
grep -Eq 'blk\.0\.attn_q\.weight +Q4_K' "$tmp/info" || fail "attn_q not Q4_K"
"$bin" bench -m "$tmp/km.gguf" -p 8 -n 4 -r 1 -t 1 | grep -q '| llama Q4_K |' || fail "bench on the mix"
echo "bench: ok"
