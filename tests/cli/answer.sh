#!/bin/bash
# icalign answer end to end on the stories260K fixture (context 128 tokens, so -c 1024 and
# --demos none --max-tokens 16): FastChat / alpaca_eval files, resume, --force, configuration
# change = new run, SIGKILL mid-run then rerun (no completed generation lost or recomputed),
# and the input errors (malformed JSONL line, unknown preset, context overflow).
set -u
bin=$1
shared=$2
model=$shared/fixtures/stories260K/stories260K.gguf
[ -f "$model" ] || { echo "skip: $model absent"; exit 77; }
[ -f "$shared/data/mt_bench/question.jsonl" ] || { echo "skip: mt_bench data absent"; exit 77; }
command -v python3 >/dev/null || { echo "skip: python3 absent"; exit 77; }
export ICALIGN_SHARED=$shared
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
common=(-m "$model" -c 1024 --demos none --max-tokens 16)

# --- input errors: nothing is stored or written
"$bin" answer --bench mt-bench "${common[@]}" --preset nope --out "$tmp/e" 2>"$tmp/err" && fail "unknown preset accepted"
grep -q "nope" "$tmp/err" && grep -q "urial" "$tmp/err" || { cat "$tmp/err"; fail "unknown preset message"; }
printf '{"id": 1, "turns": ["Hi"]}\n{"id": 2, "turns": ["x"\n' >"$tmp/bad.jsonl"
"$bin" answer --bench "$tmp/bad.jsonl" "${common[@]}" --out "$tmp/e" 2>"$tmp/err" && fail "bad JSONL accepted"
grep -q "bad.jsonl:2:" "$tmp/err" || { cat "$tmp/err"; fail "bad JSONL message must name line 2"; }
printf '{"id": 1, "turns": ["Hi"]}\n{"id": 2, "turns": [3]}\n' >"$tmp/bad2.jsonl"
"$bin" answer --bench "$tmp/bad2.jsonl" "${common[@]}" --out "$tmp/e" 2>"$tmp/err" && fail "bad turns accepted"
grep -q "bad2.jsonl:2: turns\[0\]" "$tmp/err" || { cat "$tmp/err"; fail "bad turns message"; }
# context overflow: the training context (128) cannot hold a question + 16 new tokens
"$bin" answer --bench mt-bench -m "$model" --demos none --max-tokens 16 --limit 1 --out "$tmp/ov" 2>"$tmp/err" && fail "overflow accepted"
grep -Eq "prompt of [0-9]+ tokens \+ 16 new tokens exceeds the context of 128 tokens" "$tmp/err" || { cat "$tmp/err"; fail "overflow message"; }
# --truncate-output caps instead (question 81 has 119 tokens: 9 tokens left)
"$bin" answer --bench mt-bench -m "$model" --demos none --max-tokens 16 --limit 1 --truncate-output \
    --bench-dir "$tmp/q" --out "$tmp/ov" 2>"$tmp/err" && fail "missing bench dir accepted"
head -1 "$shared/data/mt_bench/question.jsonl" | python3 -c '
import json,sys; q=json.loads(sys.stdin.read()); q["turns"]=q["turns"][:1]; print(json.dumps(q))' >"$tmp/one.jsonl"
"$bin" answer --bench "$tmp/one.jsonl" -m "$model" --demos none --max-tokens 16 --truncate-output \
    --out "$tmp/ov" 2>"$tmp/err" || { cat "$tmp/err"; fail "--truncate-output"; }
grep -q "warning: item 81 turn 1: prompt of 119 tokens leaves 9 of 16 new tokens" "$tmp/err" || { cat "$tmp/err"; fail "truncate warning"; }

db() { python3 - "$@" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
print("\n".join("|".join(str(x) for x in r) for r in c.execute(sys.argv[2])))
PY
}

