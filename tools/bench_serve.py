#!/usr/bin/env python3
"""Load benchmark for `icalign serve` (a tool, not a test).

Starts `icalign serve` on a model (default: a synthetic TinyLlama-1.1B Q4_0, made with
`icalign synth` when absent) with a URIAL-style shared prefix (--demos), then runs C concurrent
streaming chat clients for N requests in all (each a different MT-Bench turn-1 question) and
reports errors, aggregate generated tokens/s, p50/p95 time to first token and the server's peak
RSS (VmHWM from /proc). Three server runs:

  nocache  no --prefix-cache
  cold     --prefix-cache DIR, DIR empty (the run fills it)
  warm     the server restarted on the same DIR: the shared prefix comes from disk

Usage: tools/bench_serve.py [--bin build/icalign] [--model /tmp/tl.gguf] [--demos FILE]
                            [--clients 32] [--requests 64] [--max-tokens 32] [-c 4096]
                            [--runs nocache,cold,warm] [--json OUT]
Loopback only; exits 1 when any request failed. On a machine shared with other jobs pass
-t 1: the engine's thread pool spin-waits for descheduled threads (measured: ~90 % of the
server's CPU time in pool_run/worker with -t 2 at load average 5 on 2 cores).
"""
import argparse, http.client, json, os, shutil, signal, subprocess, sys, tempfile, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100
    i = int(k)
    return xs[i] if i + 1 >= len(xs) else xs[i] + (xs[i + 1] - xs[i]) * (k - i)


def questions(shared, n):
    qs = []
    path = os.path.join(shared, "data", "mt_bench", "question.jsonl")
    if os.path.exists(path):
        for line in open(path, encoding="utf-8"):
            qs.append(json.loads(line)["turns"][0])
    if not qs:
        qs = ["Write a short note about topic %d." % i for i in range(80)]
    return [qs[i % len(qs)] if i < len(qs) else "%s (variant %d)" % (qs[i % len(qs)], i)
            for i in range(n)]


def one_request(port, question, max_tokens, timeout):
    """Streams one chat request. Returns dict(ok, ttft, total, tokens, error)."""
    body = json.dumps({"model": "bench", "messages": [{"role": "user", "content": question}],
                       "max_tokens": max_tokens, "stream": True,
                       "stream_options": {"include_usage": True}})
    t0 = time.monotonic()
    r = {"ok": False, "ttft": None, "total": None, "tokens": 0, "cached": 0, "error": None}
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        resp = c.getresponse()
        if resp.status != 200:
            r["error"] = "status %d: %s" % (resp.status, resp.read()[:200])
            return r
        done = False
        for raw in resp:
            line = raw.decode("utf-8").rstrip("\n")
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                done = True
                break
            o = json.loads(data)
            if "error" in o:
                r["error"] = "error event: %s" % o["error"]
                return r
            if o.get("usage"):
                r["tokens"] = o["usage"]["completion_tokens"]
                r["cached"] = o["usage"].get("prompt_tokens_details", {}).get("cached_tokens", 0)
            for ch in o.get("choices", []):
                if r["ttft"] is None and ch.get("delta", {}).get("content"):
                    r["ttft"] = time.monotonic() - t0
        r["total"] = time.monotonic() - t0
        if r["ttft"] is None:  # nothing visible streamed (all held back): first byte = end
            r["ttft"] = r["total"]
        r["ok"] = done
        if not done:
            r["error"] = "no [DONE]"
        c.close()
    except Exception as e:  # noqa: BLE001 - every failure is an error of the run
        r["error"] = repr(e)
    return r


def peak_rss_kib(pid):
    try:
        for line in open("/proc/%d/status" % pid):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def start_server(a, extra, log):
    portfile = tempfile.mktemp(prefix="bench_serve_port_")
    cmd = [a.bin, "serve", "-m", a.model, "-c", str(a.ctx), "--demos", a.demos,
           "--parallel", str(a.parallel), "--queue", str(a.requests), "--port", "0",
           "--port-file", portfile, "-q"] + extra
    if a.threads:
        cmd += ["-t", str(a.threads)]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stderr=log)
    while not (os.path.exists(portfile) and os.path.getsize(portfile) > 0):
        if p.poll() is not None:
            raise SystemExit("server exited (%d): %s" % (p.returncode, " ".join(cmd)))
        if time.monotonic() - t0 > 600:
            p.kill()
            raise SystemExit("server did not start")
        time.sleep(0.05)
    port = int(open(portfile).read())
    os.unlink(portfile)
    return p, port, time.monotonic() - t0, cmd


