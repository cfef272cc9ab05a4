#!/bin/bash
# Tokenizer throughput, icalign vs llama.cpp's llama-tokenize (docs/PERFORMANCE.md).
# usage: tools/bench_tok.sh ICALIGN LLAMA_TOKENIZE SHARED_DIR
# Run in a directory holding mixed.txt (1 MiB, see docs/PERFORMANCE.md) and tiny.txt ("a").
# Tokenize time = best-of-5 wall time on mixed.txt minus best-of-5 on tiny.txt (vocab load).
I=$1; L=$2; V=$3/fixtures
best() { # best of 3 wall seconds of "$@"
  local b=999
  for r in 1 2 3 4 5; do
    local s=$(date +%s.%N); "$@" > /dev/null 2>&1; local e=$(date +%s.%N)
    b=$(echo "$b $s $e" | awk '{t=$3-$2; print (t<$1)?t:$1}')
  done; echo $b; }
for v in tokenizer/ggml-vocab-llama-spm tokenizer/ggml-vocab-llama3 tokenizer/ggml-vocab-qwen2 tokenizer/ggml-vocab-gpt-2 stories260K/stories260K; do
  g=$V/$v.gguf
  n=$($I tokenize -m $g --file mixed.txt --json | tr ',' '\n' | wc -l)
  nl=$($L -m $g -f mixed.txt --ids --no-escape --no-parse-special --log-disable 2>/dev/null | tail -1 | tr ',' '\n' | wc -l)
  same=$(cmp -s <($I tokenize -m $g --file mixed.txt --json) <($L -m $g -f mixed.txt --ids --no-escape --no-parse-special --log-disable 2>/dev/null | tail -1 | tr -d ' ' ) && echo same || echo DIFF)
  ib=$(best $I tokenize -m $g --file mixed.txt --json); it=$(best $I tokenize -m $g --file tiny.txt --json)
  lb=$(best $L -m $g -f mixed.txt --ids --no-escape --no-parse-special --log-disable); lt=$(best $L -m $g -f tiny.txt --ids --no-escape --no-parse-special --log-disable)
  echo "$v tokens=$n llama_tokens=$nl ids:$same icalign total=$ib load=$it llama total=$lb load=$lt" | awk '{print}'
  awk -v n=$n -v ib=$ib -v it=$it -v lb=$lb -v lt=$lt -v v=$v 'BEGIN{ti=ib-it; tl=lb-lt; printf "  %s: icalign %.3f s (%.0f tok/s)  llama.cpp %.3f s (%.0f tok/s)  speedup %.2fx; load %.3f vs %.3f s\n", v, ti, n/ti, tl, n/tl, tl/ti, it, lt}'
done
