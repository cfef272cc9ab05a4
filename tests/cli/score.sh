#!/bin/bash
# icalign score on the dev examples: MT-Bench aggregates (three semantics) against
# expected_aggregates.json, AlpacaEval phi-2 against expected.json and the leaderboard.
# Usage: score.sh ICALIGN_BINARY SHARED_DIR   (exit 77 = skipped)
set -euo pipefail
bin=$1; shared=$2
mt=$shared/data/mt_bench/dev_example
ae=$shared/data/alpaca_eval
[ -f "$mt/don-tpanic_FastChat.gpt-4_single.jsonl" ] && [ -f "$ae/dev_example/phi-2/annotations.json" ] || {
  echo "SKIP: shared data not found"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: python3 missing"; exit 77; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

"$bin" score --help | grep -q -- --judgments
for sem in current pre-2023-07-25 urial-last; do
  "$bin" score --judgments "$mt/don-tpanic_FastChat.gpt-4_single.jsonl" --semantics "$sem" --json \
    >"$tmp/mt-$sem.json"
done
"$bin" score --judgments "$mt/don-tpanic_FastChat.gpt-4_single.jsonl" >"$tmp/mt.txt"
grep -q llama2_chat_7b "$tmp/mt.txt"
"$bin" score --judgments "$mt/don-tpanic_FastChat.gpt-4_single.jsonl" --csv | head -1 |
  grep -q '^model,turn1,turn2,overall,n_turn1,n_turn2'

"$bin" score --annotations "$ae/dev_example/phi-2/annotations.json" \
  --model-outputs "$ae/dev_example/phi-2/model_outputs.json" \
  --df-gamed "$ae/length_controlled/df_gamed.csv" --json >"$tmp/ae.json"

python3 - "$tmp" "$mt/expected_aggregates.json" "$ae/dev_example/phi-2/expected.json" \
  "$ae/leaderboard/weighted_alpaca_eval_gpt4_turbo_leaderboard.minus_holdout.csv" <<'PY'
import json, sys
tmp, exp_mt, exp_ae, lb = sys.argv[1:5]
exp = json.load(open(exp_mt))["don-tpanic_FastChat.gpt-4_single.jsonl"]
keys = {"current": "fastchat_current", "pre-2023-07-25": "fastchat_pre_2023-07-25_no_minus1_filter",
        "urial-last": "urial_dedup_last"}
for sem, key in keys.items():
    got = json.load(open(f"{tmp}/mt-{sem}.json"))
    assert sorted(r["model"] for r in got) == sorted(exp), sem
    for r in got:
        e = exp[r["model"]][key]
        for k in ("turn1", "turn2", "overall"):
            assert abs(r[k] - e[k]) < 1e-9, (sem, r["model"], k, r[k], e[k])
        if sem == "current":
            assert r["n_turn1"] == e["n_turn1"] and r["n_turn2"] == e["n_turn2"]
        if sem == "urial-last":
            for c, v in e["per_category_both_turns"].items():
                assert abs(r["categories"][c] - v) < 1e-9, (r["model"], c)
ae = json.load(open(f"{tmp}/ae.json"))
assert len(ae) == 1 and ae[0]["model"] == "phi-2"
r = ae[0]
e = json.load(open(exp_ae))
pub, rec = e["published_leaderboard_row"], e["independent_recomputation"]
for k in ("win_rate", "standard_error", "discrete_win_rate"):
    assert abs(r[k] - pub[k]) < 1e-9, (k, r[k], pub[k])
for k in ("n_wins", "n_wins_base", "n_draws", "n_total"):
    assert r[k] == pub[k], k
assert r["avg_length"] == rec["avg_length_from_model_outputs"]
row = [l.split(",") for l in open(lb) if l.startswith("phi-2,")][0]
lc_pub = float(row[10])
assert abs(r["length_controlled_winrate"] - lc_pub) < 0.01, (r["length_controlled_winrate"], lc_pub)
assert abs(r["lc_standard_error"] - rec["lc_standard_error"]) < 1e-9
print(f"LC {r['length_controlled_winrate']!r} vs published {lc_pub!r}")
PY

# malformed files: errors name the file and line/record, exit status non-zero
printf '{"question_id": 81, "model": "a", "score": 5, "turn": 1}\n{"question_id": 81, "model":\n' >"$tmp/bad.jsonl"
if "$bin" score --judgments "$tmp/bad.jsonl" 2>"$tmp/err"; then echo "bad judgments accepted"; exit 1; fi
grep -q "bad.jsonl:2" "$tmp/err"
printf '[{"instruction": "x", "output_1": "a", "output_2": 3}]' >"$tmp/bad.json"
if "$bin" score --annotations "$tmp/bad.json" 2>"$tmp/err"; then echo "bad annotations accepted"; exit 1; fi
grep -q "bad.json: record 0" "$tmp/err"
echo "score: ok"
