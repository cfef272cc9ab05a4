#!/bin/bash
# icalign search / sweep / ablate end to end: a synthetic tiny model (icalign synth --preset tiny)
# answers, a fake OpenAI-compatible judge (python3) rates each answer "[[k]]" with k derived from
# the answer text. Checks: tables and files, a rerun makes no generation and no judge call,
# --halving makes fewer judge calls, SIGKILL mid-search then rerun repeats no stored work,
# sweep and ablate run end to end and reuse the store.
# Usage: search.sh ICALIGN_BINARY SHARED_DIR   (exit 77 = skipped)
set -u
bin=$1
shared=$2
[ -f "$shared/data/mt_bench/judge_prompts.jsonl" ] || { echo "skip: mt_bench data absent"; exit 77; }
command -v python3 >/dev/null || { echo "skip: python3 absent"; exit 77; }
export ICALIGN_SHARED=$shared ICALIGN_NO_PROGRESS=1
tmp=$(mktemp -d)
srv=
bg=
cleanup() {
    [ -n "$srv" ] && kill "$srv" 2>/dev/null
    [ -n "$bg" ] && kill -9 "$bg" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
db() { python3 - "$@" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
print("\n".join("|".join(str(x) for x in r) for r in c.execute(sys.argv[2])))
PY
}

model=$tmp/tiny.gguf
"$bin" synth --preset tiny --type q8_0 -o "$model" 2>"$tmp/err" || { cat "$tmp/err"; fail "synth"; }

# a short base set, a pool of 5 short demos, 3 validation questions
printf '# Instruction\n\nAnswer well.\n\n# Query:\n```\nHi?\n```\n\n# Answer:\n```\nHello.\n```\n' >"$tmp/base.txt"
cat >"$tmp/pool.jsonl" <<'EOF'
{"id": "p0", "query": "Two plus two?", "answer": "Four.", "source": "math"}
{"id": "p1", "query": "Capital of France?", "answer": "Paris.", "source": "geo"}
{"id": "p2", "query": "A colour?", "answer": "Blue.", "source": "misc"}
{"id": "p3", "query": "Say yes.", "answer": "Yes.", "source": "misc"}
{"id": "p4", "query": "A number?", "answer": "Seven.", "source": "math"}
EOF
cat >"$tmp/answers.jsonl" <<'EOF'
{"id": "a0", "query": "x", "answer": "Red."}
{"id": "a1", "query": "y", "answer": "Ten."}
EOF
cat >"$tmp/val.jsonl" <<'EOF'
{"question_id": 1, "turns": ["Name a fruit."]}
{"question_id": 2, "turns": ["Name a city."]}
{"question_id": 3, "turns": ["Name a dog."]}
EOF

cat >"$tmp/fake.py" <<'PY'
import hashlib, json, math, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
log = open(sys.argv[2], "a")
lock = threading.Lock()
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        user = body["messages"][-1]["content"]
        a = user.split("[The Start of Assistant's Answer]\n", 1)[-1].split("\n[The End of Assistant's Answer]", 1)[0]
        k = 1 + sum(a.encode()) % 9
        # one line per request: the sha256 of its messages (tests compare prompts with it)
        h = hashlib.sha256(json.dumps(body["messages"], sort_keys=True).encode()).hexdigest()
        with lock:
            log.write(h + "\n"); log.flush()
        ch = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Rating: [[%d]]" % k}}
        if body.get("logprobs"):  # AlpacaEval annotator: P(M) = k/10 from the whole prompt
            pm = (1 + sum(user.encode()) % 9) / 10.0
            top = [{"token": "M", "logprob": math.log(pm)}, {"token": "m", "logprob": math.log(1 - pm)}]
            ch["message"]["content"] = "M"
            ch["logprobs"] = {"content": [{"token": "M", "logprob": top[0]["logprob"], "top_logprobs": top}]}
        out = json.dumps({"id": "x", "object": "chat.completion", "model": body["model"], "choices": [ch],
                          "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
open(sys.argv[1], "w").write(str(s.server_address[1]))
s.serve_forever()
PY
python3 "$tmp/fake.py" "$tmp/port" "$tmp/calls" &
srv=$!
for _ in $(seq 1 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
[ -s "$tmp/port" ] || fail "fake judge did not start"
: >"$tmp/calls"
calls() { wc -l <"$tmp/calls" | tr -d ' '; }
url=http://127.0.0.1:$(cat "$tmp/port")
bo=(-m "$model" -c 1024 --max-tokens 4 --val "$tmp/val.jsonl" --judge-base-url "$url" --judge-name fake)
common=("${bo[@]}" --base-demos "$tmp/base.txt" --pool "$tmp/pool.jsonl")

# --- usage errors
"$bin" search --help | grep -q -- "--halving" || fail "search --help"
"$bin" sweep --help | grep -q -- "--family" || fail "sweep --help"
"$bin" ablate --help | grep -q -- "--variants" || fail "ablate --help"
"$bin" search -m "$model" --out "$tmp/x" 2>/dev/null; [ $? -eq 2 ] || fail "missing --pool accepted"
"$bin" search -m "$model" --pool "$tmp/pool.jsonl" --out "$tmp/x" 2>/dev/null; [ $? -eq 2 ] || fail "missing judge accepted"

# --- full search, 2 steps
"$bin" search "${common[@]}" --steps 2 --always-take --out "$tmp/full" >"$tmp/out1" 2>"$tmp/err" ||
    { cat "$tmp/err" "$tmp/out1"; fail "search"; }
full_calls=$(calls)
# base 3 + step 1: 5 x 3 + step 2: 4 x 3
[ "$full_calls" -eq 30 ] || { cat "$tmp/out1"; fail "expected 30 judge calls, got $full_calls"; }
grep -q "<- chosen" "$tmp/out1" || fail "no chosen candidate in the table"
grep -q "full search        30" "$tmp/out1" || { cat "$tmp/out1"; fail "full-search count"; }
[ -s "$tmp/full/chosen.txt" ] || fail "chosen.txt"
head -c 13 "$tmp/full/chosen.txt" | grep -q "# Instruction" || fail "chosen.txt format"
[ "$(grep -c '^# Query:' "$tmp/full/chosen.txt")" -eq 3 ] || fail "chosen.txt: 1 base + 2 chosen demos"
[ "$(wc -l <"$tmp/full/search.csv")" -eq 10 ] || fail "search.csv rows"
[ "$(db "$tmp/full/icalign.db" "select count(*) from search_steps")" = 2 ] || fail "search_steps rows"
[ "$(db "$tmp/full/icalign.db" "select count(*) from generations")" = 30 ] || fail "30 generations"
# report files: Markdown table + SVG chart, well-formed when xmllint is available
xmlok() { command -v xmllint >/dev/null || return 0; xmllint --noout "$1"; }
[ -s "$tmp/full/report.md" ] && [ -s "$tmp/full/search.svg" ] || fail "search report files"
grep -q "^| step | chosen | score | candidates |" "$tmp/full/report.md" || fail "search report.md table"
grep -q "search.svg" "$tmp/full/report.md" || fail "search report.md chart link"
xmlok "$tmp/full/search.svg" || fail "search.svg is not well-formed"
cp "$tmp/full/search.svg" "$tmp/search1.svg"

# --- rerun: nothing new
"$bin" search "${common[@]}" --steps 2 --always-take --out "$tmp/full" >"$tmp/out2" 2>"$tmp/err" ||
    { cat "$tmp/err"; fail "rerun"; }
[ "$(calls)" -eq "$full_calls" ] || fail "rerun called the judge"
grep -q "generations         0 new,       30 from the store" "$tmp/out2" || { cat "$tmp/out2"; fail "rerun generations"; }
cmp -s "$tmp/search1.svg" "$tmp/full/search.svg" || fail "search.svg differs on a rerun"
diff <(grep -v "^  \(generations\|judge calls\|full search\|prefill\|naive\)" "$tmp/out1") \
     <(grep -v "^  \(generations\|judge calls\|full search\|prefill\|naive\)" "$tmp/out2") >/dev/null ||
    fail "rerun table differs"
# extending K reuses steps 1-2
"$bin" search "${common[@]}" --steps 3 --always-take --out "$tmp/full" >"$tmp/out3" 2>"$tmp/err" ||
    { cat "$tmp/err"; fail "extend"; }
[ "$(( $(calls) - full_calls ))" -eq 9 ] || fail "extending to 3 steps: expected 9 new judge calls"

# --- halving: fewer judge calls
: >"$tmp/calls"
"$bin" search "${common[@]}" --steps 2 --always-take --halving --out "$tmp/half" >"$tmp/outh" 2>"$tmp/err" ||
    { cat "$tmp/err"; fail "halving"; }
[ "$(calls)" -lt 30 ] || fail "halving made $(calls) judge calls"
grep -q "successive halving\|saved" "$tmp/outh" "$tmp/err" || fail "halving report"

# --- SIGKILL mid-search, then rerun: nothing stored is recomputed
: >"$tmp/calls"
"$bin" search "${common[@]}" --steps 2 --always-take --out "$tmp/kill" >/dev/null 2>&1 &
bg=$!
for _ in $(seq 1 300); do
    n=$(db "$tmp/kill/icalign.db" "select count(*) from generations" 2>/dev/null || echo 0)
    [ "${n:-0}" -ge 8 ] && break
    sleep 0.05
done
kill -9 "$bg" 2>/dev/null
wait "$bg" 2>/dev/null
bg=
g1=$(db "$tmp/kill/icalign.db" "select count(*) from generations")
j1=$(db "$tmp/kill/icalign.db" "select count(*) from judgments")
"$bin" search "${common[@]}" --steps 2 --always-take --out "$tmp/kill" >"$tmp/outk" 2>"$tmp/err" ||
    { cat "$tmp/err"; fail "rerun after kill"; }
grep -q "generations  *$((30 - g1)) new,  *$g1 from the store" "$tmp/outk" ||
    { echo "g1=$g1"; cat "$tmp/outk"; fail "rerun after kill recomputed stored generations"; }
grep -q "judge calls  *$((30 - j1)) new,  *$j1 from the store" "$tmp/outk" ||
    { echo "j1=$j1"; cat "$tmp/outk"; fail "rerun after kill recomputed stored judgments"; }
[ "$(db "$tmp/kill/icalign.db" "select count(*) from generations")" = 30 ] || fail "generations after kill"
diff <(grep "<- chosen" "$tmp/out1") <(grep "<- chosen" "$tmp/outk") >/dev/null || fail "killed search chose differently"

# --- sweep and ablate in the search's run directory (the base set's answers are reused)
"$bin" sweep "${common[@]}" --family random,greedy-rank,diversity,unsupervised --n 1,2,3 \
    --out "$tmp/full" >"$tmp/outs" 2>"$tmp/err" || { cat "$tmp/err"; fail "sweep"; }
for f in random greedy-rank diversity unsupervised; do
    [ -s "$tmp/full/sweep-$f.csv" ] || fail "sweep-$f.csv"
    grep -q "^  $f-2 " "$tmp/outs" || { cat "$tmp/outs"; fail "sweep table $f"; }
done
[ -s "$tmp/full/sets/diversity-3.txt" ] || fail "sweep set files"
for f in random greedy-rank diversity unsupervised; do
    [ -s "$tmp/full/sweep-$f.svg" ] || fail "sweep-$f.svg"
    xmlok "$tmp/full/sweep-$f.svg" || fail "sweep-$f.svg is not well-formed"
    grep -q "(sweep-$f.svg)" "$tmp/full/report.md" || fail "sweep report.md link $f"
done
grep -q "^| set | score | 95% CI | rated | questions |" "$tmp/full/report.md" || fail "sweep report.md table"
grep -q "generations         0 new" "$tmp/outs" && fail "sweep computed nothing"
"$bin" ablate "${bo[@]}" --query-pool "$tmp/pool.jsonl" --demos "$tmp/base.txt" \
    --variants correct,circular_shift,no_answer,random_answer,unsupervised --answer-pool "$tmp/answers.jsonl" \
    --out "$tmp/full" >"$tmp/outa" 2>"$tmp/err" || { cat "$tmp/err"; fail "ablate"; }
for v in correct circular_shift no_answer random_answer unsupervised; do
    grep -q "^  $v " "$tmp/outa" || { cat "$tmp/outa"; fail "ablate row $v"; }
done
[ "$(wc -l <"$tmp/full/ablate.csv")" -eq 6 ] || fail "ablate.csv"
[ -s "$tmp/full/ablate.svg" ] || fail "ablate.svg"
xmlok "$tmp/full/ablate.svg" || fail "ablate.svg is not well-formed"
grep -q "^| circular_shift | " "$tmp/full/report.md" || fail "ablate report.md row"
grep -q "(ablate.svg)" "$tmp/full/report.md" || fail "ablate report.md link"
# 'correct' is the base set: its answers come from the store
grep -q "from the store" "$tmp/outa" || fail "ablate cost report"
before=$(calls)
"$bin" ablate "${bo[@]}" --query-pool "$tmp/pool.jsonl" --demos "$tmp/base.txt" \
    --variants correct,circular_shift,no_answer,random_answer,unsupervised --answer-pool "$tmp/answers.jsonl" \
    --out "$tmp/full" >/dev/null 2>&1 || fail "ablate rerun"
[ "$(calls)" -eq "$before" ] || fail "ablate rerun called the judge"
# --- --help explains every flag of each command and has an example (the option tables are read
# from the sources next to this script)
src=$(cd "$(dirname "$0")/../../src/cli" 2>/dev/null && pwd)
if [ -n "$src" ] && [ -f "$src/search_cli.h" ]; then
    shared_flags=$(cat "$src/search_cli.h" "$src/cli.h" | tr -d '\\\n' |
        grep -o 'XP_LONGOPTS.*' | grep -o '{ *"[a-z-]*"' | grep -o '[a-z-]*' | sort -u)
    for c in search sweep ablate; do
        "$bin" $c --help >"$tmp/help" || fail "$c --help"
        own=$(grep -o '{"[a-z-]*", *[a-z_]*argument' "$src/cmd_$c.c" | grep -o '"[a-z-]*"' | tr -d '"')
        for f in $own $shared_flags; do
            grep -q -- "--$f\b" "$tmp/help" || fail "$c --help does not explain --$f"
        done
        grep -A3 "^Example" "$tmp/help" | grep -q "icalign $c " || fail "$c --help has no example"
    done
fi

# --- sweep --bench mt-bench: turn 1, turn 2 (after the model's own turn-1 answer) and overall;
# the same answers and judge prompts as icalign answer + icalign judge, the same scores as
# icalign score
mt=(-m "$model" -c 2048 --max-tokens 4 --judge-base-url "$url" --judge-name fake
    --base-demos "$tmp/base.txt" --pool "$tmp/pool.jsonl" --family random --n 1,2 --limit 2)
"$bin" sweep "${mt[@]}" --bench mt-bench --val x.jsonl --out "$tmp/mt" >/dev/null 2>&1
[ $? -eq 2 ] || fail "--bench with --val accepted"
"$bin" sweep "${mt[@]}" --bench nope --out "$tmp/mt" >/dev/null 2>&1; [ $? -eq 2 ] || fail "--bench nope accepted"
: >"$tmp/calls"
"$bin" sweep "${mt[@]}" --bench mt-bench --out "$tmp/mt" >"$tmp/outm" 2>"$tmp/err" ||
    { cat "$tmp/err" "$tmp/outm"; fail "sweep --bench mt-bench"; }
grep -q "turn 1   turn 2  overall" "$tmp/outm" || { cat "$tmp/outm"; fail "mt-bench table header"; }
[ "$(head -1 "$tmp/mt/sweep-random.csv")" = "set,score,ci_low,ci_high,n_rated,n_questions,turn1,turn2" ] ||
    fail "mt-bench csv header"
# 2 sets x 2 questions x 2 turns, judged with the multi-turn prompt for turn 2
[ "$(calls)" -eq 8 ] || fail "mt-bench sweep: $(calls) judge calls, expected 8"
[ "$(db "$tmp/mt/icalign.db" "select count(*) from generations where turn=2")" = 4 ] || fail "turn-2 generations"
[ "$(db "$tmp/mt/icalign.db" "select count(*) from judgments where prompt_name='single-v1-multi-turn'")" = 4 ] ||
    fail "turn-2 judgments"
grep -q "^| set | overall | 95% CI | rated | questions | turn1 | turn2 |" "$tmp/mt/report.md" ||
    { cat "$tmp/mt/report.md"; fail "mt-bench report.md table"; }
cp "$tmp/calls" "$tmp/calls_sweep"
"$bin" answer --bench mt-bench --limit 2 --demos "$tmp/mt/sets/random-2.txt" -m "$model" -c 2048 \
    --max-tokens 4 -q --out "$tmp/ans" >/dev/null 2>"$tmp/err" || { cat "$tmp/err"; fail "answer"; }
"$bin" judge --bench mt-bench --answers "$tmp/ans" --base-url "$url" -m fake -q >/dev/null 2>"$tmp/err" ||
    { cat "$tmp/err"; fail "judge"; }
"$bin" score --run "$tmp/ans" --json >"$tmp/score.json" 2>"$tmp/err" || { cat "$tmp/err"; fail "score"; }
# every judge prompt of icalign judge (4: 2 questions x 2 turns) was one the sweep sent
[ "$(sort -u "$tmp/calls" | wc -l)" -eq "$(sort -u "$tmp/calls_sweep" | wc -l)" ] ||
    fail "icalign judge sent prompts the sweep did not"
python3 - "$tmp/mt" "$tmp/ans" "$tmp/score.json" <<'PY' || fail "mt-bench sweep differs from answer + judge + score"
import csv, hashlib, json, sqlite3, sys
mt, ans, sc = sys.argv[1:]
rows = {r["set"]: r for r in csv.DictReader(open(mt + "/sweep-random.csv"))}
for r in rows.values():  # every answer rated: overall = mean of the two turn means
    assert r["n_rated"] == "4", r
    assert abs(float(r["score"]) - (float(r["turn1"]) + float(r["turn2"])) / 2) < 1e-5, r
def answers(path, where):  # {(question id, turn): cleaned answer bytes}
    db = sqlite3.connect(path + "/icalign.db")
    db.text_factory = bytes
    q = ("select i.data, g.turn, g.cleaned from generations g join items i on i.run_id=g.run_id "
         "and i.item_id=g.item_id join runs r on r.id=g.run_id where r.kind='answer' " + where)
    key = lambda d: str(d.get("question_id", d.get("id")))
    return {(key(json.loads(i)), t): c for i, t, c in db.execute(q)}
sha = hashlib.sha256(open(mt + "/sets/random-2.txt", "rb").read()).hexdigest()
got = answers(mt, "and r.demos_sha256='%s'" % sha)
ref = answers(ans, "")
assert len(ref) == 4 and got == ref, (got, ref)
s = json.load(open(sc))[0]
r = rows["random-2"]
for k, v in (("turn1", "turn1"), ("turn2", "turn2"), ("overall", "score")):
    assert abs(s[k] - float(r[v])) < 1e-5, (k, s[k], r[v])
PY
"$bin" sweep "${mt[@]}" --bench mt-bench --out "$tmp/mt" >"$tmp/outm2" 2>&1 || fail "mt-bench rerun"
grep -q "judge calls         0 new" "$tmp/outm2" || { cat "$tmp/outm2"; fail "mt-bench rerun judged again"; }
"$bin" ablate "${mt[@]:0:10}" --demos "$tmp/base.txt" --variants correct,no_answer --limit 2 \
    --bench mt-bench --out "$tmp/mt" >"$tmp/outa2" 2>"$tmp/err" || { cat "$tmp/err"; fail "ablate --bench mt-bench"; }
grep -q "turn 1   turn 2  overall" "$tmp/outa2" || { cat "$tmp/outa2"; fail "ablate mt-bench table"; }
[ "$(head -1 "$tmp/mt/ablate.csv")" = "variant,score,ci_low,ci_high,n_rated,n_questions,turn1,turn2" ] ||
    fail "ablate mt-bench csv header"
"$bin" search "${mt[@]:0:10}" --bench alpaca-eval --out "$tmp/mt" >/dev/null 2>&1
[ $? -eq 2 ] || fail "search --bench alpaca-eval accepted"

# --- sweep --bench alpaca-eval: LC win rate and win rate against the reference outputs, as
# icalign answer + judge + score compute them
if [ -f "$shared/data/alpaca_eval/reference_outputs/alpaca_eval_gpt4_baseline.json" ]; then
    : >"$tmp/calls"
    "$bin" sweep "${mt[@]}" --limit 3 --bench alpaca-eval --out "$tmp/ae" >"$tmp/outae" 2>"$tmp/err" ||
        { cat "$tmp/err" "$tmp/outae"; fail "sweep --bench alpaca-eval"; }
    grep -q "LC wr %" "$tmp/outae" || { cat "$tmp/outae"; fail "alpaca-eval table"; }
    [ "$(head -1 "$tmp/ae/sweep-random.csv")" = "set,score,ci_low,ci_high,n_rated,n_questions,win_rate" ] ||
        fail "alpaca-eval csv header"
    [ "$(db "$tmp/ae/icalign.db" "select count(*) from judgments where prompt_name='weighted_alpaca_eval_gpt4_turbo' and preference is not null")" = 6 ] ||
        fail "alpaca-eval judgments"
    [ -s "$tmp/ae/sweep-random.svg" ] && xmlok "$tmp/ae/sweep-random.svg" || fail "alpaca-eval svg"
    cp "$tmp/calls" "$tmp/calls_sweep"
    "$bin" answer --bench alpaca-eval --limit 3 --demos "$tmp/ae/sets/random-2.txt" -m "$model" -c 2048 \
        --max-tokens 4 -q --out "$tmp/aans" >/dev/null 2>"$tmp/err" || { cat "$tmp/err"; fail "answer ae"; }
    "$bin" judge --bench alpaca-eval --answers "$tmp/aans" --base-url "$url" -m fake -q >/dev/null 2>"$tmp/err" ||
        { cat "$tmp/err"; fail "judge ae"; }
    [ "$(sort -u "$tmp/calls" | wc -l)" -eq "$(sort -u "$tmp/calls_sweep" | wc -l)" ] ||
        fail "icalign judge (alpaca-eval) sent prompts the sweep did not"
    "$bin" score --run "$tmp/aans" --json >"$tmp/score.json" 2>"$tmp/err" || { cat "$tmp/err"; fail "score ae"; }
    python3 - "$tmp/ae" "$tmp/score.json" <<'PY' || fail "alpaca-eval sweep differs from icalign score"
import csv, json, math, sys
ae, sc = sys.argv[1:]
r = {r["set"]: r for r in csv.DictReader(open(ae + "/sweep-random.csv"))}["random-2"]
s = json.load(open(sc))[0]
assert r["n_rated"] == "3" and abs(float(r["win_rate"]) - s["win_rate"]) < 1e-4, (r, s)
lc = s.get("length_controlled_winrate")
if lc is None:
    assert r["score"] == "", r
else:
    assert abs(float(r["score"]) - lc) < 1e-4, (r, s)
PY
fi
echo "search.sh: all good"