def run_load(a, name, extra, log):
    p, port, startup, cmd = start_server(a, extra, log)
    qs = questions(a.shared, a.requests)
    results = [None] * a.requests
    nxt = [0]
    mu = threading.Lock()

    def client():
        while True:
            with mu:
                i = nxt[0]
                nxt[0] += 1
            if i >= a.requests:
                return
            results[i] = one_request(port, qs[i], a.max_tokens, a.timeout)

    t0 = time.monotonic()
    ths = [threading.Thread(target=client) for _ in range(a.clients)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    wall = time.monotonic() - t0
    rss = peak_rss_kib(p.pid)
    p.send_signal(signal.SIGTERM)
    rc = p.wait(timeout=120)
    ok = [r for r in results if r["ok"]]
    errors = [r["error"] for r in results if not r["ok"]]
    tokens = sum(r["tokens"] for r in ok)
    ttft = [r["ttft"] for r in ok]
    first = min(ttft) if ttft else float("nan")
    row = {"run": name, "requests": a.requests, "clients": a.clients, "errors": len(errors),
           "wall_s": round(wall, 2), "tokens": tokens, "tok_s": round(tokens / wall, 1),
           "ttft_first_s": round(first, 2), "ttft_p50_s": round(pct(ttft, 50), 2),
           "ttft_p95_s": round(pct(ttft, 95), 2),
           "cached_tokens_mean": round(sum(r["cached"] for r in ok) / max(1, len(ok)), 1),
           "startup_s": round(startup, 2), "peak_rss_mib": round(rss / 1024, 1),
           "exit": rc, "cmd": " ".join(cmd)}
    for e in errors[:5]:
        print("  error:", e, file=sys.stderr)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "icalign"))
    ap.add_argument("--shared", default=os.environ.get("ICALIGN_SHARED",
                                                        os.path.join(ROOT, "..", "shared")))
    ap.add_argument("--model", default="/tmp/tl.gguf")
    ap.add_argument("--demos", default=None, help="default: SHARED/data/urial/.../urial.txt")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--parallel", type=int, default=32)
    ap.add_argument("-c", "--ctx", type=int, default=4096)
    ap.add_argument("-t", "--threads", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--runs", default="nocache,cold,warm")
    ap.add_argument("--cache-dir", default=None, help="default: a temporary directory")
    ap.add_argument("--json", default=None, help="write the rows here")
    a = ap.parse_args()
    if a.demos is None:
        a.demos = os.path.join(a.shared, "data", "urial", "tml-epfl_icl-alignment",
                               "urial_prompts", "urial.txt")
    if not os.path.exists(a.model):
        print("making %s (icalign synth --preset tinyllama-1.1b --type q4_0)" % a.model,
              file=sys.stderr)
        subprocess.run([a.bin, "synth", "--preset", "tinyllama-1.1b", "--type", "q4_0", "-o",
                        a.model], check=True)
    cache = a.cache_dir or tempfile.mkdtemp(prefix="bench_serve_cache_")
    log = open(os.path.join(tempfile.gettempdir(), "bench_serve.log"), "ab")
    rows = []
    try:
        for name in a.runs.split(","):
            extra = [] if name == "nocache" else ["--prefix-cache", cache]
            if name == "cold":
                shutil.rmtree(cache, ignore_errors=True)
                os.makedirs(cache)
            row = run_load(a, name, extra, log)
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        if a.cache_dir is None:
            shutil.rmtree(cache, ignore_errors=True)
    print("\n| run | requests / clients | errors | wall s | generated tokens | tok/s | "
          "TTFT first / p50 / p95 s | mean cached prompt tokens | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %s | %d / %d | %d | %.1f | %d | %.1f | %.2f / %.2f / %.2f | %.0f | %.0f |" % (
            r["run"], r["requests"], r["clients"], r["errors"], r["wall_s"], r["tokens"],
            r["tok_s"], r["ttft_first_s"], r["ttft_p50_s"], r["ttft_p95_s"],
            r["cached_tokens_mean"], r["peak_rss_mib"]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    sys.exit(1 if any(r["errors"] or r["exit"] for r in rows) else 0)


if __name__ == "__main__":
    main()
