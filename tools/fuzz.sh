#!/bin/sh
# Runs every built fuzz target for a few seconds over a seed corpus made from
# the fixtures. Usage: fuzz.sh BUILD_DIR SHARED_DIR SECONDS
set -eu
bdir=$1; shared=$2; secs=$3
for f in "$bdir"/fuzz_*; do
  [ -x "$f" ] || continue
  name=$(basename "$f")
  corpus="$bdir/corpus-$name"
  mkdir -p "$corpus"
  case "$name" in
    fuzz_tok*)
      export ICALIGN_SHARED="$shared"
      [ -d "$shared/fixtures" ] && for g in "$shared"/fixtures/tokenizer/*.tokens.jsonl \
          "$shared"/data/urial/tml-epfl_icl-alignment/urial_prompts/urial.txt; do
        [ -f "$g" ] && head -c 4096 "$g" > "$corpus/$(basename "$g")" ; done ;;
    fuzz_gguf*)
      [ -d "$shared/fixtures" ] && for g in "$shared"/fixtures/random/rand-llama-q4_0.gguf \
          "$shared"/fixtures/stories260K/stories260K.gguf; do
        [ -f "$g" ] && cp "$g" "$corpus/" ; done ;;
  esac
  echo "fuzz: $name for ${secs}s"
  "$f" -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=0 "$corpus" >"$bdir/$name.log" 2>&1 ||
    { tail -50 "$bdir/$name.log"; echo "fuzz: $name FAILED"; exit 1; }
  grep -E '^(#[0-9]+.*DONE|Done)' "$bdir/$name.log" | tail -1 || true
done
