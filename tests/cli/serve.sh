#!/bin/bash
# icalign serve on 127.0.0.1 (random port) with the stories260K fixture (context 128): greedy
# chat non-streaming == streaming reassembled, multi-turn prompt == URIAL's rendering
# (icalign prompt --conversation, seen through --log-content), /v1/completions == icalign
# generate, /v1/models, /health, OpenAI-shaped errors (bad JSON, missing messages, unknown role,
# too-large body, max_tokens beyond the context, wrong API key, 404, 405), SIGTERM exits 0.
set -u
bin=$1
shared=$2
model=$shared/fixtures/stories260K/stories260K.gguf
[ -f "$model" ] || { echo "skip: $model absent"; exit 77; }
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
    echo "--- server log"
    cat "$tmp/log"
    exit 1
}
printf 'test-key-123\n' >"$tmp/key"
"$bin" serve -m "$model" -c 128 --parallel 4 --demos none --port 0 --port-file "$tmp/port" \
    --api-key-file "$tmp/key" --max-body 4K --log-content 2>"$tmp/log" &
pid=$!
for _ in $(seq 600); do [ -s "$tmp/port" ] && break; sleep 0.1; done
[ -s "$tmp/port" ] || fail "server did not start"
port=$(cat "$tmp/port")
url=http://127.0.0.1:$port
auth="Authorization: Bearer test-key-123"
post() { # path body -> body on stdout, status in $tmp/status
    curl -s -o "$tmp/body" -w '%{http_code}' -H "$auth" -H 'Content-Type: application/json' \
        "$url$1" --data-binary "$2" >"$tmp/status"
    cat "$tmp/body"
}

# health and models
[ "$(curl -s -o /dev/null -w '%{http_code}' "$url/health")" = 200 ] || fail "/health"
curl -s -H "$auth" "$url/v1/models" | grep -q '"id":"stories260K"' || fail "/v1/models"

# chat: greedy, non-streaming vs streaming
q='{"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":24,"temperature":0'
post /v1/chat/completions "$q}" >"$tmp/chat.json"
[ "$(cat "$tmp/status")" = 200 ] || fail "chat status $(cat "$tmp/status")"
curl -sN -H "$auth" "$url/v1/chat/completions" \
    --data-binary "$q,\"stream\":true,\"stream_options\":{\"include_usage\":true}}" >"$tmp/chat.sse"
python3 - "$tmp/chat.json" "$tmp/chat.sse" <<'PY' || fail "stream differs from non-stream"
import json, sys
full = json.load(open(sys.argv[1]))
ans = full["choices"][0]["message"]["content"]
assert full["object"] == "chat.completion" and full["choices"][0]["message"]["role"] == "assistant"
u = full["usage"]
assert u["prompt_tokens"] > 0 and u["completion_tokens"] > 0
assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
assert "cached_tokens" in u["prompt_tokens_details"]
events = [l[6:] for l in open(sys.argv[2]).read().split("\n") if l.startswith("data: ")]
assert events[-1] == "[DONE]", events[-1]
text, usage, finish = "", None, None
for e in events[:-1]:
    o = json.loads(e)
    assert o["object"] == "chat.completion.chunk"
    if o.get("usage"):
        usage = o["usage"]
    for c in o["choices"]:
        text += c["delta"].get("content") or ""
        finish = c["finish_reason"] or finish
assert text == ans, (text, ans)
assert finish == full["choices"][0]["finish_reason"]
assert usage and usage["completion_tokens"] == u["completion_tokens"]
assert usage["prompt_tokens_details"]["cached_tokens"] > 0  # the second request reuses the prefix
print("chat answer:", repr(ans))
PY

# multi-turn: the rendered prompt is URIAL's two-turn rendering
post /v1/chat/completions '{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello there"},{"role":"user","content":"Tell me more"}],"max_tokens":8}' >/dev/null
[ "$(cat "$tmp/status")" = 200 ] || fail "multi-turn status $(cat "$tmp/status")"
printf '["Hi", "Hello there", "Tell me more"]' >"$tmp/conv.json"
"$bin" prompt --demos none --conversation "$tmp/conv.json" >"$tmp/want.txt" || fail "icalign prompt"
python3 - "$tmp/log" "$tmp/want.txt" <<'PY' || fail "multi-turn prompt differs from URIAL's rendering"
import re, sys
log = open(sys.argv[1], "rb").read()
want = open(sys.argv[2], "rb").read()
found = []
for m in re.finditer(rb"=== prompt chatcmpl-[0-9a-f]+ \((\d+) bytes\) ===\n", log):
    n = int(m.group(1))
    found.append(log[m.end():m.end() + n])
assert want in found, (want, found)
PY

