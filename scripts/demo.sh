#!/usr/bin/env bash
# README command 1: install, build, make a small demo model with `moetier synth`, run the main job on it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh
mkdir -p out
[ -f out/demo.gguf ] || ./build/moetier synth --preset tiny-qwen3moe --type Q4_K --seed 42 -o out/demo.gguf
if ./build/moetier run --help >/dev/null 2>&1; then
  ./build/moetier run -m out/demo.gguf -p "Once upon a time" -n 32 --seed 42
else
  ./build/moetier inspect out/demo.gguf
fi
