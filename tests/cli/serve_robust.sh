#!/bin/bash
# icalign serve under 1,000 malformed or truncated requests (stories260K fixture, 127.0.0.1):
# fuzzed JSON bodies, valid JSON with invalid fields, bodies shorter than their Content-Length,
# garbage request lines and headers, slowloris-style stalled headers and bodies. Each must get a
# 4xx response or a closed connection (never 2xx/5xx, never a stall past the idle timeout), the
# server must answer /health while stalled connections are open, and afterwards it still serves
# /health and a completion. Seeded (ROBUST_SEED), bounded (~10-20 s).
set -u
bin=$1
shared=$2
model=$shared/fixtures/stories260K/stories260K.gguf
[ -f "$model" ] || { echo "skip: $model absent"; exit 77; }
command -v python3 >/dev/null || { echo "skip: python3 absent"; exit 77; }
tmp=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*"
    echo "--- server log (tail)"
    tail -n 40 "$tmp/log"
    exit 1
}
"$bin" serve -m "$model" -c 128 --parallel 2 --demos none --port 0 --port-file "$tmp/port" \
    --max-body 16K --idle-timeout 2 2>"$tmp/log" &
pid=$!
for _ in $(seq 600); do [ -s "$tmp/port" ] && break; sleep 0.1; done
[ -s "$tmp/port" ] || fail "server did not start"

timeout 120 python3 - "$(cat "$tmp/port")" "${ROBUST_SEED:-8}" <<'PY' || fail "robustness"
import json, random, socket, sys, threading, time
from concurrent.futures import ThreadPoolExecutor

PORT, SEED = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(SEED)
IDLE = 2.0  # --idle-timeout

def connect():
    s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s

def read_response(s, limit):
    """Status code of the response, or None if the server closed without one."""
    s.settimeout(limit)
    buf = b""
    try:
        while b"\r\n\r\n" not in buf:
            d = s.recv(65536)
            if not d:
                break
            buf += d
        if b"\r\n\r\n" in buf:
            head, _, body = buf.partition(b"\r\n\r\n")
            cl = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
            if cl:
                n = int(cl[0].split(b":", 1)[1])
                while len(body) < n:
                    d = s.recv(65536)
                    if not d:
                        break
                    body += d
    except socket.timeout:
        raise AssertionError("stalled: no response and no close within %.0f s" % limit)
    except OSError:  # reset by the server
        pass
    if not buf:
        return None
    line = buf.split(b"\r\n", 1)[0].split(b" ")
    assert len(line) >= 2 and line[0].startswith(b"HTTP/1."), buf[:200]
    return int(line[1])

def request(raw, shut=True, limit=10):
    s = connect()
    try:
        try:
            s.sendall(raw)
            if shut:
                s.shutdown(socket.SHUT_WR)
        except OSError:  # the server closed first: read what it answered, if anything
            pass
        return read_response(s, limit)
    finally:
        s.close()

def http(method, path, body=b"", headers=None, cl=None):
    h = {"Host": "127.0.0.1", "Connection": "close", "Content-Type": "application/json"}
    h.update(headers or {})
    if method == "POST" and "Transfer-Encoding" not in h:
        h["Content-Length"] = str(len(body) if cl is None else cl)
    return (f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
            + "\r\n").encode() + body

# request templates, with a max_tokens beyond the context (128): json-c accepts a little more
# than Python's json (raw control characters in strings), so a mutated body that json-c still
# parses is refused as well
VALID = [
    {"messages": [{"role": "user", "content": "Once upon a time"}], "max_tokens": 5000},
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                  {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "More"}],
     "max_tokens": 5000, "temperature": 0.5, "stop": ["x"], "stream": True},
    {"prompt": "Once upon a time", "max_tokens": 5000, "temperature": 0, "seed": 3},
]

def mutate(b):
    b = bytearray(b)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        i = rng.randrange(len(b) + 1)
        if op == 0 and b:
            del b[min(i, len(b) - 1)]
        elif op == 1:
            b[i:i] = bytes([rng.randrange(256)])
        elif op == 2 and b:
            b[min(i, len(b) - 1)] ^= 1 << rng.randrange(8)
        elif op == 3:
            b = b[:i]
        elif op == 4:
            b[i:i] = rng.choice([b"{", b"}", b"[", b"]", b",", b":", b'"', b"\\", b"\\u12",
                                 b"\x00", b"\xff\xfe", b"null", b"1e999", b"-"])
        else:
            j = rng.randrange(len(b) + 1)
            b[i:i] = b[min(i, j):max(i, j)][:2000]
    return bytes(b)

def invalid(b):
    try:
        json.loads(b, strict=False)
        return False
    except Exception:
        return True

