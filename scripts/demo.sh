#!/usr/bin/env bash
# README command 1: install, build, make a small demo model with `moetier synth`, and show what moetier is
# for: generate text with every expert in RAM, then the same prompt with the experts streamed from disk
# through the expert cache under a small --ram-budget, and check that both give the same tokens and the
# same logits bit for bit, with the cache's statistics (hits, prefetched, misses, bytes read); then the
# GPU tier on the simulated device sim:0 (hot experts there, computed while the CPU computes the rest),
# again bit for bit.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
mkdir -p out
echo "moetier demo: building build/moetier (log: out/build.log)"
MOETIER_BUILD_TARGETS=moetier bash scripts/build.sh > out/build.log 2>&1 || { tail -30 out/build.log; exit 1; }
[ -f out/demo.gguf ] || ./build/moetier synth --preset tiny-qwen3moe --type Q4_K --seed 42 -o out/demo.gguf
prompt="Once upon a time"
# The budget is the whole process (weights, KV cache for -c, scratch, I/O, metadata, ~17 MiB fixed with
# 2 threads): 21 MiB leaves about 1 MiB for the 1.9 MiB of experts of this model, so most of them stream.
budget=${MOETIER_DEMO_BUDGET:-21MiB}
echo
echo "(out/demo.gguf has seeded random weights: the text is gibberish; the point is what runs where)"
echo "== 1. every expert in RAM: moetier run -m out/demo.gguf -p \"$prompt\" -n 32 -c 256 -t 2 --seed 42"
./build/moetier run -m out/demo.gguf -p "$prompt" -n 32 -c 256 -t 2 --seed 42
./build/moetier run -m out/demo.gguf -p "$prompt" -n 32 -c 256 -t 2 --seed 42 --json --dump-logits out/demo-ram.logits \
  > out/demo-ram.json 2>/dev/null
echo
echo "== 2. the same with --ram-budget $budget: experts that do not fit stream from disk (io_uring) into a cache"
./build/moetier run -m out/demo.gguf -p "$prompt" -n 32 -c 256 -t 2 --seed 42 --ram-budget "$budget" -v --json \
  --dump-logits out/demo-tiered.logits > out/demo-tiered.json 2> out/demo-tiered.log ||
  { grep -a 'error' out/demo-tiered.log >&2; exit 1; }
sed -n '/^moetier: memory:/,/^  total /p' out/demo-tiered.log
grep -aE '^moetier: tiers|^  (layer|total:)' out/demo-tiered.log || true
echo
echo "== 3. same answer?"
python3 - out/demo-ram.json out/demo-tiered.json <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
same = a["generated_tokens"] == b["generated_tokens"]
print(f"generated tokens identical: {'yes' if same else 'NO'} ({len(a['generated_tokens'])} tokens)")
c = b.get("expert_cache", {})
if c:
    req = max(c["requests"], 1)
    print(f"expert cache: {c['requests']} expert requests: {100*c['hits']/req:.1f}% hits, "
          f"{100*c['prefetched']/req:.1f}% prefetched, {100*c['misses']/req:.1f}% misses; "
          f"{c['bytes_read']/2**20:.1f} MiB read from disk, stalled {c['stall_ms']:.1f} ms")
sys.exit(0 if same else 1)
PY
if cmp -s out/demo-ram.logits out/demo-tiered.logits; then
  echo "last prompt position's logits identical: yes (bit for bit, $(( $(stat -c %s out/demo-ram.logits) / 4 )) values)"
else
  echo "last prompt position's logits identical: NO"; exit 1
fi
echo
echo "== 4. a GPU tier without a GPU: --sim-device 1MiB (the simulated device sim:0, computing with the CPU kernels)"
echo "   takes the experts that fit; --device-slots 256KiB of it refill with the most-routed experts between tokens"
./build/moetier run -m out/demo.gguf -p "$prompt" -n 32 -c 256 -t 2 --seed 42 --sim-device 1MiB --device-slots 256KiB \
  -v --json --dump-logits out/demo-sim.logits > out/demo-sim.json 2> out/demo-sim.log ||
  { grep -a 'error' out/demo-sim.log >&2; exit 1; }
grep -aE '^moetier: sim:0|^  dynamic slots|^  (cpu|sim:0):' out/demo-sim.log || true
python3 - out/demo-ram.json out/demo-sim.json <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
same = a["generated_tokens"] == b["generated_tokens"]
d = b["device"]
print(f"generated tokens identical: {'yes' if same else 'NO'}; {d['device_groups']} expert groups on sim:0, "
      f"{d['cpu_groups']} on the CPU; {d['h2d_bytes']/2**20:.2f} MiB copied host->device")
sys.exit(0 if same else 1)
PY
if cmp -s out/demo-ram.logits out/demo-sim.logits; then
  echo "last prompt position's logits identical: yes (bit for bit)"
else
  echo "last prompt position's logits identical: NO"; exit 1
fi
