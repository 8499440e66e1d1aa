#!/usr/bin/env bash
# Fuzzes the GGUF reader for SECONDS seconds (default 60): builds fuzz_gguf with clang + libFuzzer +
# ASan + UBSan into build-fuzz/, builds a seed corpus (synthetic files from gguf_seed_gen, shrunk copies
# of ../shared/models, and their first 64 KiB), runs at low priority and prints the execution count.
# Exit status: 0 when no crash was found; a crashing input is kept in fuzz/corpus-run/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
if [ ! -f build-fuzz/build.ninja ]; then
  CXX=clang++ meson setup build-fuzz -Dfuzz=true -Dcuda=disabled --buildtype=debugoptimized >/dev/null
fi
ninja -C build-fuzz fuzz/fuzz_gguf fuzz/gguf_seed_gen >/dev/null
work=fuzz/corpus-run
mkdir -p "$work/seeds" "$work/corpus" "$work/artifacts"
shared=../shared/models
build-fuzz/fuzz/gguf_seed_gen "$work/seeds" "$shared"
if [ -d "$shared" ]; then
  for f in "$shared"/*.gguf; do head -c 65536 "$f" > "$work/seeds/head-$(basename "$f")"; done
fi
echo "fuzz_gguf: $(ls "$work/seeds" | wc -l) seeds, running ${secs}s"
set +e
nice -n 19 build-fuzz/fuzz/fuzz_gguf -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -timeout=20 \
  -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$work/corpus" "$work/seeds" >"$work/log.txt" 2>&1
status=$?
set -e
execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$work/log.txt" | grep -o '[0-9]*$' || true)
grep -E '^Done [0-9]+ runs' "$work/log.txt" || true
echo "fuzz_gguf: executions ${execs:-unknown} in ${secs}s, exit status $status (log: $work/log.txt)"
if [ $status -ne 0 ]; then
  grep -E 'ERROR|SUMMARY|Test unit written' "$work/log.txt" | head -20
fi
exit $status
