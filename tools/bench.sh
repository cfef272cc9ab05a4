#!/bin/sh
# make bench: prompt and generation speed of icalign on a synthetic or given
# model. Side-by-side numbers with llama.cpp live in docs/PERFORMANCE.md.
set -eu
bin=$1; shared=$2
model=${BENCH_MODEL:-$shared/fixtures/random/rand-llama-q4_0.gguf}
[ -f "$model" ] || { echo "bench: set BENCH_MODEL=path.gguf" >&2; exit 2; }
ids=$(seq -s, 1 256)
echo "bench: $model"
"$bin" generate -m "$model" --ids "$ids" -n 128 --ignore-eos >/dev/null
