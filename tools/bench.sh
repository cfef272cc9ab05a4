#!/bin/sh
# make bench: prompt processing (ppP) and generation (tgN) tokens/s of
# icalign and llama.cpp side by side, same GGUF file, same threads, runs
# interleaved (icalign, llama.cpp, icalign, ...) so that load from other
# processes hits both alike. Prints a markdown table with mean +- sd and
# the ratio icalign / llama.cpp. Never a pass/fail test.
#
#   sh tools/bench.sh ICALIGN_BIN SHARED_DIR
# Environment:
#   BENCH_MODELS   GGUF files (default: tinyllama-1.1b q4_0 made by icalign synth
#                  under build/bench-models)
#   BENCH_THREADS  thread counts (default "1 2")
#   BENCH_REPS     repetitions (default 3)
#   BENCH_P, BENCH_N  prompt and generated tokens (default 512, 128)
#   LLAMA_BENCH    llama-bench binary (default: llama-bench in PATH, else
#                  /work/llama-build/bin/llama-bench); skipped if absent
#   ICALIGN_SIMD   passed through (scalar|avx2|avx512)
set -eu
bin=$1
P=${BENCH_P:-512}
N=${BENCH_N:-128}
reps=${BENCH_REPS:-3}
threads=${BENCH_THREADS:-"1 2"}
lb=${LLAMA_BENCH:-$(command -v llama-bench 2>/dev/null || echo /work/llama-build/bin/llama-bench)}
[ -x "$lb" ] || lb=""
models=${BENCH_MODELS:-}
if [ -z "$models" ]; then
    mkdir -p build/bench-models
    models=build/bench-models/tinyllama-1.1b-q4_0.gguf
    [ -f "$models" ] || "$bin" synth --preset tinyllama-1.1b --type q4_0 -o "$models" >&2
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

stat() {
    awk '{ s += $1; q += $1 * $1; n++ } END { if (n == 0) { print "-"; exit }
        m = s / n; v = q / n - m * m; if (v < 0) v = 0; printf "%.2f ± %.2f", m, sqrt(v) }' "$1"
}
mean() {
    awk '{ s += $1; n++ } END { if (n) printf "%.4f", s / n; else print 0 }' "$1"
}

echo "# $(uname -m), $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ //')," \
    "$(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "# icalign level: ${ICALIGN_SIMD:-best}; llama-bench: ${lb:-absent}"
echo "# icalign bench -p $P -n $N -r 1 -t T --kv-type f16; llama.cpp: llama-bench -p $P -n $N -r 1 -t T;" \
    "$reps interleaved runs each"
echo
echo "| model | threads | test | icalign t/s | llama.cpp t/s | ratio |"
echo "|---|---:|---|---:|---:|---:|"
for m in $models; do
    for t in $threads; do
        : >"$tmp/i_pp"
        : >"$tmp/i_tg"
        : >"$tmp/l_pp"
        : >"$tmp/l_tg"
        r=0
        while [ "$r" -lt "$reps" ]; do
            # pp: the prompt of P tokens; tg: N tokens after a 1-token prompt
            # (llama-bench's tg runs on an empty context too)
            # icalign bench: the same two tests as llama-bench (empty context, -r 1)
            "$bin" bench -m "$m" -p "$P" -n "$N" -r 1 -t "$t" --kv-type f16 2>/dev/null |
                awk -F'|' -v pp="$tmp/i_pp" -v tg="$tmp/i_tg" '$7 ~ /pp[0-9]/ || $7 ~ /tg[0-9]/ {
                    split($8, a, " "); if ($7 ~ /pp/) print a[1] >> pp; else print a[1] >> tg }'
            if [ -n "$lb" ]; then
                # csv: ..., n_prompt, n_gen, n_depth, test_time, avg_ns, stddev_ns, avg_ts, stddev_ts
                "$lb" -m "$m" -t "$t" -p "$P" -n "$N" -r 1 -o csv 2>/dev/null |
                    awk -F'","' -v pp="$tmp/l_pp" -v tg="$tmp/l_tg" 'NR > 1 {
                        n = NF; v = $(n - 1); gsub(/"/, "", v);
                        np = $(n - 7) + 0; ng = $(n - 6) + 0;
                        if (np > 0) print v >> pp; else if (ng > 0) print v >> tg }'
            fi
            r=$((r + 1))
        done
        for k in pp tg; do
            if [ "$k" = pp ]; then label=pp$P; else label=tg$N; fi
            ic=$(stat "$tmp/i_$k")
            ll=$(stat "$tmp/l_$k")
            ratio=$(awk -v a="$(mean "$tmp/i_$k")" -v b="$(mean "$tmp/l_$k")" \
                'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
            echo "| $(basename "$m") | $t | $label | $ic | $ll | $ratio |"
        done
    done
done
