#!/bin/sh
# make demo: answer three MT-Bench questions with a base model and the URIAL demonstrations.
# Usage: demo.sh ICALIGN MODEL SHARED
# Model: MODEL if given, else the default base model when `icalign pull` has downloaded it,
# else (offline) the tiny stories260K fixture from SHARED with a note, else instructions.
# Never downloads anything itself and never fails a CI-style run for want of a model.
set -u
bin=$1; model=${2:-}; shared=${3:-../shared}
[ -x "$bin" ] || { echo "demo: $bin is not built (run make build)" >&2; exit 2; }
extra=""
export ICALIGN_SHARED="$shared"
if [ -z "$model" ]; then
  if model=$("$bin" pull --print-path 2>/dev/null) && [ -f "$model" ]; then
    echo "demo: using the default base model $model"
  elif [ -f "$shared/fixtures/stories260K/stories260K.gguf" ]; then
    model="$shared/fixtures/stories260K/stories260K.gguf"
    echo "demo: NOTE: no model given and none downloaded; using the tiny stories260K test"
    echo "demo:       fixture (260K parameters, trained on children's stories: the answers are"
    echo "demo:       nonsense, this only shows the pipeline). For real answers:"
    echo "demo:         $bin pull            # the default ~0.5 GB base model, then make demo"
    echo "demo:         make demo MODEL=/path/to/base-model.gguf"
    # its context is 128 tokens: no demonstrations, short answers, a longer context
    extra="--demos none --max-tokens 24 -c 1024"
  else
    echo "demo: no model. Either download the default base model:" >&2
    echo "demo:     $bin pull" >&2
    echo "demo: or give one: make demo MODEL=/path/to/base-model.gguf" >&2
    exit 0
  fi
fi
[ -f "$model" ] || { echo "demo: $model does not exist" >&2; exit 2; }
demos=default
urial="$shared/data/urial/tml-epfl_icl-alignment/urial_prompts/urial.txt"
[ -f "$urial" ] && demos=$urial
qdir="$shared/data/mt_bench"
bench=mt-bench
if [ ! -f "$qdir/question.jsonl" ]; then
  # no MT-Bench data at hand: three MT-Bench-style questions of our own
  bench=$(mktemp); trap 'rm -f "$bench"' EXIT
  printf '%s\n' '{"id": 1, "turns": ["Write a haiku about the sea."]}' \
    '{"id": 2, "turns": ["What is the capital of France, and why is it famous?"]}' \
    '{"id": 3, "turns": ["Explain recursion to a ten-year-old."]}' >"$bench"
fi
out=${DEMO_OUT:-build/demo-run}
case "$extra" in *--demos*) ;; *) extra="--demos $demos --max-tokens ${DEMO_MAX_TOKENS:-256}" ;; esac
echo "demo: icalign answer --bench $bench --limit 3 -m $model $extra --out $out"
# shellcheck disable=SC2086
"$bin" answer --bench "$bench" --limit 3 -m "$model" $extra --out "$out" --model-id demo || exit $?
python3 - "$out/model_answer/demo.jsonl" "$qdir/question.jsonl" <<'PY' 2>/dev/null || cat "$out/model_answer/demo.jsonl"
import json, sys
qs = {}
try:
    for l in open(sys.argv[2], encoding="utf-8"):
        q = json.loads(l); qs[q["question_id"]] = q["turns"]
except OSError:
    pass
for l in open(sys.argv[1], encoding="utf-8"):
    a = json.loads(l)
    turns = qs.get(a["question_id"], [])
    for i, t in enumerate(a["choices"][0]["turns"]):
        print("=" * 72)
        if i < len(turns):
            print("# Query:", turns[i])
        print("# Answer:", t)
print("=" * 72)
PY