# --- SIGKILL after 3 committed generations (test hook), then resume
run=$tmp/run
ICALIGN_TEST_KILL_AFTER=3 "$bin" answer --bench mt-bench "${common[@]}" --limit 5 --out "$run" -q 2>"$tmp/err"
rc=$?
[ $rc -eq 137 ] || { cat "$tmp/err"; fail "expected SIGKILL (137), got $rc"; }
before=$(db "$run/icalign.db" "select id, item_id, turn, created_at, hex(cleaned) from generations order by id")
[ "$(echo "$before" | wc -l)" -eq 3 ] || fail "expected 3 stored generations, got: $before"
"$bin" answer --bench mt-bench "${common[@]}" --limit 5 --out "$run" 2>"$tmp/err" || { cat "$tmp/err"; fail "resume"; }
grep -q "resuming run" "$tmp/err" || fail "not resumed"
grep -q "7 generations computed, 3 already stored, 0 failed" "$tmp/err" || { cat "$tmp/err"; fail "resume counts"; }
after=$(db "$run/icalign.db" "select id, item_id, turn, created_at, hex(cleaned) from generations order by id")
[ "$(echo "$after" | head -3)" = "$before" ] || fail "completed generations changed on resume"
[ "$(echo "$after" | wc -l)" -eq 10 ] || fail "expected 10 generations"

# --- an external kill -9 at a random moment: stored generations survive, the rest is computed
run2=$tmp/run2
"$bin" answer --bench mt-bench "${common[@]}" --limit 5 --out "$run2" -q 2>/dev/null &
pid=$!
for _ in $(seq 1 600); do
    n=$(db "$run2/icalign.db" "select count(*) from generations" 2>/dev/null || echo 0)
    [ "${n:-0}" -ge 2 ] && break
    sleep 0.1
done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
before=$(db "$run2/icalign.db" "select id, item_id, turn, created_at from generations order by id")
nb=$(echo "$before" | grep -c .)
[ "$nb" -ge 2 ] || fail "nothing stored before the kill"
"$bin" answer --bench mt-bench "${common[@]}" --limit 5 --out "$run2" 2>"$tmp/err" || { cat "$tmp/err"; fail "resume 2"; }
grep -q "$((10 - nb)) generations computed, $nb already stored" "$tmp/err" || { cat "$tmp/err"; fail "resume 2 counts ($nb stored before)"; }
after=$(db "$run2/icalign.db" "select id, item_id, turn, created_at from generations order by id")
[ "$(echo "$after" | head -"$nb")" = "$before" ] || fail "generations changed after kill -9"
python3 - "$run/model_answer/stories260K.jsonl" "$run2/model_answer/stories260K.jsonl" <<'PY' ||
import json, sys
a, b = ([(r["question_id"], r["answer_id"], r["choices"]) for r in map(json.loads, open(f))]
        for f in sys.argv[1:3])
assert a == b, "greedy answers differ between the two interrupted runs"
PY
    fail "the two interrupted runs differ"

# --- FastChat file: valid, 5 questions, 2 turns each, turn 2 prompt holds the turn-1 answer
python3 - "$run/model_answer/stories260K.jsonl" "$run/icalign.db" <<'PY' || fail "FastChat file"
import json, re, sqlite3, sys
rows = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
assert [r["question_id"] for r in rows] == [81, 82, 83, 84, 85], rows
for r in rows:
    assert set(r) == {"question_id", "answer_id", "model_id", "choices", "tstamp"}, r
    assert re.fullmatch(r"[A-Z0-9]{22}", r["answer_id"]) and r["model_id"] == "stories260K"
    t = r["choices"][0]["turns"]
    assert r["choices"][0]["index"] == 0 and len(t) == 2 and all(isinstance(x, str) for x in t)
    assert "```" not in t[0] + t[1]
c = sqlite3.connect(sys.argv[2])
assert c.execute("pragma journal_mode").fetchone()[0] == "wal"
assert c.execute("select count(*) from runs").fetchone()[0] == 1
PY

