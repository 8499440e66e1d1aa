#!/usr/bin/env bash
# README command 2: install, build, run the whole test suite; prints "N passed, N failed, N skipped".
# Also builds the unit tests with ASan + UBSan (meson option sanitize) and runs the unit suite there, and
# runs both libFuzzer targets (the GGUF reader and the whole load path) for a bounded time
# (MOETIER_FUZZ_SECONDS each, default 60; MOETIER_SKIP_FUZZ=1 / MOETIER_SKIP_SANITIZE=1 skip those stages).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh
status=0
meson test -C build --print-errorlogs --num-processes 2 || status=1
if [ "${MOETIER_SKIP_SANITIZE:-0}" != "1" ]; then
  [ -f build-asan/build.ninja ] || meson setup build-asan --buildtype=debugoptimized -Dsanitize=true -Dcuda=disabled
  ninja -C build-asan
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    meson test -C build-asan --suite unit --print-errorlogs --num-processes 2 || status=1
fi
if [ "${MOETIER_SKIP_FUZZ:-0}" != "1" ]; then
  MOETIER_FUZZ_SEED=${MOETIER_FUZZ_SEED:-1} bash fuzz/run.sh "${MOETIER_FUZZ_SECONDS:-60}" gguf load || { echo "test.sh: the fuzz stage failed (above)"; status=1; }
fi
python3 scripts/summarize_tests.py build/meson-logs/testlog.json \
  $( [ -f build-asan/meson-logs/testlog.json ] && [ "${MOETIER_SKIP_SANITIZE:-0}" != "1" ] && echo build-asan/meson-logs/testlog.json ) || status=1
exit $status
