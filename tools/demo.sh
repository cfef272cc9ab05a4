#!/bin/sh
# make demo: generate from a base model. Usage: demo.sh ICALIGN MODEL SHARED PROMPT
set -eu
bin=$1; model=$2; shared=$3; prompt=$4
if [ -z "$model" ]; then
  if [ -f "$shared/fixtures/stories260K/stories260K.gguf" ]; then
    model="$shared/fixtures/stories260K/stories260K.gguf"
    echo "demo: no MODEL given; using the tiny stories260K fixture ($model)."
    echo "demo: for a real base model run: make demo MODEL=/path/to/base-model.gguf"
  else
    echo "demo: no model. Give a GGUF base model: make demo MODEL=/path/to/model.gguf" >&2
    echo "demo: (any llama/qwen2-architecture GGUF, e.g. a Llama-2-7B or Mistral-7B base model)" >&2
    exit 2
  fi
fi
[ -f "$model" ] || { echo "demo: $model does not exist" >&2; exit 2; }
echo "== icalign info"
"$bin" info -m "$model"
echo
echo "== icalign generate -p \"$prompt\" -n 64 (greedy)"
"$bin" generate -m "$model" -p "$prompt" -n 64
