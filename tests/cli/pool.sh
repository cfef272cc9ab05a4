#!/bin/bash
# The shipped pools of data/pool/ through the CLI: the --demos SPEC grammar (pool:...), demos
# transform with the answer pools, then ablate (correct, id_random, ood_random, no_answer on the
# URIAL set) and sweep (random, diversity, unsupervised) end to end with --limit 1 on a fixture
# model, judged by a fake OpenAI-compatible judge (python3) that rates "[[1 + byte sum % 9]]".
# The content checks (sizes, categories, MT-Bench overlap) are tests/unit/test_align_pool_data.c.
# Usage: pool.sh ICALIGN_BINARY SHARED_DIR   (exit 77 = skipped)
set -u
bin=$1
shared=$2
pool=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../data/pool" && pwd) || { echo "FAIL: data/pool"; exit 1; }
model=$shared/fixtures/random/rand-llama-q8_0.gguf
[ -f "$model" ] || { echo "skip: fixture model absent"; exit 77; }
[ -f "$shared/data/mt_bench/question.jsonl" ] || { echo "skip: mt_bench data absent"; exit 77; }
command -v python3 >/dev/null || { echo "skip: python3 absent"; exit 77; }
export ICALIGN_SHARED=$shared ICALIGN_NO_PROGRESS=1
tmp=$(mktemp -d)
srv=
cleanup() {
    [ -n "$srv" ] && kill "$srv" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

# --- the pool through the SPEC grammar: a stratified draw of 8 covers the 8 categories
"$bin" demos show "pool:$pool/pool.jsonl:stratified=8:seed=1" >"$tmp/show" 2>"$tmp/err" ||
    { cat "$tmp/err"; fail "demos show pool"; }
grep -q "^demos: *8$" "$tmp/show" || { cat "$tmp/show"; fail "8 demos"; }
for c in general-knowledge reasoning maths coding writing safety advice explanation; do
    grep -q " icalign-pool-[0-9]* *$c " "$tmp/show" || { cat "$tmp/show"; fail "category $c not drawn"; }
done
"$bin" demos show "pool:$pool/pool.jsonl:ids=icalign-pool-001,icalign-pool-066" >"$tmp/show" 2>&1 ||
    fail "demos show ids"
grep -q "^demos: *2$" "$tmp/show" || fail "ids selection"

# --- demos transform: the answer pools replace the answers of the built-in set, in pool order
first() { python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["answer"])' "$1"; }
for p in answers-id answers-ood; do
    "$bin" demos transform --variant random_answer --answers "$pool/$p.jsonl" default >"$tmp/$p.txt" \
        2>"$tmp/err" || { cat "$tmp/err"; fail "transform $p"; }
    [ "$(grep -c '^# Query:' "$tmp/$p.txt")" -eq 3 ] || fail "transform $p: 3 demos"
    first "$pool/$p.jsonl" >"$tmp/first"
    grep -qF "$(head -1 "$tmp/first")" "$tmp/$p.txt" || fail "transform $p: first pool answer absent"
done

# --- fake judge
cat >"$tmp/fake.py" <<'PY'
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        user = body["messages"][-1]["content"]
        a = user.split("[The Start of Assistant's Answer]\n", 1)[-1].split("\n[The End of Assistant's Answer]", 1)[0]
        ch = {"index": 0, "finish_reason": "stop",
              "message": {"role": "assistant", "content": "Rating: [[%d]]" % (1 + sum(a.encode()) % 9)}}
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
python3 "$tmp/fake.py" "$tmp/port" &
srv=$!
for _ in $(seq 1 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
[ -s "$tmp/port" ] || fail "fake judge did not start"
common=(-m "$model" -c 8192 --max-tokens 2 --limit 1 --judge-base-url "http://127.0.0.1:$(cat "$tmp/port")"
    --judge-name fake --out "$tmp/run")

# every CSV row: 1 question, rated, score in [1, 9]
rows_ok() {
    python3 - "$1" "$2" <<'PY' || fail "$1"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert len(rows) == int(sys.argv[2]), rows
for r in rows:
    assert r["n_questions"] == "1" and r["n_rated"] == "1", r
    assert 1 <= float(r["score"]) <= 9, r
PY
}

# --- ablate on the URIAL set with the shipped answer pools
"$bin" ablate "${common[@]}" --demos urial --variants correct,id_random,ood_random,no_answer \
    --id-pool "$pool/answers-id.jsonl" --ood-pool "$pool/answers-ood.jsonl" >"$tmp/outa" 2>"$tmp/err" ||
    { cat "$tmp/err" "$tmp/outa"; fail "ablate"; }
for v in correct id_random ood_random no_answer; do
    grep -q "^  $v " "$tmp/outa" || { cat "$tmp/outa"; fail "ablate row $v"; }
done
rows_ok "$tmp/run/ablate.csv" 4
grep -q "0 failed" "$tmp/outa" || fail "ablate: failed requests"
# the OOD set carries the pool's third answer (a French sentence) in the third demo
grep -qF "La bibliothèque ouvre à neuf heures." "$tmp/run/sets/ood_random.txt" || fail "ood_random set"
first "$pool/answers-id.jsonl" >"$tmp/first"
grep -qF "$(head -1 "$tmp/first")" "$tmp/run/sets/id_random.txt" || fail "id_random set"

# --- sweep over the pool, with a 1-demo base set to keep the prompts short
printf '# Instruction\n\nAnswer well.\n\n# Query:\n```\nHi?\n```\n\n# Answer:\n```\nHello.\n```\n' >"$tmp/base.txt"
"$bin" sweep "${common[@]}" --pool "$pool/pool.jsonl" --base-demos "$tmp/base.txt" \
    --family random,diversity,unsupervised --n 2,4 >"$tmp/outs" 2>"$tmp/err" ||
    { cat "$tmp/err" "$tmp/outs"; fail "sweep"; }
for f in random diversity unsupervised; do
    rows_ok "$tmp/run/sweep-$f.csv" 2
done
# diversity-4: 4 pool demos, no base demo; every query is a pool query
[ "$(grep -c '^# Query:' "$tmp/run/sets/diversity-4.txt")" -eq 4 ] || fail "diversity-4 size"
python3 - "$tmp/run/sets/diversity-4.txt" "$pool/pool.jsonl" <<'PY' || fail "diversity-4 queries"
import json, re, sys
qs = re.findall(r"# Query:\n```\n(.*?)\n```\n", open(sys.argv[1]).read(), re.S)
pool = {json.loads(l)["query"] for l in open(sys.argv[2])}
assert len(qs) == 4 and all(q in pool for q in qs), qs
PY
[ "$(grep -c '^# Query:' "$tmp/run/sets/random-4.txt")" -eq 4 ] || fail "random-4 size"
grep -q "Hello\." "$tmp/run/sets/random-4.txt" || fail "random-4 keeps the base demo"
echo "pool.sh: all good"
