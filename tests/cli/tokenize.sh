#!/bin/bash
# icalign tokenize / detokenize end to end. Usage: tokenize.sh ICALIGN SHARED_DIR
set -eu
bin=$1; shared=$2
v=$shared/fixtures/tokenizer
[ -f "$v/ggml-vocab-llama3.gguf" ] || { echo "skip: no shared fixtures"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
out=$("$bin" tokenize -m "$v/ggml-vocab-llama3.gguf" --special --json 'Hello world<|eot_id|>')
[ "$out" = "[128000,9906,1917,128009]" ] || fail "llama3 special: $out"
out=$("$bin" tokenize -m "$v/ggml-vocab-llama3.gguf" --no-bos --json 'Hello world')
[ "$out" = "[9906,1917]" ] || fail "llama3 --no-bos: $out"
# batch mode: every fixture line, in order, gives the expected ids
for f in "$v"/*.tokens.jsonl; do
  g=${f%.tokens.jsonl}.gguf
  want=$(python3 -c 'import json,sys
for l in open(sys.argv[1]): print(json.dumps(json.loads(l)["ids"],separators=(",",":")))' "$f" 2>/dev/null) ||
    want=$(sed -e 's/.*"ids":\(\[[^]]*\]\).*/\1/' "$f")
  got=$("$bin" tokenize -m "$g" --batch "$f")
  [ "$got" = "$want" ] || fail "batch $f"
done
printf 'Hi there' > "${TMPDIR:-/tmp}/icalign_tok_$$.txt"
out=$("$bin" tokenize -m "$v/ggml-vocab-gpt-2.gguf" --json --file "${TMPDIR:-/tmp}/icalign_tok_$$.txt")
rm -f "${TMPDIR:-/tmp}/icalign_tok_$$.txt"
[ "$out" = "[17250,612]" ] || fail "gpt-2 --file: $out"
out=$("$bin" detokenize -m "$v/ggml-vocab-llama-spm.gguf" --ids 15043,3186 --keep-bos)
[ "$out" = "Hello world" ] || fail "detokenize: '$out'"
"$bin" tokenize --help >/dev/null || fail "tokenize --help"
"$bin" detokenize --help >/dev/null || fail "detokenize --help"
if "$bin" detokenize -m "$v/ggml-vocab-llama-spm.gguf" --ids 99999999 2>/dev/null; then
  fail "out-of-range id accepted"
fi
echo "tokenize CLI: ok"
