#!/bin/bash
# icalign judge end to end: answer -> judge -> score on --limit 3 questions.
#  * the stories260K fixture as judge (context 128): every MT-Bench judge prompt overflows; the
#    errors are clear, recorded in judgments.error, retried by a rerun, and nothing crashes;
#  * a synthetic model (icalign synth --preset tiny, noise) as local judge through the chatml
#    template with a context of 8192: a real pipeline run, SIGKILL after 2 stored judgments, rerun
#    (no judgment lost or duplicated), FastChat judgment file, icalign score --run;
#  * a fake OpenAI server (python3) as judge: "[[7]]" gives exactly 7.0 averages, AlpacaEval
#    preferences from m/M logprobs with the order switch, just-eval aspects, --force, the request
#    settings of each protocol.
# Usage: judge.sh ICALIGN_BINARY SHARED_DIR   (exit 77 = skipped)
set -u
bin=$1
shared=$2
fixture=$shared/fixtures/stories260K/stories260K.gguf
[ -f "$fixture" ] || { echo "skip: $fixture absent"; exit 77; }
[ -f "$shared/data/mt_bench/judge_prompts.jsonl" ] || { echo "skip: mt_bench data absent"; exit 77; }
[ -f "$shared/data/alpaca_eval/reference_outputs/alpaca_eval_gpt4_baseline.json" ] || { echo "skip: alpaca_eval data absent"; exit 77; }
command -v python3 >/dev/null || { echo "skip: python3 absent"; exit 77; }
export ICALIGN_SHARED=$shared ICALIGN_NO_PROGRESS=1
tmp=$(mktemp -d)
srv=
cleanup() { [ -n "$srv" ] && kill "$srv" 2>/dev/null; rm -rf "$tmp"; }
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
run=$tmp/run
"$bin" answer --bench mt-bench -m "$model" -c 2048 --demos none --max-tokens 16 --limit 3 \
    --out "$run" -q 2>"$tmp/err" || { cat "$tmp/err"; fail "answer"; }

# --- usage errors
"$bin" judge --bench nope --answers "$run" -m "$model" 2>"$tmp/err"; [ $? -eq 2 ] || fail "unknown bench"
"$bin" judge --bench mt-bench --answers "$tmp/none" -m "$model" 2>"$tmp/err" && fail "missing run dir accepted"
grep -q "no store" "$tmp/err" || { cat "$tmp/err"; fail "missing run dir message"; }
[ -e "$tmp/none" ] && fail "judge created a run directory"

# --- context overflow: recorded, clear, no crash; a rerun retries (and fails again)
for k in 1 2; do
    "$bin" judge --bench mt-bench --answers "$run" -m "$fixture" --chat-template chatml --limit 1 \
        --judge-id small 2>"$tmp/err"
    rc=$?
    [ $rc -eq 1 ] || { cat "$tmp/err"; fail "overflow: exit $rc, expected 1"; }
    grep -Eq "item 81 turn 1: prompt of [0-9]+ tokens \+ 2048 new tokens exceeds the context of 128 tokens" "$tmp/err" ||
        { cat "$tmp/err"; fail "overflow message"; }
    grep -q "2 judgments failed and are recorded" "$tmp/err" || { cat "$tmp/err"; fail "overflow summary"; }
done
[ "$(db "$run/icalign.db" "select count(*) from judgments where judge='mt-bench/small' and error like '%exceeds the context%' and raw=''")" = 2 ] ||
    fail "overflow not recorded once per judgment"
[ -s "$run/model_judgment/small_single.jsonl" ] && fail "failed judgments written to the judgment file"

# --- local judge (synthetic tiny model, chatml, context 8192): SIGKILL after 2 judgments, rerun
jopts=(--bench mt-bench --answers "$run" -m "$model" -c 8192 --chat-template chatml --max-tokens 24)
ICALIGN_TEST_KILL_AFTER=2 timeout 600 "$bin" judge "${jopts[@]}" -q 2>"$tmp/err"
rc=$?
[ $rc -eq 137 ] || { cat "$tmp/err"; fail "expected SIGKILL (137), got $rc"; }
q="select id, generation_id, judge, prompt_name, score, created_at, hex(raw) from judgments where judge='mt-bench/tiny' order by id"
before=$(db "$run/icalign.db" "$q")
[ "$(echo "$before" | grep -c .)" -eq 2 ] || fail "expected 2 stored judgments, got: $before"
timeout 600 "$bin" judge "${jopts[@]}" 2>"$tmp/err" || { cat "$tmp/err"; fail "resume"; }
grep -q "4 judgments computed, 2 already stored, 0 failed" "$tmp/err" || { cat "$tmp/err"; fail "resume counts"; }
after=$(db "$run/icalign.db" "$q")
[ "$(echo "$after" | head -2)" = "$before" ] || fail "stored judgments changed on resume"
[ "$(db "$run/icalign.db" "select count(*), count(distinct generation_id) from judgments where judge='mt-bench/tiny'")" = "6|6" ] ||
    fail "expected 6 judgments of 6 generations"
