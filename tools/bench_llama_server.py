#!/usr/bin/env python3
"""The URIAL workload of `icalign bench --workload urial` against llama.cpp's llama-server
(issue 5's comparison; a tool, not a test).

The requests are the ones icalign builds: `icalign bench --dump-prompts` writes each rendered
prompt (urial.txt + an MT-Bench first-turn question) with its token ids, and each is sent to
llama-server's /completion endpoint as those token ids (same vocabulary, so the same tokens,
BOS included; --send text sends the text instead), with n_predict = N, ignore_eos, greedy
(temperature 0), cache_prompt true, by K concurrent clients. The script starts llama-server
with the given settings, waits for /health, runs the requests, stops the server (SIGTERM to the
process it started) and reports: wall time (first request sent to last answer), generated
tokens, prompt tokens (tokens_evaluated), prompt tokens the server computed (timings.prompt_n)
and reused from its cache (timings.cache_n), aggregate generated tokens/s, and the server's peak
RSS.

Usage:
  tools/bench_llama_server.py -m MODEL.gguf [--icalign build/icalign]
      [--server /work/llama-build/bin/llama-server] [--limit 80] [-n 16] [--clients 8]
      [--parallel 8] [-c CTX] [--cache-reuse N] [--cache-ram MIB] [--kv-unified|--no-kv-unified]
      [-t 2] [--kv-type f32|f16] [--warm-first] [--json] [-- EXTRA llama-server ARGS]

  --prompts FILE   use a JSONL dump instead of running icalign (its --limit applies)
  --warm-first     send the first request alone before the others (llama-server then holds the
                   shared prefix in a slot / its RAM prompt cache before the other slots start;
                   icalign's radix cache shares it across concurrent sequences without this)
Without -c the context is parallel x (longest prompt + N + 64), rounded up to 256, so that every
slot holds a whole request whether or not the KV buffer is unified.
Exit status: 0 when every request succeeded, 1 otherwise, 2 on a setup failure.
"""
import argparse, http.client, json, os, signal, socket, subprocess, sys, tempfile, threading, time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def load_prompts(args, tmp):
    path = args.prompts
    if not path:
        path = os.path.join(tmp, "prompts.jsonl")
        cmd = [args.icalign, "bench", "--workload", "urial", "-m", args.model, "--limit",
               str(args.limit), "--dump-prompts", path]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            sys.exit("bench_llama_server: %s failed:\n%s" % (" ".join(cmd), r.stderr))
    ps = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    return ps[: args.limit]


