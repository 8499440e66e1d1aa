#!/usr/bin/env bash
# Runs the libFuzzer targets for SECONDS seconds each (default 60): `fuzz/run.sh [SECONDS] [TARGET...]`,
# TARGET gguf (the GGUF reader) and/or load (the whole load path: hyper-parameter validation, weight
# binding, tokenizer, one forward step); default both, one after the other.
# Builds them with clang + libFuzzer + ASan + UBSan into build-fuzz/ (the whole project instrumented),
# builds each seed corpus (gguf: synthetic files from gguf_seed_gen, shrunk copies of ../shared/models and
# their first 64 KiB; load: micro synth models of every architecture from load_seed_gen), runs at low
# priority and prints each target's execution count.
# MOETIER_FUZZ_SEED=N fixes libFuzzer's random seed (scripts/test.sh uses 1, so CI explores the same
# inputs on every run of the same code; a slower machine explores a prefix of them).
# Exit status: 0 when no target found a crash; a crashing input is kept in fuzz/corpus-<target>/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(gguf load)
if [ ! -f build-fuzz/build.ninja ]; then
  mkdir -p fuzz
  if ! CXX=clang++ meson setup build-fuzz -Dfuzz=true -Dcuda=disabled --buildtype=debugoptimized >fuzz/setup.log 2>&1; then
    echo "fuzz/run.sh: meson setup build-fuzz (clang) failed:" >&2
    grep -E 'ERROR|not found' fuzz/setup.log >&2 || tail -5 fuzz/setup.log >&2
    rm -rf build-fuzz
    exit 1
  fi
fi
status=0
for t in "${targets[@]}"; do
  case "$t" in
    gguf) max_len=65536 ;;
    load) max_len=262144 ;;
    *) echo "fuzz/run.sh: unknown target $t (expected gguf or load)" >&2; exit 1 ;;
  esac
  work=fuzz/corpus-$t
  mkdir -p "$work/seeds" "$work/corpus" "$work/artifacts"
  if [ "$t" = gguf ]; then
    ninja -C build-fuzz fuzz/fuzz_gguf fuzz/gguf_seed_gen >fuzz/build.log 2>&1 || { tail -20 fuzz/build.log >&2; exit 1; }
    shared=../shared/models
    build-fuzz/fuzz/gguf_seed_gen "$work/seeds" "$shared"
    if [ -d "$shared" ]; then
      for f in "$shared"/*.gguf; do head -c 65536 "$f" > "$work/seeds/head-$(basename "$f")"; done
    fi
  else
    ninja -C build-fuzz fuzz/fuzz_load fuzz/load_seed_gen >fuzz/build.log 2>&1 || { tail -20 fuzz/build.log >&2; exit 1; }
    ASAN_OPTIONS=detect_leaks=0 build-fuzz/fuzz/load_seed_gen "$work/seeds" >/dev/null
  fi
  echo "fuzz_$t: $(ls "$work/seeds" | wc -l) seeds, running ${secs}s"
  set +e
  seed_arg=()
  [ -n "${MOETIER_FUZZ_SEED:-}" ] && seed_arg=(-seed="$MOETIER_FUZZ_SEED")
  nice -n 19 "build-fuzz/fuzz/fuzz_$t" "${seed_arg[@]}" -max_total_time="$secs" -max_len=$max_len -rss_limit_mb=2048 -timeout=20 \
    -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$work/corpus" "$work/seeds" >"$work/log.txt" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$work/log.txt" | grep -o '[0-9]*$' || true)
  grep -E '^Done [0-9]+ runs' "$work/log.txt" || true
  echo "fuzz_$t: executions ${execs:-unknown} in ${secs}s, exit status $rc (log: $work/log.txt)"
  if [ $rc -ne 0 ]; then
    grep -E 'ERROR|SUMMARY|Test unit written|#[0-9]+ 0x' "$work/log.txt" | head -30
    status=1
  fi
done
exit $status
