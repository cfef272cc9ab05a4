#!/usr/bin/env bash
# Every kernel level gives the same logits bit for bit (the SIMD kernels,
# repacked weights, vectorised softmax/swiglu and the in-place attention
# all keep the reference's operations): icalign logits at the best level,
# ICALIGN_SIMD=avx2 and ICALIGN_SIMD=scalar, compared with cmp.
set -u
bin=$1
shared=$2
fx=$shared/fixtures
[ -d "$fx/random" ] || { echo "skip: $fx not found (../shared absent)"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ids=$(seq -s, 1 40)
n=0
# check MODEL [logits options]: logits at every level, a prompt and one token at a time
check() {
    local m=$1 name
    shift
    name="$(basename "$m") $*"
    "$bin" logits -m "$m" "$@" --ids "$ids" -o "$tmp/best" -t 2 2>"$tmp/err" || fail "$name: $(cat "$tmp/err")"
    for lv in avx2 scalar; do
        ICALIGN_SIMD=$lv "$bin" logits -m "$m" "$@" --ids "$ids" -o "$tmp/$lv" -t 2 2>/dev/null ||
            fail "$name at $lv"
        cmp -s "$tmp/best" "$tmp/$lv" || fail "$name: logits at $lv differ from the best level"
    done
    # decoding one token at a time (the single-token paths) agrees too
    "$bin" logits -m "$m" "$@" --ids "$ids" -o "$tmp/one" -t 2 --batch 1 2>/dev/null || fail "$name --batch 1"
    ICALIGN_SIMD=scalar "$bin" logits -m "$m" "$@" --ids "$ids" -o "$tmp/one_s" -t 2 --batch 1 2>/dev/null ||
        fail "$name --batch 1 scalar"
    cmp -s "$tmp/one" "$tmp/one_s" || fail "$name: one-token logits differ between levels"
    n=$((n + 1))
}
for m in random/rand-llama-q4_0.gguf random/rand-llama-q4_k_m.gguf random/rand-llama-q8_0.gguf \
    random/rand-llama-f16.gguf random/rand-qwen2-f32.gguf stories260K/stories260K.gguf; do
    [ -f "$fx/$m" ] && check "$fx/$m"
done
[ "$n" -gt 0 ] || { echo "skip: no fixture model"; exit 77; }
# head_dim 64 (the fixtures have 8 and 32): the 16-key attention kernels, F32 and F16 caches
for t in f32 q4_0; do
    "$bin" synth --preset tiny-hd64 --type $t -o "$tmp/hd64-$t.gguf" 2>/dev/null || fail "synth tiny-hd64 $t"
    for kv in f32 f16; do
        check "$tmp/hd64-$t.gguf" --kv-type $kv
    done
done
echo "levels: $n model and cache settings identical at every level"
