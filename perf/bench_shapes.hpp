// What the kernel benchmarks (bench_kernels, bench_prefill) share: the expert matrices of real models and
// comma-separated option lists.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/ggml_type.hpp"
#include "cpu/dequant.hpp"

namespace moetier::perf {

/// One expert FFN matrix W [n_out, n_in] of a real model.
struct Shape {
  const char* model;
  const char* what;
  int64_t n_out, n_in;
};

/// gate/up W [ffn, hidden] and down W [hidden, ffn] of DeepSeek-V3 (7168 / 2048, its config.json),
/// Qwen3-30B-A3B (2048 / 768) and Mixtral-8x7B (4096 / 14336).
inline constexpr Shape kShapes[] = {
    {"DeepSeek-V3", "gate/up", 2048, 7168}, {"DeepSeek-V3", "down", 7168, 2048},
    {"Qwen3-30B-A3B", "gate/up", 768, 2048}, {"Qwen3-30B-A3B", "down", 2048, 768},
    {"Mixtral-8x7B", "gate/up", 14336, 4096}, {"Mixtral-8x7B", "down", 4096, 14336},
};

/// Rows of weights the benchmarks tile into their matrices: kPatternRows Gaussian rows (sd 0.02, seed 7) of
/// n_in values quantised to `type` by the CPU reference, row r at r * ggml_row_bytes(type, n_in).
inline constexpr int64_t kPatternRows = 16;
inline std::vector<std::byte> quantized_pattern(GgmlType type, int64_t n_in) {
  const uint64_t rb = ggml_row_bytes(type, static_cast<uint64_t>(n_in));
  std::vector<float> x(static_cast<size_t>(n_in));
  std::mt19937 rng(7);
  std::normal_distribution<float> g(0.0f, 0.02f);
  std::vector<std::byte> pattern(rb * kPatternRows);
  if (!cpu::can_quantize(type)) {  // IQ types: random bytes (every index pattern is valid; speed only)
    for (auto& b : pattern) b = static_cast<std::byte>(rng() & 0x3f);  // small fp16 scales, no inf / NaN
    return pattern;
  }
  for (int64_t r = 0; r < kPatternRows; ++r) {
    for (auto& v : x) v = g(rng);
    cpu::quantize_row_ref(type, x.data(), pattern.data() + r * rb, n_in);
  }
  return pattern;
}

/// "a,b,,c" -> {"a", "b", "c"}.
inline std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

}  // namespace moetier::perf