# valid JSON, invalid request: each is a 400
deep = "[" * 5000 + "]" * 5000
BAD_FIELDS = [
    '{"messages": 5}', '{"messages": []}', '{"messages": [{"role": "wizard", "content": "x"}]}',
    '{"messages": [{"role": "user", "content": 7}]}', '{"messages": [{"content": "x"}]}',
    '{"messages": [{"role": "assistant", "content": "x"}]}',
    '{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}',
    '{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}',
    '{"messages": [{"role": "user", "content": "x"}], "temperature": 9}',
    '{"messages": [{"role": "user", "content": "x"}], "max_tokens": -1}',
    '{"messages": [{"role": "user", "content": "x"}], "max_tokens": 1000000000000}',
    '{"messages": [{"role": "user", "content": "x"}], "max_tokens": 5000}',
    '{"messages": [{"role": "user", "content": "x"}], "n": 3}',
    '{"messages": [{"role": "user", "content": "x"}], "top_p": 2}',
    '{"messages": [{"role": "user", "content": "x"}], "seed": -4}',
    '{"messages": [{"role": "user", "content": "x"}], "stop": ' + json.dumps(["s"] * 17) + '}',
    '{"messages": [{"role": "user", "content": "x"}], "presence_penalty": 1e999}',
    '{"messages": [{"role": "user", "content": "' + "a" * 600 + '"}], "max_tokens": 8}',
    '[]', '"x"', '17', 'null', '{}', deep, '{"messages": ' + deep + '}',
]
BAD_FIELDS_CMPL = ['{"prompt": []}', '{"prompt": 3}', '{"max_tokens": 3}',
                   '{"prompt": "x", "max_tokens": 99999}', '{"prompt": "x", "top_k": "a"}']

GARBAGE = [
    b"\r\n\r\n", b"GET\r\n\r\n", b"GET /health\r\n\r\n", b"GET /health HTTP/1.1 extra\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\n{}}\r\n0\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nbad header line\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 200000 + b"\r\n\r\n",
    b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(3000)) + b"\r\n",
    b"\x00\x01\x02\x03 / HTTP/1.1\r\n\r\n", b"GET /\x00health HTTP/1.1\r\nHost: x\r\n\r\n",
    b"BREW /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\r\n",
    b"DELETE /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /v1/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64),  # a TLS ClientHello
]

def garbage_line():
    if rng.random() < 0.5:
        return rng.choice(GARBAGE)
    n = rng.randint(1, 300)
    b = bytes(rng.choice(b"GETPOST /\r\n:HTP1.\x00\xff azAZ09{}\"") for _ in range(n))
    return b + rng.choice([b"", b"\r\n", b"\r\n\r\n"])

cases = []
while len([c for c in cases if c[0] == "fuzz"]) < 350:
    body = mutate(json.dumps(rng.choice(VALID)).encode())
    if invalid(body):
        path = rng.choice(["/v1/chat/completions", "/v1/completions"])
        cases.append(("fuzz", http("POST", path, body)))
for _ in range(150):
    if rng.random() < 0.8:
        cases.append(("fields", http("POST", "/v1/chat/completions", rng.choice(BAD_FIELDS).encode())))
    else:
        cases.append(("fields", http("POST", "/v1/completions", rng.choice(BAD_FIELDS_CMPL).encode())))
for _ in range(150):  # shorter than Content-Length, then the client stops sending (EOF)
    body = json.dumps(rng.choice(VALID)).encode()
    cut = rng.randrange(len(body))
    cases.append(("truncated", http("POST", "/v1/chat/completions", body[:cut],
                                    cl=len(body) + rng.randint(0, 5000))))
for _ in range(250):
    cases.append(("garbage", garbage_line()))
rng.shuffle(cases)

stats = {}
def run(case):
    kind, raw = case
    try:
        st = request(raw)
    except AssertionError as e:
        raise AssertionError(f"{kind}: {e}: {raw[:120]!r}")
    assert st is None or 400 <= st < 500, f"{kind}: status {st} for {raw[:160]!r}"
    return kind, st

t0 = time.time()
with ThreadPoolExecutor(8) as ex:
    for kind, st in ex.map(run, cases):
        stats.setdefault(kind, {}).setdefault(st, 0)
        stats[kind][st] += 1

# slowloris: 100 connections (two waves of 50) stall in the headers or the body; the server
# keeps answering others meanwhile and drops the stalled ones after the idle timeout
SLOW = [b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Le",
        b"GET /health HTTP/1.1\r\nHo",
        b"GET /v1/mod",
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"prompt\": ",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"me"]
slow_closed = 0
for wave in range(2):
    socks = []
    for i in range(50):
        s = connect()
        s.sendall(rng.choice(SLOW))
        socks.append(s)
    ts = time.time()
    assert request(http("GET", "/health"), shut=False) == 200, "/health while stalled"
    assert time.time() - ts < 1.5, "/health slow while connections stall"
    for s in socks:
        try:
            st = read_response(s, IDLE + 8)
        except AssertionError as e:
            raise AssertionError(f"slowloris: {e}")
        assert st is None or 400 <= st < 500, f"slowloris: status {st}"
        slow_closed += 1
        s.close()
    assert time.time() - ts < IDLE + 8
stats["slowloris"] = {"closed or 4xx": slow_closed}
n = sum(sum(v.values()) for v in stats.values())
assert n == 1000, n
print(f"{n} malformed requests in {time.time() - t0:.1f} s:", json.dumps(
    {k: {str(s): c for s, c in v.items()} for k, v in stats.items()}))
PY

kill -0 "$pid" 2>/dev/null || fail "the server died"
url=http://127.0.0.1:$(cat "$tmp/port")
python3 - "$url" <<'PY' || fail "not serving after the malformed requests"
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/health", timeout=30) as r:
    assert r.status == 200 and json.load(r)["status"] == "ok"
req = urllib.request.Request(sys.argv[1] + "/v1/completions",
                             json.dumps({"prompt": "Once upon a time", "max_tokens": 8}).encode(),
                             {"Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=60) as r:
    o = json.load(r)
    assert r.status == 200 and o["choices"][0]["text"] and o["usage"]["completion_tokens"] > 0, o
PY
kill -TERM "$pid"
wait "$pid"
rc=$?
pid=
[ $rc = 0 ] || fail "exit status $rc after SIGTERM"
echo "serve_robust: ok"