timeout 600 "$bin" judge "${jopts[@]}" 2>"$tmp/err" || { cat "$tmp/err"; fail "rerun"; }
grep -q "0 judgments computed, 6 already stored" "$tmp/err" || { cat "$tmp/err"; fail "rerun counts"; }
python3 - "$run/model_judgment/tiny_single.jsonl" "$run/icalign.db" <<'PY' || fail "FastChat judgment file"
import json, sqlite3, sys
rows = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
assert len(rows) == 6, len(rows)
assert sorted((r["question_id"], r["turn"]) for r in rows) == [(q, t) for q in (81, 82, 83) for t in (1, 2)]
for r in rows:
    assert set(r) == {"question_id", "model", "judge", "user_prompt", "judgment", "score", "turn", "tstamp"}, r
    assert r["model"] == "tiny" and r["judge"] == ["tiny", "single-v1" if r["turn"] == 1 else "single-v1-multi-turn"]
    assert isinstance(r["score"], (int, float))
c = sqlite3.connect(sys.argv[2])
for prompt, raw, score, parsed in c.execute(
        "select prompt, raw, score, parsed from judgments where judge='mt-bench/tiny'"):
    m = json.loads(prompt)
    assert [x["role"] for x in m] == ["system", "user"], m
    assert json.loads(parsed)["score"] == score
kinds = [r[0] for r in c.execute("select bench from runs where kind='judge' order by id")]
assert kinds == ["mt-bench/small", "mt-bench/tiny"], kinds
PY
"$bin" score --run "$run" --json >"$tmp/s.json" 2>"$tmp/err" || { cat "$tmp/err"; fail "score --run"; }
python3 - "$tmp/s.json" <<'PY' || fail "score --run output"
import json, sys
s = json.load(open(sys.argv[1]))
assert [(r["bench"], r["model"]) for r in s] == [("mt-bench", "run (tiny)")], s
r = s[0]
assert r["n_turn1"] + r["n_turn2"] + r["n_failed"] == 6, r
PY
"$bin" score --run "$run" >"$tmp/s.txt" 2>&1 || { cat "$tmp/s.txt"; fail "score table"; }
grep -q "^run (tiny)" "$tmp/s.txt" || { cat "$tmp/s.txt"; fail "score table row"; }

