#!/bin/sh
# Recorded check (docs/BACKENDS.md): greedy completions through the remote
# backend against llama.cpp's llama-server equal the embedded engine's on the
# same model. Not a unit test: it needs a llama-server built outside this
# repository.
#
# Usage: tools/check_llama_server.sh ICALIGN LLAMA_SERVER MODEL.gguf [PORT]
#   e.g. tools/check_llama_server.sh build/icalign /work/llama-build/bin/llama-server \
#            ../shared/fixtures/stories260K/stories260K.gguf 18080
# Exit status: 0 all equal, 1 a difference, 2 setup failure.
set -u
icalign=$1; server=$2; model=$3; port=${4:-18080}
url="http://127.0.0.1:$port"
tmp=$(mktemp -d)
# F32 KV cache and no flash attention, as the embedded engine computes; one
# slot so that every request sees the same cache layout. SERVER_FLAGS
# replaces these (e.g. SERVER_FLAGS="-np 1" for the server's defaults).
flags=${SERVER_FLAGS:--c 512 -np 1 -ctk f32 -ctv f32 -fa off}
# shellcheck disable=SC2086
"$server" -m "$model" --host 127.0.0.1 --port "$port" $flags --no-warmup >"$tmp/server.log" 2>&1 &
spid=$!
trap 'kill $spid 2>/dev/null; wait $spid 2>/dev/null; rm -rf "$tmp"' EXIT INT TERM
i=0
until curl -sf "$url/health" >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 120 ] || ! kill -0 $spid 2>/dev/null; then
        echo "llama-server did not come up; its log:" >&2
        tail -20 "$tmp/server.log" >&2
        exit 2
    fi
    sleep 0.5
done

fail=0
check() { # label, then the flags both sides share
    label=$1; shift
    "$icalign" generate -m "$model" -q "$@" >"$tmp/local.txt" 2>"$tmp/local.err" || {
        echo "local generate failed:"; cat "$tmp/local.err"; exit 2; }
    for mode in plain stream; do
        extra=; [ $mode = stream ] && extra=--stream
        "$icalign" complete --base-url "$url" -m stories "$@" $extra >"$tmp/remote.txt" \
            2>"$tmp/remote.err" || { echo "remote complete failed:"; cat "$tmp/remote.err"; exit 2; }
        if cmp -s "$tmp/local.txt" "$tmp/remote.txt"; then
            echo "same  [$mode] $label"
        else
            echo "DIFF  [$mode] $label"
            echo "  local : $(head -c 300 "$tmp/local.txt" | tr '\n' '|')"
            echo "  remote: $(head -c 300 "$tmp/remote.txt" | tr '\n' '|')"
            fail=1
        fi
    done
}

for p in "Once upon a time" "Lily and Tom went to the park" "The little dog was sad because" \
         "One day, a big bird" "Mom said"; do
    check "greedy -n 64: $p" -p "$p" -n 64
done
# repetition penalty: HF semantics over prompt + output locally; llama.cpp's
# repeat_penalty with repeat_last_n = -1 (the backend sends both fields)
check "greedy -n 64 --repeat-penalty 1.15: Once upon a time" -p "Once upon a time" -n 64 \
    --repeat-penalty 1.15
exit $fail
