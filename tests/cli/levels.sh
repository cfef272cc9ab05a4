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
for m in random/rand-llama-q4_0.gguf random/rand-llama-q4_k_m.gguf random/rand-llama-q8_0.gguf \
    random/rand-llama-f16.gguf random/rand-qwen2-f32.gguf stories260K/stories260K.gguf; do
    [ -f "$fx/$m" ] || continue
    "$bin" logits -m "$fx/$m" --ids "$ids" -o "$tmp/best" -t 2 2>"$tmp/err" || fail "$m: $(cat "$tmp/err")"
    for lv in avx2 scalar; do
        ICALIGN_SIMD=$lv "$bin" logits -m "$fx/$m" --ids "$ids" -o "$tmp/$lv" -t 2 2>/dev/null ||
            fail "$m at $lv"
        cmp -s "$tmp/best" "$tmp/$lv" || fail "$m: logits at $lv differ from the best level"
    done
    # decoding one token at a time (the single-token paths) agrees too
    "$bin" logits -m "$fx/$m" --ids "$ids" -o "$tmp/one" -t 2 --batch 1 2>/dev/null || fail "$m --batch 1"
    ICALIGN_SIMD=scalar "$bin" logits -m "$fx/$m" --ids "$ids" -o "$tmp/one_s" -t 2 --batch 1 2>/dev/null ||
        fail "$m --batch 1 scalar"
    cmp -s "$tmp/one" "$tmp/one_s" || fail "$m: one-token logits differ between levels"
    n=$((n + 1))
done
[ "$n" -gt 0 ] || { echo "skip: no fixture model"; exit 77; }
echo "levels: $n models identical at every level"
