#!/usr/bin/env bash
# How well `moetier plan` predicts: runs `moetier calibrate --quick` once, then for each configuration
# (all experts in RAM: `moetier bench -p P -n N -r 1`; a --ram-budget below the model's size and every
# expert on NVMe: `moetier run` with a prompt of P tokens, then N tokens, --ignore-eos, its own timing
# lines, since bench takes no tier options) runs `moetier plan` with the same tier options, -p P and -n N,
# and prints predicted / measured for decode and prompt tokens/s. See perf/README.md ("plan accuracy
# (issue 14)").
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

# Measured: all in RAM with `bench` (a warm-up first, so the mapped weights are faulted in, as in a long
# run); the tiered runs with `run` (their expert cache starts cold, as the prediction assumes). The
# routing of the greedy run is recorded in the RAM-budget run and replayed by `plan --trace` for the
# all-on-NVMe plan (whose placement the trace does not change; the RAM-budget plan would order its
# resident experts by it, so it is planned without).
trace=$work/routing.jsonl
predict() {  # name, measured prompt tokens, measured prompt t/s, measured decode t/s, plan options...
  local name=$1 p_tok=$2 p_tps=$3 g_tps=$4
  shift 4
  "$bin" plan -m "$model" -t "$threads" "$@" --machine "$profile" -p "$p_tok" -n "$n" --json > "$work/plan.json"
  "$bin" plan -m "$model" -t "$threads" "$@" --machine "$profile" -p "$p_tok" -n "$n" | grep -E "^per decode step" || true
  rows+=("$(python3 - "$work/plan.json" "$name" "$p_tps" "$g_tps" "$(cut -d' ' -f1 /proc/loadavg)" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["predicted"]
name, p_tps, g_tps, load = sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
hit = f"{100 * j['cache_hit_rate']:.0f}%" + (" (trace)" if j["hit_rate_from_trace"] else "")
print(f"| {name} | {j['decode_tokens_per_s']:.2f} | {g_tps:.2f} | {j['decode_tokens_per_s'] / g_tps:.2f} | "
      f"{j['prompt_tokens_per_s']:.2f} | {p_tps:.2f} | {j['prompt_tokens_per_s'] / p_tps:.2f} | "
      f"{j['decode_binds']} | {hit} | {load} |")
PY
)")
}
measure_run() {  # run options...; prints "prompt_tokens prompt_tps decode_tps"
  "$bin" run -m "$model" -t "$threads" "$@" -p "$prompt" -n "$n" --ignore-eos --temp 0 >/dev/null 2>"$work/run.err" \
    || { cat "$work/run.err" >&2; exit 1; }
  grep -E "eval time|expert cache:" "$work/run.err" >&2
  python3 - "$work/run.err" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
p = re.search(r"prompt eval time =\s*[\d.]+ ms /\s*(\d+) tokens .*?([\d.]+) tokens per second", t)
g = re.search(r"\n[^\n]*\s eval time =\s*[\d.]+ ms /\s*\d+ runs .*?([\d.]+) tokens per second", t)
print(p.group(1), p.group(2), g.group(1))
PY
}
rows=()

echo "== RAM budget $budget: run --ram-budget $budget --record-routing"
read -r p_tok p_tps g_tps < <(measure_run --ram-budget "$budget" --record-routing "$trace")
budget_meas=("$p_tok" "$p_tps" "$g_tps")
echo "== all in RAM: bench -p $p_tok -n $n -r 1"
"$bin" bench -m "$model" -t "$threads" -p "$p_tok" -n "$n" -r 1 --json --no-roofline > "$work/bench.json" 2>/dev/null
read -r b_p b_g < <(python3 -c "import json,sys; t={x['test'][:2]: x['tokens_per_s'] for x in json.load(open(sys.argv[1]))['tests']}; print(t['pp'], t['tg'])" "$work/bench.json")
echo "bench: pp$p_tok $b_p t/s, tg$n $b_g t/s"
predict "all in RAM (bench)" "$p_tok" "$b_p" "$b_g" --ram-budget 64GiB
predict "RAM budget $budget (run)" "${budget_meas[@]}" --ram-budget "$budget"
echo "== experts on NVMe: run --experts-on-nvme all"
read -r p_tok p_tps g_tps < <(measure_run --experts-on-nvme all)
predict "experts on NVMe, trace (run)" "$p_tok" "$p_tps" "$g_tps" --experts-on-nvme all --trace "$trace"
echo "== load $(cut -d' ' -f1-3 /proc/loadavg) after the runs"
echo
echo "model $(basename "$model"), -n $n, threads ${threads/#0/default}"
echo "| configuration | decode predicted t/s | measured | pred/meas | prompt predicted t/s | measured | pred/meas | decode binds | hit rate | load (1 min) |"
echo "|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