# /v1/completions == icalign generate (greedy, no penalty)
post /v1/completions '{"prompt":"Once upon a time","max_tokens":20,"temperature":0,"repetition_penalty":1}' >"$tmp/cmpl.json"
[ "$(cat "$tmp/status")" = 200 ] || fail "completions status $(cat "$tmp/status")"
"$bin" generate -m "$model" -c 128 -p "Once upon a time" -n 20 -q >"$tmp/gen.txt" 2>/dev/null ||
    fail "icalign generate"
python3 - "$tmp/cmpl.json" "$tmp/gen.txt" <<'PY' || fail "/v1/completions differs from generate"
import json, sys
o = json.load(open(sys.argv[1]))
want = open(sys.argv[2], encoding="utf-8").read()
if want.endswith("\n"):  # generate ends its output with a newline
    want = want[:-1]
got = o["choices"][0]["text"]
assert o["object"] == "text_completion"
assert got == want, (got, want)
PY

# errors: status and an OpenAI-shaped body
check_error() { # expected-status label
    [ "$(cat "$tmp/status")" = "$1" ] || fail "$2: status $(cat "$tmp/status"), want $1"
    python3 -c '
import json, sys
e = json.load(open(sys.argv[1]))["error"]
assert e["message"] and e["type"] and "code" in e, e
if len(sys.argv) > 2:
    assert e.get("param") == sys.argv[2], e
' "$tmp/body" ${3:+"$3"} || fail "$2: not an OpenAI error body: $(cat "$tmp/body")"
}
post /v1/chat/completions '{"messages": [' >/dev/null
check_error 400 "bad JSON"
post /v1/chat/completions '{"model":"x"}' >/dev/null
check_error 400 "missing messages" messages
post /v1/chat/completions '{"messages":[{"role":"wizard","content":"x"}]}' >/dev/null
check_error 400 "unknown role" "messages[0].role"
post /v1/chat/completions '{"messages":[{"role":"user","content":"x"}],"max_tokens":500}' >/dev/null
check_error 400 "max_tokens beyond the context" max_tokens
grep -q context_length_exceeded "$tmp/body" || fail "context error code"
python3 -c 'print("{\"messages\":[{\"role\":\"user\",\"content\":\"" + "a" * 8000 + "\"}]}")' >"$tmp/big.json"
post /v1/chat/completions "@$tmp/big.json" >/dev/null
check_error 413 "too-large body"
curl -s -o "$tmp/body" -w '%{http_code}' -H "$auth" -H 'Transfer-Encoding: chunked' \
    "$url/v1/chat/completions" --data-binary "@$tmp/big.json" >"$tmp/status"
check_error 413 "too-large chunked body"
curl -s -o "$tmp/body" -w '%{http_code}' -H 'Authorization: Bearer wrong' "$url/v1/models" \
    >"$tmp/status"
check_error 401 "wrong API key"
curl -s -o "$tmp/body" -w '%{http_code}' "$url/v1/chat/completions" -d '{}' >"$tmp/status"
check_error 401 "missing API key"
curl -s -o "$tmp/body" -w '%{http_code}' -H "$auth" "$url/v1/nothing" >"$tmp/status"
check_error 404 "unknown URL"
curl -s -o "$tmp/body" -w '%{http_code}' -H "$auth" "$url/v1/chat/completions" >"$tmp/status"
check_error 405 "GET on a POST endpoint"
grep -q test-key-123 "$tmp/log" && fail "the API key appears in the log"

# concurrent requests share one batch (continuous batching): each answer equals the answer
# the same request gets alone
for i in 1 2 3 4; do
    curl -s -H "$auth" "$url/v1/completions" -H 'Content-Type: application/json' \
        -d "{\"prompt\": \"Once upon a time, Lily saw $i\", \"max_tokens\": 24, \"temperature\": 0}" \
        >"$tmp/alone$i.json"
done
for i in 1 2 3 4; do
    curl -s -H "$auth" "$url/v1/completions" -H 'Content-Type: application/json' \
        -d "{\"prompt\": \"Once upon a time, Lily saw $i\", \"max_tokens\": 24, \"temperature\": 0}" \
        >"$tmp/conc$i.json" &
done
wait_jobs() { for j in $(jobs -p); do [ "$j" = "$pid" ] || wait "$j"; done; }
wait_jobs
for i in 1 2 3 4; do
    python3 - "$tmp/alone$i.json" "$tmp/conc$i.json" <<'PY' || fail "concurrent answer $i differs"
import json, sys
a = json.load(open(sys.argv[1]))["choices"][0]["text"]
b = json.load(open(sys.argv[2]))["choices"][0]["text"]
sys.exit(0 if a == b and a else 1)
PY
done

# still serving, then a graceful stop
[ "$(curl -s -o /dev/null -w '%{http_code}' "$url/health")" = 200 ] || fail "/health after errors"
kill -TERM "$pid"
wait "$pid"
rc=$?
pid=
[ $rc = 0 ] || fail "exit status $rc after SIGTERM"
grep -q "stopped" "$tmp/log" || fail "no stop message"
echo "serve: ok"