def peak_rss_mib(pid):
    try:
        for line in open("/proc/%d/status" % pid):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def one_request(port, p, args):
    body = {"prompt": p["tokens"] if args.send == "tokens" else p["prompt"],
            "n_predict": args.tokens, "ignore_eos": True, "temperature": 0.0,
            "cache_prompt": True, "repeat_penalty": args.repeat_penalty,
            "repeat_last_n": -1, "stream": False}
    t0 = time.monotonic()
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=args.timeout)
        c.request("POST", "/completion", json.dumps(body), {"Content-Type": "application/json"})
        resp = c.getresponse()
        data = resp.read()
        c.close()
        if resp.status != 200:
            return {"ok": False, "error": "status %d: %s" % (resp.status, data[:300])}
        j = json.loads(data)
    except Exception as e:  # report, do not abort the run
        return {"ok": False, "error": repr(e)}
    t = j.get("timings", {})
    return {"ok": True, "latency": time.monotonic() - t0,
            "generated": j.get("tokens_predicted", t.get("predicted_n", 0)),
            "prompt": j.get("tokens_evaluated", 0), "computed": t.get("prompt_n", 0),
            "cached": t.get("cache_n", 0), "prompt_ms": t.get("prompt_ms", 0.0),
            "predicted_ms": t.get("predicted_ms", 0.0)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--icalign", default=os.path.join(ROOT, "build", "icalign"))
    ap.add_argument("--server", default="/work/llama-build/bin/llama-server")
    ap.add_argument("--prompts", help="JSONL from `icalign bench --dump-prompts`")
    ap.add_argument("--send", choices=["tokens", "text"], default="tokens")
    ap.add_argument("--limit", type=int, default=80)
    ap.add_argument("-n", "--tokens", type=int, default=16)
    ap.add_argument("--clients", type=int, default=8, help="concurrent requests (K)")
    ap.add_argument("--parallel", type=int, default=8, help="llama-server --parallel (slots)")
    ap.add_argument("-c", "--ctx", type=int, default=0)
    ap.add_argument("--cache-reuse", type=int, default=None)
    ap.add_argument("--cache-ram", type=int, default=None, help="MiB (-1 no limit, 0 off)")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--kv-unified", dest="kv_unified", action="store_const", const=True)
    g.add_argument("--no-kv-unified", dest="kv_unified", action="store_const", const=False)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--kv-type", default="f32", help="-ctk/-ctv (icalign's default is f32)")
    ap.add_argument("--repeat-penalty", type=float, default=1.15,
                    help="icalign bench's urial preset uses 1.15 (1 = off)")
    ap.add_argument("--warm-first", action="store_true")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    ap.add_argument("extra", nargs="*", help="after --: more llama-server arguments")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="bench-llama-server-")
    prompts = load_prompts(args, tmp)
    if not prompts:
        sys.exit("bench_llama_server: no prompts")
    longest = max(len(p["tokens"]) for p in prompts)
    ctx = args.ctx or (args.parallel * (longest + args.tokens + 64) + 255) // 256 * 256
    port = args.port or free_port()
    cmd = [args.server, "-m", args.model, "--host", "127.0.0.1", "--port", str(port),
           "-t", str(args.threads), "-tb", str(args.threads), "-c", str(ctx),
           "--parallel", str(args.parallel), "-ctk", args.kv_type, "-ctv", args.kv_type,
           "--no-warmup"]
    if args.cache_reuse is not None:
        cmd += ["--cache-reuse", str(args.cache_reuse)]
    if args.cache_ram is not None:
        cmd += ["--cache-ram", str(args.cache_ram)]
    if args.kv_unified is not None:
        cmd += ["--kv-unified" if args.kv_unified else "--no-kv-unified"]
    cmd += args.extra
    log_path = os.path.join(tmp, "server.log")
    log = open(log_path, "w")
    # SIGTERM (e.g. from timeout) unwinds through the finally below, which stops the server
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    srv = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    rc = 0
    try:
        deadline = time.monotonic() + 600
        while True:
            if srv.poll() is not None or time.monotonic() > deadline:
                log.flush()
                tail = open(log_path, errors="replace").read()[-3000:]
                print("bench_llama_server: llama-server did not come up; its log:\n" + tail,
                      file=sys.stderr)
                return 2
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/health")
                ok = c.getresponse().status == 200
                c.close()
                if ok:
                    break
            except OSError:
                pass
            time.sleep(0.5)

        results = [None] * len(prompts)
        t0 = time.monotonic()
        rest = range(len(prompts))
        if args.warm_first:
            results[0] = one_request(port, prompts[0], args)
            rest = range(1, len(prompts))
        with ThreadPoolExecutor(max_workers=args.clients) as ex:
            futs = {i: ex.submit(one_request, port, prompts[i], args) for i in rest}
            for i, f in futs.items():
                results[i] = f.result()
        wall = time.monotonic() - t0
        rss = peak_rss_mib(srv.pid)
    finally:
        srv.send_signal(signal.SIGTERM)
        try:
            srv.wait(timeout=30)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait()
        log.close()

    ok = [r for r in results if r and r["ok"]]
    bad = [r for r in results if not r or not r["ok"]]
    for r in bad[:5]:
        print("bench_llama_server: request failed: %s" % (r or {}).get("error"), file=sys.stderr)
    if bad:
        rc = 1
    gen = sum(r["generated"] for r in ok)
    prompt = sum(r["prompt"] for r in ok)
    computed = sum(r["computed"] for r in ok)
    cached = sum(r["cached"] for r in ok)
    out = {"server": "llama-server", "questions": len(prompts), "ok": len(ok),
           "failed": len(bad), "tokens": args.tokens, "clients": args.clients,
           "parallel": args.parallel, "ctx": ctx, "threads": args.threads,
           "warm_first": args.warm_first, "prompt_tokens": prompt, "prefill_computed": computed,
           "prefill_cached": cached, "hit_rate": round(cached / prompt, 4) if prompt else 0,
           "generated": gen, "wall_s": round(wall, 3),
           "gen_tok_s": round(gen / wall, 2) if wall > 0 else 0,
           "peak_rss_mib": round(rss, 1), "server_cmd": " ".join(cmd)}
    if args.json:
        print(json.dumps(out))
    else:
        print("server:            %s" % out["server_cmd"])
        print("workload:          urial, %d questions, %d tokens each, %d clients, %d slots%s"
              % (len(prompts), args.tokens, args.clients, args.parallel,
                 ", first request alone" if args.warm_first else ""))
        print("requests:          %d ok, %d failed" % (len(ok), len(bad)))
        print("prompt tokens:     %d (%d computed, %d from the cache, %.1f%% reused)"
              % (prompt, computed, cached, 100.0 * cached / prompt if prompt else 0))
        print("generated tokens:  %d in %.2f s wall (%.2f tok/s aggregate)"
              % (gen, wall, out["gen_tok_s"]))
        print("peak RSS (server): %.1f MiB" % rss)
    return rc


if __name__ == "__main__":
    sys.exit(main())
