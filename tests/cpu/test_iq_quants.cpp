// IQ weight formats against ggml itself (tests/cpu/iq_ref, produced with the peer's libggml.so; see its
// README): dequantize_row bit for bit on blocks that use every grid index, and vec_dot_scalar against
// ggml_vec_dot_* within a stated tolerance (the peer's SIMD sums in another f32 order than the generic
// code moetier follows).
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <cmath>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "common/half.hpp"
#include "cpu/dequant.hpp"
#include "cpu/iq_blocks.hpp"
#include "cpu/iq_tables.hpp"
#include "cpu/quant_blocks.hpp"
#include "cpu/vec_dot.hpp"

using namespace moetier;
using namespace moetier::cpu;

namespace {

struct IqCase {
  GgmlType type;
  size_t block_bytes;  // sizeof of moetier's block struct
};
const IqCase kIqTypes[] = {
    {GgmlType::IQ2_XXS, sizeof(BlockIQ2_XXS)}, {GgmlType::IQ2_XS, sizeof(BlockIQ2_XS)},
    {GgmlType::IQ2_S, sizeof(BlockIQ2_S)},     {GgmlType::IQ3_XXS, sizeof(BlockIQ3_XXS)},
    {GgmlType::IQ3_S, sizeof(BlockIQ3_S)},     {GgmlType::IQ1_S, sizeof(BlockIQ1_S)},
    {GgmlType::IQ1_M, sizeof(BlockIQ1_M)},     {GgmlType::IQ4_NL, sizeof(BlockIQ4_NL)},
    {GgmlType::IQ4_XS, sizeof(BlockIQ4_XS)},
};

std::vector<uint8_t> read_ref(GgmlType t, const char* ext) {
  const std::string path = std::string("tests/cpu/iq_ref/") + std::string(ggml_type_name(t)) + "." + ext;
  std::ifstream f(path, std::ios::binary);
  REQUIRE_MESSAGE(f.good(), "missing reference file " << path);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

std::vector<float> as_f32(const std::vector<uint8_t>& b) {
  std::vector<float> v(b.size() / 4);
  std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}

double act_value(GgmlType act_type, const uint8_t* row, int64_t i) {
  if (act_type == GgmlType::Q8_0) {
    BlockQ8_0 b;
    std::memcpy(&b, row + (i / 32) * sizeof(BlockQ8_0), sizeof b);
    return double(fp16_to_f32(b.d)) * b.qs[i % 32];
  }
  BlockQ8_K b;
  std::memcpy(&b, row + (i / 256) * sizeof(BlockQ8_K), sizeof b);
  return double(b.d) * b.qs[i % 256];
}

}  // namespace

TEST_CASE("IQ types: ggml's type ids, block sizes and bytes, and the block structs agree") {
  for (const auto& c : kIqTypes) {
    INFO(ggml_type_name(c.type));
    const auto& info = ggml_type_info(c.type);
    CHECK(info.type_size == c.block_bytes);
    CHECK(info.block_size == (c.type == GgmlType::IQ4_NL ? 32u : 256u));
    CHECK(can_dequantize(c.type));
    CHECK(can_matmul(c.type));
    CHECK_FALSE(can_quantize(c.type));
    CHECK(vec_dot_type_for(c.type) == (c.type == GgmlType::IQ4_NL ? GgmlType::Q8_0 : GgmlType::Q8_K));
  }
  CHECK(static_cast<uint32_t>(GgmlType::IQ2_XXS) == 16);
  CHECK(static_cast<uint32_t>(GgmlType::IQ1_M) == 29);
}

TEST_CASE("IQ sign codes: even parity, as the format requires") {
  for (uint32_t c = 0; c < 128; ++c) {
    CHECK((iq2_signs(c) & 127) == c);
    CHECK(std::popcount(static_cast<unsigned>(iq2_signs(c))) % 2 == 0);
  }
}

TEST_CASE("IQ dequantize_row equals ggml's dequantize_row_* bit for bit (every grid index used)") {
  for (const auto& c : kIqTypes) {
    INFO(ggml_type_name(c.type));
    const auto blocks = read_ref(c.type, "blocks");
    const auto want = as_f32(read_ref(c.type, "f32"));
    const auto& info = ggml_type_info(c.type);
    REQUIRE(blocks.size() % info.type_size == 0);
    const int64_t n = static_cast<int64_t>(blocks.size() / info.type_size * info.block_size);
    REQUIRE(static_cast<int64_t>(want.size()) == n);
    std::vector<float> got(static_cast<size_t>(n));
    dequantize_row(c.type, blocks.data(), got.data(), n);
    int mismatches = 0, nonzero = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (std::bit_cast<uint32_t>(got[i]) != std::bit_cast<uint32_t>(want[i])) ++mismatches;
      if (want[i] != 0.0f) ++nonzero;
    }
    CHECK(mismatches == 0);
    CHECK(nonzero > n / 4);  // the data is not trivially zero
  }
}

TEST_CASE("IQ vec_dot_scalar matches ggml_vec_dot_* within 1e-7 of sum |w a| (different f32 order)") {
  // Tolerance: both sides compute exact integer sums; they differ only in how the per-block f32 terms are
  // scaled and added (ggml's AVX2 code: 8-lane fma accumulation; moetier: ggml's generic sequential order),
  // each step with relative error 2^-24, over at most 32 terms per 1024-element row (worst case ~2e-6).
  // Measured: at most 1.9e-8 (IQ4_XS) against ggml and 1.7e-8 against the exact sum; bound 1e-7.
  for (const auto& c : kIqTypes) {
    INFO(ggml_type_name(c.type));
    const auto w = read_ref(c.type, "dotw");
    const auto a = read_ref(c.type, "dota");
    const auto want = as_f32(read_ref(c.type, "dot"));
    const int64_t n = 1024;
    const GgmlType at = vec_dot_type_for(c.type);
    const size_t wrow = ggml_row_bytes(c.type, n), arow = ggml_row_bytes(at, n);
    REQUIRE(w.size() == want.size() * wrow);
    REQUIRE(a.size() == want.size() * arow);
    std::vector<float> deq(n);
    double worst_peer = 0, worst_exact = 0;
    for (size_t r = 0; r < want.size(); ++r) {
      const float got = vec_dot_scalar(c.type, w.data() + r * wrow, a.data() + r * arow, n);
      dequantize_row(c.type, w.data() + r * wrow, deq.data(), n);
      double exact = 0, mag = 0;
      for (int64_t i = 0; i < n; ++i) {
        const double p = double(deq[i]) * act_value(at, a.data() + r * arow, i);
        exact += p;
        mag += std::fabs(p);
      }
      INFO("row " << r << ": moetier " << got << ", ggml " << want[r] << ", exact " << exact);
      CHECK(std::fabs(double(got) - double(want[r])) <= 1e-7 * mag);
      CHECK(std::fabs(double(got) - exact) <= 1e-7 * mag);
      worst_peer = std::max(worst_peer, std::fabs(double(got) - double(want[r])) / mag);
      worst_exact = std::max(worst_exact, std::fabs(double(got) - exact) / mag);
    }
    MESSAGE(ggml_type_name(c.type) << ": max |moetier - ggml| / sum |w a| = " << worst_peer
                                   << ", max |moetier - exact| / sum |w a| = " << worst_exact);
  }
}
