#!/bin/bash
# End-to-end checks of `icalign prompt` and `icalign demos` against the published URIAL data.
# Usage: align.sh ICALIGN_BINARY SHARED_DIR   (exit 77 = skipped: shared data absent)
set -u
bin=$1
shared=$2
u=$shared/data/urial
icl=$u/tml-epfl_icl-alignment/urial_prompts
[ -f "$icl/urial.txt" ] || { echo "SKIP: $icl not found"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: python3 needed to read question.jsonl"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fail=1; }

# MT-Bench q81 turns and the illustrative cleaned turn-1 answer, as a conversation file.
python3 - "$u" "$tmp" <<'PY'
import json, sys
u, tmp = sys.argv[1], sys.argv[2]
for line in open(u + "/Re-Align_URIAL/run_scripts/mt-bench/question.jsonl", encoding="utf-8"):
    o = json.loads(line)
    if o["question_id"] == 81:
        t = o["turns"]
a = json.load(open(u + "/derived/rendered/mtbench81_turn1_illustrative_answer.json"))
open(tmp + "/q1.txt", "w", encoding="utf-8").write(t[0])
json.dump([t[0], a["cleaned_turn1_output"], t[1]], open(tmp + "/conv.json", "w"))
json.dump([{"role": "user", "content": t[0]}, {"role": "assistant", "content": ""},
           {"role": "user", "content": t[1]}], open(tmp + "/conv_empty.json", "w"))
PY

# 1. prompt output equals the rendered test vectors (turn 1 and turn 2)
"$bin" prompt --demos "$icl/urial.txt" --query "$(cat "$tmp/q1.txt")" >"$tmp/t1" &&
    cmp -s "$tmp/t1" "$u/derived/rendered/mtbench81_turn1.urial.txt" &&
    ok "prompt turn 1 = mtbench81_turn1.urial.txt" || bad "prompt turn 1"
"$bin" prompt --demos "$icl/urial.plus.best_4.examples.txt" --conversation "$tmp/conv.json" \
    >"$tmp/t2" && cmp -s "$tmp/t2" "$u/derived/rendered/mtbench81_turn2.urial.plus.best_4.txt" &&
    ok "prompt turn 2 = mtbench81_turn2.urial.plus.best_4.txt" || bad "prompt turn 2"
if command -v sha256sum >/dev/null; then
    want=$(grep ' mtbench81_turn2.urial.plus.best_4.txt$' "$u/derived/rendered/SHA256SUMS" | cut -d' ' -f1)
    got=$(sha256sum <"$tmp/t2" | cut -d' ' -f1)
    [ "$want" = "$got" ] && ok "sha256 of turn 2" || bad "sha256 of turn 2"
fi
# prefix + suffix = the whole prompt
"$bin" prompt --demos "$icl/urial.txt" --conversation "$tmp/conv.json" --part prefix >"$tmp/p"
"$bin" prompt --demos "$icl/urial.txt" --conversation "$tmp/conv.json" --part suffix >"$tmp/s"
cat "$tmp/p" "$tmp/s" | cmp -s - "$u/derived/rendered/mtbench81_turn2.urial.txt" &&
    cmp -s "$tmp/p" "$icl/urial.txt" && ok "prefix + suffix" || bad "prefix + suffix"
# empty turn-1 answer: no body, no closing fence (the reference's falsy message)
"$bin" prompt --demos none --conversation "$tmp/conv_empty.json" 2>/dev/null | grep -c '^```$' |
    grep -qx 6 && ok "empty answer quirk" || bad "empty answer quirk"

# 2. demos transform reproduces the published ablation files
u3="$icl/urial.plus.best_4&5&6.examples.txt"
qa=$icl/qa_matching
check() { # name, expected file, transform args...
    local name=$1 want=$2
    shift 2
    "$bin" demos transform "$@" >"$tmp/out" && cmp -s "$tmp/out" "$want" && ok "$name" || bad "$name"
}
check "circular_shift urial" "$qa/urial/urial.circular_shift.txt" --variant circular_shift "$icl/urial.txt"
check "circular_shift urial_plus_3" "$qa/urial_plus_3/urial_plus_3.circular_shift.txt" \
    --variant circular_shift --shift -1 "$u3"
check "no_answer urial_plus_3" "$qa/urial_plus_3/urial_plus_3.no_answer.txt" --variant no_answer "$u3"
check "random_answer ood" "$qa/urial/urial.ood.random_answer.txt" --variant random_answer \
    --answers "$qa/urial/urial.ood.random_answer.txt" "$icl/urial.txt"
check "unsupervised 5" "$icl/unsupervised/urial.unsupervised.5.examples.txt" --variant unsupervised \
    --queries "$icl/diversity/openhermes-5.examples.txt" "$icl/urial.txt"

# 3. demos write round-trips and show lists the demos
"$bin" demos write "$icl/greedy/urial.greedy.50.examples.txt" | cmp -s - "$icl/greedy/urial.greedy.50.examples.txt" &&
    ok "write round trip" || bad "write round trip"
"$bin" demos show default | grep -q '^demos: *3$' && ok "show default" || bad "show default"
# token count of the rendered URIAL prefix equals llama.cpp's (ids recorded in tests/data)
spm=$shared/fixtures/tokenizer/ggml-vocab-llama-spm.gguf
want=$(wc -w <"$(dirname "$0")/../data/urial.llama-spm.ids")
"$bin" demos show "$icl/urial.txt" -m "$spm" | grep -q "^prefix: .* $want tokens" &&
    ok "prefix token count ($want)" || bad "prefix token count"

# 4. errors are clear and non-zero
printf '# Rules\n\n# Query:\n```\nunterminated\n' >"$tmp/bad.txt"
"$bin" prompt --demos "$tmp/bad.txt" --query x >/dev/null 2>"$tmp/err"
[ $? -ne 0 ] && grep -q "bad.txt:3: unterminated" "$tmp/err" && ok "malformed file" || bad "malformed file"
printf '{"query": "a"}\n{"query": \n' >"$tmp/pool.jsonl"
"$bin" demos show "pool:$tmp/pool.jsonl" >/dev/null 2>"$tmp/err"
[ $? -ne 0 ] && grep -q "pool.jsonl:2: invalid JSON" "$tmp/err" && ok "malformed jsonl" || bad "malformed jsonl"
"$bin" demos transform --variant shuffle "$icl/urial.txt" >/dev/null 2>"$tmp/err"
[ $? -ne 0 ] && grep -q "valid: correct" "$tmp/err" && ok "unknown variant" || bad "unknown variant"
exit $fail
