#!/usr/bin/env bash
# End-to-end tiered decode on a model that does not fit its DRAM budget: decode tokens/s of
# `moetier run --ram-budget` next to its bound, from the NVMe bytes each decode token read, the disk's
# O_DIRECT bandwidth measured by perf/bench_io on the model file itself, and the CPU time per token;
# plus the expert-cache hit rate and the process's peak resident memory. See perf/README.md.
#
#   perf/e2e_tiered.sh [--build DIR] [--model FILE | --preset NAME --type TYPE --dir DIR] [--budget SIZE]
#                      [-n TOKENS] [--keep] [-- extra `moetier run` options]
#
# Without --model, `moetier synth --preset NAME --type TYPE` writes the model into --dir first (after
# checking free space) and removes it at the end unless --keep. Defaults: qwen3-30b-a3b, Q4_K (~17 GB),
# --budget 6GiB, -n 16.
set -euo pipefail

build=build
model=""
preset=qwen3-30b-a3b
type=Q4_K
dir=/tmp
budget=6GiB
n=16
keep=0
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --preset) preset=$2; shift 2 ;;
    --type) type=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    -n) n=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "e2e_tiered: unknown option $1" >&2; exit 2 ;;
  esac
done
if (( n < 2 )); then echo "e2e_tiered: -n must be >= 2 (decode steps are n - 1)" >&2; exit 2; fi

moetier=$build/moetier
bench_io=$build/perf/bench_io
for b in "$moetier" "$bench_io"; do
  [[ -x $b ]] || { echo "e2e_tiered: $b not built (ninja -C $build moetier perf/bench_io)" >&2; exit 1; }
done
work=$(mktemp -d "${TMPDIR:-/tmp}/moetier-e2e-XXXXXX")
created=""
cleanup() {
  rm -rf "$work"
  if [[ -n $created && $keep == 0 ]]; then rm -f "$created"; echo "removed $created" >&2; fi
}
trap cleanup EXIT

if [[ -z $model ]]; then
  model=$dir/$preset-$type.gguf
  if [[ ! -f $model ]]; then
    need=$("$moetier" synth --preset "$preset" --type "$type" --dry-run --json |
           python3 -c 'import json,sys; print(json.load(sys.stdin)["sizes"]["total"])')
    avail=$(( $(df --output=avail -k "$dir" | tail -1) * 1024 ))
    if (( need + (1 << 30) > avail )); then
      echo "e2e_tiered: $preset $type needs $((need >> 20)) MiB, $dir has $((avail >> 20)) MiB free" >&2; exit 1
    fi
    echo "== synth $preset $type -> $model ($((need >> 20)) MiB)" >&2
    created=$model
    "$moetier" synth --preset "$preset" --type "$type" -o "$model" >&2
    sync  # let the write-back finish: it would slow the bandwidth measurement below
  fi
fi

# The size of one routed expert (bench_io reads experts of that size, as three ranges).
expert_bytes=$("$moetier" inspect "$model" --json | python3 -c '
import json, sys
j = json.load(sys.stdin)
print(max(l["bytes"] // l["n_experts"] for l in j["routed_experts"]["layers"]))')

echo "== O_DIRECT bandwidth of $(dirname "$model") (bench_io on the model file, experts of $expert_bytes bytes)" >&2
"$bench_io" "$model" --size "$expert_bytes" --reps 4 --region 1GiB | tee "$work/bench_io.txt" >&2
gbps=$(sed -n 's/^median: plain \([0-9.]*\) GB\/s.*/\1/p' "$work/bench_io.txt")

prompt="The tiered expert store keeps the hottest experts in memory and streams the others from disk."
run() {  # run N OUT: one `moetier run`, JSON on OUT.json, stderr (timings, cache report, time -v) on OUT.err
  local cmd=("$moetier" run -m "$model" --ram-budget "$budget" -n "$1" --temp 0 --ignore-eos --json -v
             -p "$prompt" "${extra[@]}")
  if [[ -x /usr/bin/time ]]; then /usr/bin/time -v "${cmd[@]}" >"$2.json" 2>"$2.err"
  else "${cmd[@]}" >"$2.json" 2>"$2.err"; fi
}
# Prefill alone (-n 1 evaluates no decode step), then the full run: their difference is the decode.
echo "== moetier run --ram-budget $budget -n 1 (prefill only)" >&2
run 1 "$work/prefill"
echo "== moetier run --ram-budget $budget -n $n" >&2
run "$n" "$work/full"
grep -E "tiers:|total:|non-expert weights|expert cache:|eval time" "$work/full.err" >&2 || true

python3 - "$work" "$gbps" "$budget" <<'EOF'
import json, re, sys
work, gbps, budget = sys.argv[1], float(sys.argv[2]), sys.argv[3]
pre, full = (json.load(open(f"{work}/{x}.json")) for x in ("prefill", "full"))
def peak(name):
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(f"{work}/{name}.err").read())
    return int(m.group(1)) * 1024 if m else None
t = full["timings"]
steps = t["predicted_n"]
c1, c0 = full["expert_cache"], pre["expert_cache"]
dec = {k: c1[k] - c0[k] for k in ("requests", "hits", "prefetched", "misses", "bytes_read", "stall_ms")}
bytes_tok = dec["bytes_read"] / steps
io_s = bytes_tok / (gbps * 1e9)
cpu_s = max(t["predicted_ms"] - dec["stall_ms"], 0.0) / 1e3 / steps   # decode time not spent waiting on reads
tps = t["predicted_tokens_per_s"]
serial = 1.0 / (io_s + cpu_s)
overlap = 1.0 / max(io_s, cpu_s)
req = dec["requests"]
print(f"model {full['model']}  budget {budget}  decode steps {steps}")
print(f"decode: {tps:.3f} tokens/s  ({t['predicted_ms'] / steps:.1f} ms per token)")
print(f"NVMe per decode token: {bytes_tok / 1e6:.1f} MB  at {gbps:.2f} GB/s O_DIRECT -> {io_s * 1e3:.1f} ms "
      f"(the decode itself averaged {dec['bytes_read'] / t['predicted_ms'] / 1e6:.2f} GB/s)")
print(f"CPU per decode token (decode time - I/O stall): {cpu_s * 1e3:.1f} ms")
print(f"bound: {serial:.3f} tokens/s serial (I/O + CPU), {overlap:.3f} tokens/s fully overlapped (max)")
print(f"achieved / bound: {tps / serial:.2f} of serial, {tps / overlap:.2f} of overlapped")
if req:
    print(f"expert cache (decode): {req} requests, hit {100 * dec['hits'] / req:.1f}%, prefetched "
          f"{100 * dec['prefetched'] / req:.1f}%, miss {100 * dec['misses'] / req:.1f}%, stalled {dec['stall_ms']:.0f} ms")
p = peak("full")
if p: print(f"peak resident memory (time -v): {p / 2**30:.2f} GiB")
EOF