# --- rerun = nothing computed; --force recomputes all; a changed configuration is a new run
"$bin" answer --bench mt-bench "${common[@]}" --limit 5 --out "$run" 2>"$tmp/err" || fail "rerun"
grep -q "0 generations computed, 10 already stored" "$tmp/err" || { cat "$tmp/err"; fail "rerun counts"; }
"$bin" answer --bench mt-bench "${common[@]}" --limit 2 --force --out "$run" 2>"$tmp/err" || fail "force"
grep -q "4 generations computed, 0 already stored" "$tmp/err" || { cat "$tmp/err"; fail "force counts"; }
[ "$(db "$run/icalign.db" "select count(*) from generations")" -eq 10 ] || fail "force duplicated rows"
"$bin" answer --bench mt-bench -m "$model" -c 1024 --demos none --max-tokens 8 --limit 1 --out "$run" \
    --model-id other 2>"$tmp/err" || fail "new config"
grep -q "new run" "$tmp/err" || { cat "$tmp/err"; fail "config change must be a new run"; }
[ "$(db "$run/icalign.db" "select count(*) from runs")" -eq 2 ] || fail "expected 2 runs"
[ "$(db "$run/icalign.db" "select count(*) from generations where run_id=1")" -eq 10 ] || fail "run 1 lost rows"

# --- AlpacaEval: model_outputs.json as alpaca_eval reads it
"$bin" answer --bench alpaca-eval "${common[@]}" --limit 2 --out "$tmp/ae" --model-id m1 2>"$tmp/err" || { cat "$tmp/err"; fail "alpaca-eval"; }
python3 - "$tmp/ae/model_outputs.json" "$shared/data/alpaca_eval/reference_outputs/alpaca_eval_gpt4_baseline.json" <<'PY' || fail "model_outputs.json"
import json, sys
out = json.load(open(sys.argv[1], encoding="utf-8"))
ref = json.load(open(sys.argv[2], encoding="utf-8"))
assert len(out) == 2
for o, r in zip(out, ref):
    assert o["instruction"] == r["instruction"] and o["dataset"] == r["dataset"]
    assert isinstance(o["output"], str) and o["generator"] == "m1"
PY
# a generic JSONL of {instruction} lines gives both files
printf '{"instruction": "Say hi."}\n\n{"instruction": "Count."}\n' >"$tmp/ins.jsonl"
"$bin" answer --bench "$tmp/ins.jsonl" "${common[@]}" --out "$tmp/gi" 2>"$tmp/err" || { cat "$tmp/err"; fail "generic"; }
python3 -c '
import json,sys
o=json.load(open(sys.argv[1])); assert [x["instruction"] for x in o]==["Say hi.","Count."]
a=[json.loads(l) for l in open(sys.argv[2])]; assert [x["question_id"] for x in a]==[1,3]' \
    "$tmp/gi/model_outputs.json" "$tmp/gi/model_answer/stories260K.jsonl" || fail "generic files"
# --instruct: the same questions through a chat template (an instruction-tuned baseline);
# its own run, resumable, and the chat template shapes the prompt (more prompt tokens than
# the bare question)
"$bin" answer --bench "$tmp/ins.jsonl" -m "$model" -c 1024 --max-tokens 8 --instruct \
    --chat-template chatml --out "$tmp/inst" 2>"$tmp/err" || { cat "$tmp/err"; fail "instruct"; }
grep -q "2 generations computed" "$tmp/err" || fail "instruct: $(cat "$tmp/err")"
"$bin" answer --bench "$tmp/ins.jsonl" -m "$model" -c 1024 --max-tokens 8 --instruct \
    --chat-template chatml --out "$tmp/inst" 2>"$tmp/err" || fail "instruct rerun"
grep -q "0 generations computed, 2 already stored" "$tmp/err" || fail "instruct resume"
python3 -c '
import sqlite3,sys
db=sqlite3.connect(sys.argv[1])
n=[r[0] for r in db.execute("select prompt_tokens from generations")]
assert len(n)==2 and min(n)>12, n' "$tmp/inst/icalign.db" || fail "instruct prompt tokens"
echo "answer: all checks passed"