# --- fake OpenAI judge
cat >"$tmp/fake.py" <<'PY'
import json, math, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
log = open(sys.argv[2], "a")
lock = threading.Lock()
JE = {a: {"reason": "ok", "score": "4"} for a in ("helpfulness", "clarity", "factuality", "depth", "engagement")}
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with lock:
            log.write(json.dumps(body) + "\n"); log.flush()
        ch = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Good. Rating: [[7]]"}}
        if body.get("logprobs"):
            top = [{"token": "m", "logprob": math.log(0.25)}, {"token": "M", "logprob": math.log(0.75)},
                   {"token": "x", "logprob": -9.0}]
            ch["message"]["content"] = "M"
            ch["logprobs"] = {"content": [{"token": "M", "logprob": top[1]["logprob"], "top_logprobs": top}]}
        elif body["messages"][0]["content"].startswith("You are an AI assistant that helps"):
            ch["message"]["content"] = "```\n" + json.dumps(JE) + "\n```"
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
python3 "$tmp/fake.py" "$tmp/port" "$tmp/requests.jsonl" &
srv=$!
for _ in $(seq 1 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
[ -s "$tmp/port" ] || fail "fake server did not start"
url=http://127.0.0.1:$(cat "$tmp/port")
"$bin" judge --bench mt-bench --answers "$run" --base-url "$url" -m fake-judge --concurrency 3 \
    2>"$tmp/err" || { cat "$tmp/err"; fail "remote judge"; }
grep -q "6 judgments computed, 0 already stored, 0 failed" "$tmp/err" || { cat "$tmp/err"; fail "remote counts"; }
"$bin" judge --bench mt-bench --answers "$run" --base-url "$url" -m fake-judge --force --limit 1 \
    2>"$tmp/err" || { cat "$tmp/err"; fail "remote --force"; }
grep -q "2 judgments computed, 0 already stored" "$tmp/err" || { cat "$tmp/err"; fail "--force counts"; }
[ "$(db "$run/icalign.db" "select count(*) from judgments where judge='mt-bench/fake-judge'")" = 6 ] || fail "--force duplicated judgments"
"$bin" score --run "$run" --json >"$tmp/s.json" || fail "score fake"
python3 - "$tmp/s.json" "$run/model_judgment/fake-judge_single.jsonl" "$tmp/requests.jsonl" <<'PY' || fail "fake judge scores"
import json, sys
s = {r["model"]: r for r in json.load(open(sys.argv[1]))}
r = s["run (fake-judge)"]
assert r["turn1"] == 7.0 and r["turn2"] == 7.0 and r["overall"] == 7.0, r
assert r["n_turn1"] == 3 and r["n_turn2"] == 3 and r["n_failed"] == 0
assert r["categories"] == {"writing": 7.0}, r["categories"]
rows = [json.loads(l) for l in open(sys.argv[2])]
assert len(rows) == 6 and all(x["score"] == 7 and x["judge"][0] == "fake-judge" for x in rows)
reqs = [json.loads(l) for l in open(sys.argv[3])]
assert len(reqs) == 8
for q in reqs:
    assert q["model"] == "fake-judge" and q["temperature"] == 0 and q["max_tokens"] == 2048, q
    assert [m["role"] for m in q["messages"]] == ["system", "user"]
PY
"$bin" score --judgments "$run/model_judgment/fake-judge_single.jsonl" --json >"$tmp/f.json" || fail "score --judgments"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r[0]["overall"]==7.0, r' "$tmp/f.json" || fail "judgment file score"

# AlpacaEval and just-eval with the fake judge
ae=$tmp/ae
"$bin" answer --bench alpaca-eval -m "$model" -c 2048 --demos none --max-tokens 16 --limit 3 --out "$ae" \
    --model-id m1 -q 2>"$tmp/err" || { cat "$tmp/err"; fail "answer alpaca-eval"; }
: >"$tmp/requests.jsonl"
"$bin" judge --bench alpaca-eval --answers "$ae" --base-url "$url" -m fake-judge 2>"$tmp/err" ||
    { cat "$tmp/err"; fail "alpaca-eval judge"; }
"$bin" judge --bench just-eval --answers "$ae" --base-url "$url" -m fake-judge 2>"$tmp/err" ||
    { cat "$tmp/err"; fail "just-eval judge"; }
"$bin" score --run "$ae" --json >"$tmp/a.json" 2>"$tmp/err" || { cat "$tmp/err"; fail "score alpaca"; }
"$bin" score --annotations "$ae/alpaca_eval/fake-judge/annotations.json" --json >"$tmp/a2.json" 2>"$tmp/err" ||
    { cat "$tmp/err"; fail "score annotations.json"; }
python3 - "$tmp/a.json" "$tmp/a2.json" "$shared/data/alpaca_eval/derived/is_switched_outputs_seed0.jsonl" \
    "$ae/alpaca_eval/fake-judge/annotations.json" "$tmp/requests.jsonl" "$ae/just_eval/fake-judge_score_multi.json" <<'PY' || fail "alpaca-eval / just-eval"
import json, sys
runs = json.load(open(sys.argv[1]))
files = json.load(open(sys.argv[2]))
sw = [json.loads(l) for l in open(sys.argv[3])][:3]
flag = lambda r: next(v for k, v in r.items() if k != "instruction" and isinstance(v, bool))
exp = [1.25 if flag(r) else 1.75 for r in sw]   # p(m) = 0.25 -> 2 - 0.25, unswitched 3 - x
ann = json.load(open(sys.argv[4]))
assert [a["instruction"] for a in ann] == [r["instruction"] for r in sw]
assert all(abs(a["preference"] - e) < 1e-12 for a, e in zip(ann, exp)), (ann, exp)
assert all(a["generator_2"] == "m1" and a["generator_1"] == "gpt4_1106_preview" for a in ann)
ae = [r for r in runs if r["bench"] == "alpaca-eval"][0]
wr = 100 * sum(e - 1 for e in exp) / 3
assert abs(ae["win_rate"] - wr) < 1e-9 and ae["n_total"] == 3, (ae, wr)
assert abs(files[0]["win_rate"] - wr) < 1e-9 and files[0]["model"] == "m1", files
assert abs(ae["length_controlled_winrate"] - files[0]["length_controlled_winrate"]) < 1e-9
je = [r for r in runs if r["bench"] == "just-eval"][0]
assert all(je[a] == 4.0 for a in ("helpfulness", "clarity", "factuality", "depth", "engagement")), je
assert je["n_parsed"] == 3
js = json.load(open(sys.argv[6]))
assert len(js) == 3 and js[0]["parsed_result"]["depth"] == 4.0
reqs = [json.loads(l) for l in open(sys.argv[5])]
a = [q for q in reqs if q.get("logprobs")]
assert len(a) == 3 and all(q["max_tokens"] == 1 and q["temperature"] == 1 and q["top_logprobs"] == 5 for q in a), a
j = [q for q in reqs if not q.get("logprobs")]
assert len(j) == 3 and all(q["max_tokens"] == 1024 and q["temperature"] == 0 for q in j)
PY
echo "judge: all checks passed"
