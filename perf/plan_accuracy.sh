#!/usr/bin/env bash
# How well `moetier plan` predicts: runs `moetier calibrate --quick` once, then for each configuration
# (all experts in RAM; a --ram-budget below the model's size; every expert on NVMe) runs `moetier run`
# (a prompt, then -n tokens, --ignore-eos) and `moetier plan` with the same tier options, the prompt's
# token count (as `run` reports it) and the same -n, and prints predicted / measured for decode and prompt
# tokens/s. `bench` takes no tier options, so the measurement is `run`'s own timing lines. See
# perf/README.md ("plan accuracy (issue 14)").
#
#   perf/plan_accuracy.sh [--build DIR] [--model FILE] [--budget SIZE] [-n TOKENS] [-t THREADS]
#                         [--profile FILE] [--skip-calibrate]
#
# Defaults: /work/models/deepseek-v2-lite-q4_k.gguf (a full-size synth model), --budget 6GiB, -n 32, the
# profile in a temporary folder (removed at the end), the disk measured in the model's folder's file system
# via /tmp's (same device here; --disk-dir of calibrate otherwise).
set -euo pipefail

build=build
model=/work/models/deepseek-v2-lite-q4_k.gguf
budget=6GiB
n=32
threads=0
profile=""
skip_cal=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    -n) n=$2; shift 2 ;;
    -t) threads=$2; shift 2 ;;
    --profile) profile=$2; shift 2 ;;
    --skip-calibrate) skip_cal=1; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "plan_accuracy: unknown option $1" >&2; exit 2 ;;
  esac
done
bin=$build/moetier
[[ -x $bin ]] || { echo "plan_accuracy: $bin not built" >&2; exit 2; }
[[ -f $model ]] || { echo "plan_accuracy: model $model not found" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[[ -n $profile ]] || profile=$work/machine.json
if (( ! skip_cal )); then
  echo "== calibrate --quick -m $model -t $threads"
  "$bin" calibrate --quick -m "$model" -t "$threads" -o "$profile" --disk-dir "$(dirname "$model")" 2>/dev/null
fi
# A prompt of ~64 tokens of the model's own vocabulary (synth vocabularies split English words finely).
prompt="The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs. How vexingly quick daft zebras jump."
echo "== load $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min) on $(nproc) CPUs before the runs"

configs=("all in RAM|--ram-budget 64GiB" "RAM budget $budget|--ram-budget $budget" "experts on NVMe|--experts-on-nvme all")
rows=()
for c in "${configs[@]}"; do
  name=${c%%|*}
  read -r -a opts <<< "${c#*|}"
  echo "== $name: run ${opts[*]}"
  "$bin" run -m "$model" -t "$threads" "${opts[@]}" -p "$prompt" -n "$n" --ignore-eos --temp 0 >/dev/null 2>"$work/run.err" \
    || { cat "$work/run.err" >&2; exit 1; }
  grep "eval time" "$work/run.err"
  read -r p_tok p_tps g_tps < <(python3 - "$work/run.err" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
p = re.search(r"prompt eval time =\s*[\d.]+ ms /\s*(\d+) tokens .*?([\d.]+) tokens per second", t)
g = re.search(r"\n[^\n]*\s eval time =\s*[\d.]+ ms /\s*\d+ runs .*?([\d.]+) tokens per second", t)
print(p.group(1), p.group(2), g.group(1))
PY
)
  "$bin" plan -m "$model" -t "$threads" "${opts[@]}" --machine "$profile" -p "$p_tok" -n "$n" --json > "$work/plan.json"
  rows+=("$(python3 - "$work/plan.json" "$name" "$p_tps" "$g_tps" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["predicted"]
name, p_tps, g_tps = sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
print(f"| {name} | {j['decode_tokens_per_s']:.2f} | {g_tps:.2f} | {j['decode_tokens_per_s'] / g_tps:.2f} | "
      f"{j['prompt_tokens_per_s']:.2f} | {p_tps:.2f} | {j['prompt_tokens_per_s'] / p_tps:.2f} | "
      f"{j['decode_binds']} | {100 * j['cache_hit_rate']:.0f}% |")
PY
)")
done
echo "== load $(cut -d' ' -f1-3 /proc/loadavg) after the runs"
echo
echo "model $(basename "$model"), -n $n, threads ${threads/#0/default}"
echo "| configuration | decode predicted t/s | measured | pred/meas | prompt predicted t/s | measured | pred/meas | decode binds | hit rate |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
