#!/bin/bash
# One code path: the server's greedy chat answer to an MT-Bench question equals `icalign answer`'s
# answer for it (stories260K fixture, -c 1024, --demos none, 16 new tokens, urial preset), for
# turn 1 and for turn 2 (the history is the question, the model's own cleaned turn-1 answer and
# the second question, as answer renders MT-Bench turn 2).
set -u
bin=$1
shared=$2
model=$shared/fixtures/stories260K/stories260K.gguf
questions=$shared/data/mt_bench/question.jsonl
[ -f "$model" ] || { echo "skip: $model absent"; exit 77; }
[ -f "$questions" ] || { echo "skip: mt_bench data absent"; exit 77; }
command -v python3 >/dev/null || { echo "skip: python3 absent"; exit 77; }
command -v curl >/dev/null || { echo "skip: curl absent"; exit 77; }
tmp=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*"
    [ -f "$tmp/log" ] && { echo "--- server log"; cat "$tmp/log"; }
    exit 1
}
common=(-m "$model" -c 1024 --demos none)

# the second MT-Bench question (both turns) as a generic question file
sed -n 2p "$questions" >"$tmp/q.jsonl"
"$bin" answer --bench "$tmp/q.jsonl" "${common[@]}" --max-tokens 16 --model-id ref \
    --out "$tmp/run" -q 2>"$tmp/err" || { cat "$tmp/err"; fail "icalign answer"; }

"$bin" serve "${common[@]}" --parallel 2 --port 0 --port-file "$tmp/port" -q 2>"$tmp/log" &
pid=$!
for _ in $(seq 600); do [ -s "$tmp/port" ] && break; sleep 0.1; done
[ -s "$tmp/port" ] || fail "server did not start"
url=http://127.0.0.1:$(cat "$tmp/port")

python3 - "$tmp/q.jsonl" "$tmp/run/model_answer/ref.jsonl" "$url" <<'PY' || fail "server != answer"
import json, sys, urllib.request
q = json.loads(open(sys.argv[1]).read())
ref = json.loads(open(sys.argv[2]).read().splitlines()[0])
want = ref["choices"][0]["turns"]
assert ref["question_id"] == q["question_id"] and len(want) == 2, ref

def chat(messages):
    body = json.dumps({"model": "x", "messages": messages, "max_tokens": 16}).encode()
    req = urllib.request.Request(sys.argv[3] + "/v1/chat/completions", body,
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)["choices"][0]["message"]["content"]

t1 = chat([{"role": "user", "content": q["turns"][0]}])
assert t1 == want[0], ("turn 1", t1, want[0])
t2 = chat([{"role": "user", "content": q["turns"][0]}, {"role": "assistant", "content": t1},
           {"role": "user", "content": q["turns"][1]}])
assert t2 == want[1], ("turn 2", t2, want[1])
print("turn 1:", repr(t1), "turn 2:", repr(t2))
PY
kill -TERM "$pid"
wait "$pid"
rc=$?
pid=
[ $rc = 0 ] || fail "exit status $rc after SIGTERM"
echo "serve_answer: ok"
