#!/usr/bin/env bash
# Configures (once) and builds moetier into ./build. Extra arguments go to `meson setup`;
# MOETIER_BUILD_TARGETS (e.g. "moetier") builds only those targets (default: everything, tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f build/build.ninja ]; then
  meson setup build --buildtype=release "$@"
fi
ninja -C build ${MOETIER_BUILD_TARGETS:-}
