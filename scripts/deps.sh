#!/usr/bin/env bash
# Installs the Debian 12 packages moetier builds and tests with (root, or sudo). Idempotent.
# ocl-icd-opencl-dev: Debian's oneDNN CMake config needs OpenCL's (a Recommends we do not get otherwise).
# libcpp-httplib-dev: `moetier serve`'s HTTP server (cpp-httplib 0.11).
# clang, libclang-rt-14-dev, libomp-dev: the libFuzzer builds (clang's OpenMP header and runtime are in libomp-dev).
set -euo pipefail
PKGS=(build-essential meson ninja-build pkg-config cmake python3
      libdnnl-dev ocl-icd-opencl-dev libhwloc-dev liburing-dev doctest-dev libcli11-dev nlohmann-json3-dev libfmt-dev libcpp-httplib-dev
      clang libclang-rt-14-dev libomp-dev libicu-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "moetier: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
