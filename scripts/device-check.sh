#!/usr/bin/env bash
# Device check (issue 10) for a machine with an NVIDIA GPU (H100 / H200, 16 cores): builds moetier with
# CUDA in ./build-cuda, then
#   1. the CUDA tests (meson test 'kernels'): GEMV per weight type vs the dequantised product, the gpu:0
#      FFN vs CpuFfn, the backend's refusals and tickets, a tiny synth model on gpu:0. Here a SKIP (exit 77,
#      "no CUDA device") is a FAILURE: the machine has a GPU.
#   2. the whole unit suite with a GPU present (the sim:N device tests, tiered, cli), as CI runs it.
#   3. `moetier run` end to end on synth models (Q4_K, Q8_0, BF16): the --sim-device runs of the CLI
#      device tests with the real GPU instead (--vram-budget: everything on gpu:0, then part of the
#      experts), greedy tokens compared with the all-CPU run, and the device's statistics printed.
#   4. perf/bench_gpu (timeout 240 s): the device copy bandwidth (device->device, read + write bytes) and
#      pinned host->device bandwidth measured in the run, then the expert GEMV's weight bytes/s for Q4_K,
#      Q8_0, BF16, MXFP4 at DeepSeek-V3 / Qwen3-30B-A3B / Mixtral expert shapes, 1 and 8 tokens, and its
#      ratio to the copy bandwidth (target >= 0.85 for 1 token). The table is printed; the step fails only
#      when the bench does not run (error, timeout, or no device seen); the target's outcome is a line of
#      the summary, not a failure.
# Prints a summary; exit status 0 only when every step passed. Meant to finish in < 8 minutes.
# Not yet here (issue 10): full-size decode (non-expert weights + a share of experts on the GPU vs all-CPU).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
B=${MOETIER_DEVICE_BUILD:-build-cuda}
OUT=${MOETIER_DEVICE_OUT:-out/device-check}
mkdir -p "$OUT"
declare -a RESULTS=()
FAILED=0
step() {  # step NAME COMMAND...: runs, records PASS / FAIL
  local name=$1
  shift
  local t0=$SECONDS
  echo
  echo "== $name"
  if "$@"; then RESULTS+=("PASS  $name ($((SECONDS - t0)) s)")
  else RESULTS+=("FAIL  $name ($((SECONDS - t0)) s)"); FAILED=1; fi
}

echo "== device"
nvidia-smi --query-gpu=name,memory.total,driver_version,pcie.link.gen.current,pcie.link.width.current \
  --format=csv,noheader 2>&1 || echo "(nvidia-smi failed)"

build() {
  if [ ! -f "$B/build.ninja" ]; then
    meson setup "$B" --buildtype=release -Dcuda=enabled > "$OUT/configure.log" 2>&1 || { tail -30 "$OUT/configure.log"; return 1; }
  fi
  grep -q "MOETIER_HAVE_CUDA" "$B/build.ninja" || { echo "CUDA kernels are not enabled in $B"; return 1; }
  ninja -C "$B" -j "$(nproc)" > "$OUT/build.log" 2>&1 || { grep -aE "error|FAILED" "$OUT/build.log" | head -40; return 1; }
}
step "build with CUDA ($B)" build || true
if [ "$FAILED" = 1 ]; then printf '%s\n' "${RESULTS[@]}"; exit 1; fi

cuda_tests() {
  "./$B/tests/kernels/test_kernels" -s 2>&1 | tee "$OUT/kernels.log" | grep -aE "MESSAGE|ERROR|FAILED|CHECK|test cases|SKIP" | head -60
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 77 ] && echo "the CUDA tests skipped: no CUDA device seen by the process"
  return "$rc"
}
step "CUDA tests (kernels)" cuda_tests

unit_suite() {
  meson test -C "$B" --suite unit --num-processes "$(nproc)" --no-rebuild --print-errorlogs > "$OUT/unit.log" 2>&1
  local rc=$?
  grep -aE "^ *[0-9]+/[0-9]+ |^Ok:|^Fail:|^Skipped:|^Timeout:" "$OUT/unit.log" | tail -40
  return "$rc"
}
step "unit suite with a GPU present" unit_suite

# `moetier run` on a synth model: all-CPU vs gpu:0 (all weights, then part of the experts).
e2e() {
  local type=$1 model="$OUT/tiny-$1.gguf"
  "./$B/moetier" synth --preset tiny-qwen3moe --type "$type" --seed 42 -o "$model" > /dev/null || return 1
  local args=(run -m "$model" -p "Once upon a time" -n 24 -c 256 -t 8 --temp 0 --json)
  "./$B/moetier" "${args[@]}" > "$OUT/$type-cpu.json" 2> "$OUT/$type-cpu.log" || { cat "$OUT/$type-cpu.log"; return 1; }
  local ok=0
  for budget in 256MiB 1MiB; do
    "./$B/moetier" "${args[@]}" --vram-budget "$budget" -v > "$OUT/$type-gpu-$budget.json" 2> "$OUT/$type-gpu-$budget.log" ||
      { grep -a "error" "$OUT/$type-gpu-$budget.log"; ok=1; continue; }
    python3 - "$OUT/$type-cpu.json" "$OUT/$type-gpu-$budget.json" "$type" "$budget" <<'PY' || ok=1
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
same = a["generated_tokens"] == b["generated_tokens"]
d = b.get("device", {})
print(f"{sys.argv[3]} --vram-budget {sys.argv[4]}: greedy tokens equal to all-CPU: {'yes' if same else 'NO'} "
      f"({len(a['generated_tokens'])} tokens); device {d.get('name')}: {d.get('placed_experts')} experts + "
      f"{d.get('placed_ffns')} FFNs placed, {d.get('device_groups')} groups, busy {d.get('device_busy_ms')} ms")
if not same:
    print("  cpu:", a["generated_tokens"]); print("  gpu:", b["generated_tokens"])
sys.exit(0 if same and d.get("device_groups", 0) > 0 else 1)
PY
  done
  return "$ok"
}
for t in Q4_K Q8_0 BF16; do step "moetier run on gpu:0 vs CPU ($t)" e2e "$t"; done

# Expert GEMV bytes/s vs the device's copy bandwidth, measured in the same run.
BENCH_NOTE=""
bench_gpu() {
  timeout 240 "./$B/perf/bench_gpu" > "$OUT/bench_gpu.log" 2>&1
  local rc=$?
  cat "$OUT/bench_gpu.log"
  [ "$rc" = 124 ] && echo "bench_gpu: timed out after 240 s"
  grep -q "no CUDA device" "$OUT/bench_gpu.log" && { echo "bench_gpu saw no CUDA device"; return 1; }
  BENCH_NOTE=$(grep -a "worst 1-token ratio" "$OUT/bench_gpu.log")
  return "$rc"
}
step "perf/bench_gpu (GEMV bytes/s vs copy bandwidth)" bench_gpu
[ -n "$BENCH_NOTE" ] && RESULTS+=("INFO  bench_gpu $BENCH_NOTE")

echo
echo "== summary (logs in $OUT)"
printf '%s\n' "${RESULTS[@]}"
exit "$FAILED"
