#!/usr/bin/env bash
# icalign answer against an OpenAI-compatible server (a fake one in python3 on 127.0.0.1):
# 8 requests in flight at once, every answer stored exactly once; the server dies in the
# middle of the run, and a rerun against a new server completes without recomputing or
# duplicating anything that was stored. Usage: answer_remote.sh ICALIGN SHARED_DIR
set -u
bin=$1
command -v python3 >/dev/null || { echo "skip: python3 absent"; exit 77; }
tmp=$(mktemp -d)
spid=
trap '[ -n "$spid" ] && kill $spid 2>/dev/null; rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

cat >"$tmp/fake.py" <<'PY'
import json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
port_file, log, die_after = sys.argv[1], sys.argv[2], int(sys.argv[3])
lock = threading.Lock()
state = {"n": 0, "inflight": 0, "max": 0}
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with lock:
            state["n"] += 1
            n = state["n"]
            state["inflight"] += 1
            state["max"] = max(state["max"], state["inflight"])
        if die_after and n > die_after:
            # the server "dies": no answer, connection dropped
            self.close_connection = True
            return
        time.sleep(0.3)  # slow enough for requests to overlap
        prompt = body.get("prompt", "")
        text = "answer to %d chars" % len(prompt)
        out = json.dumps({"id": "x", "object": "text_completion", "model": body.get("model"),
                          "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
                          "usage": {"prompt_tokens": 10, "completion_tokens": 4,
                                    "total_tokens": 14}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
        with lock:
            state["inflight"] -= 1
            open(log, "a").write(json.dumps({"n": n, "max": state["max"]}) + "\n")
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
open(port_file, "w").write(str(s.server_address[1]))
s.serve_forever()
PY

start() { # $1 = die after N requests (0 = never)
    rm -f "$tmp/port"
    python3 "$tmp/fake.py" "$tmp/port" "$tmp/log" "$1" &
    spid=$!
    for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.05; done
    [ -s "$tmp/port" ] || fail "fake server did not start"
    url=http://127.0.0.1:$(cat "$tmp/port")
}

python3 -c '
import json
for i in range(24):
    print(json.dumps({"id": "q%02d" % i, "turns": ["Question number %d?" % i]}))' >"$tmp/q.jsonl"
common=(--bench "$tmp/q.jsonl" --demos none -m fake-model --concurrency 8 --timeout 5
        --out "$tmp/run" --model-id fake -q)

# the server stops answering after 10 requests: those 10 are stored, the rest fail
start 10
"$bin" answer --base-url "$url" "${common[@]}" 2>"$tmp/err1"
[ $? -ne 0 ] || fail "a run with a dead server reported success"
kill $spid; wait $spid 2>/dev/null; spid=
stored=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(
    "select count(*) from generations").fetchone()[0])' "$tmp/run/icalign.db")
[ "$stored" -ge 8 ] && [ "$stored" -le 10 ] || fail "stored $stored answers before the server died"
grep -q "127.0.0.1" "$tmp/err1" || fail "errors do not name the endpoint: $(head -3 "$tmp/err1")"

# a new server: the rerun computes only what is missing
start 0
"$bin" answer --base-url "$url" "${common[@]}" 2>"$tmp/err2" || { cat "$tmp/err2"; fail "rerun"; }
python3 - "$tmp/run/icalign.db" "$tmp/run/model_answer/fake.jsonl" "$tmp/log" "$stored" <<'PY' ||
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
rows = db.execute("select item_id, turn, count(*) from generations group by item_id, turn").fetchall()
assert len(rows) == 24, rows                      # every question answered
assert all(r[2] == 1 for r in rows), rows          # exactly once
ans = [json.loads(l) for l in open(sys.argv[2])]
assert len(ans) == 24 and all(a["choices"][0]["turns"][0].startswith("answer to") for a in ans)
log = [json.loads(l) for l in open(sys.argv[3])]
served_second = [l for l in log if True]
assert max(l["max"] for l in log) >= 4, "requests did not overlap"
PY
    fail "store after resume"
echo "answer_remote: ok"
