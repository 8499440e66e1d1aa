// Dequantisers against an independent element-at-a-time reading of each format, on random blocks (every
// field random) and on hand-crafted blocks whose fields are known.
#include <doctest/doctest.h>

#include <bit>
#include <cstring>
#include <random>
#include <vector>

#include "common/error.hpp"
#include "cpu/cpu_features.hpp"
#include "cpu/dequant.hpp"
#include "cpu/quant_blocks.hpp"
#include "format_reader.hpp"

using namespace moetier;
using namespace moetier::cpu;

namespace {

const GgmlType kTypes[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q4_1,
                           GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::MXFP4, GgmlType::Q2_K,
                           GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};

std::vector<float> dequant(GgmlType t, const std::vector<uint8_t>& row, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  dequantize_row(t, row.data(), out.data(), n);
  return out;
}

}  // namespace

TEST_CASE("dequantize_row equals the independent element reader on random blocks (bit for bit)") {
  std::mt19937 rng(1234);
  for (GgmlType t : kTypes) {
    const int64_t bs = ggml_type_info(t).block_size;
    for (int64_t nblocks : {1, 3, 17}) {
      const int64_t n = (bs == 1 ? 16 : bs) * nblocks + (bs == 1 ? 5 : 0);
      std::vector<uint8_t> row(ggml_row_bytes(t, static_cast<uint64_t>(n)));
      test::randomize_row(t, row.data(), n, rng);
      const auto out = dequant(t, row, n);
      int mismatches = 0;
      for (int64_t i = 0; i < n; ++i) {
        const float want = test::read_element(t, row.data(), i).value;
        if (std::bit_cast<uint32_t>(out[i]) != std::bit_cast<uint32_t>(want)) ++mismatches;
      }
      INFO(ggml_type_name(t), " n=", n);
      CHECK(mismatches == 0);
    }
  }
}

TEST_CASE("hand-crafted blocks: every field lands where the format says") {
  SUBCASE("Q4_0: d * (nibble - 8), low nibbles first") {
    BlockQ4_0 b{};
    b.d = f32_to_fp16(0.5f);
    for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
    float y[32];
    dequantize_row(GgmlType::Q4_0, &b, y, 32);
    for (int j = 0; j < 16; ++j) {
      CHECK(y[j] == 0.5f * static_cast<float>(j - 8));
      CHECK(y[j + 16] == 0.5f * static_cast<float>(7 - j));
    }
  }
  SUBCASE("Q5_1: 5th bit from qh, min added") {
    BlockQ5_1 b{};
    b.d = f32_to_fp16(0.25f);
    b.m = f32_to_fp16(-3.0f);
    const uint32_t qh = 0xA5A5F00Fu;
    std::memcpy(b.qh, &qh, 4);
    for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(3 | (12 << 4));
    float y[32];
    dequantize_row(GgmlType::Q5_1, &b, y, 32);
    for (int j = 0; j < 32; ++j) {
      const int q = (j < 16 ? 3 : 12) + 16 * static_cast<int>((qh >> j) & 1);
      CHECK(y[j] == 0.25f * static_cast<float>(q) - 3.0f);
    }
  }
  SUBCASE("MXFP4: e8m0 scale and the e2m1 code table (incl. the e = 0 subnormal scale)") {
    for (uint8_t e : {uint8_t{0}, uint8_t{1}, uint8_t{127}, uint8_t{130}, uint8_t{254}}) {
      BlockMxfp4 b{};
      b.e = e;
      for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
      float y[32];
      dequantize_row(GgmlType::MXFP4, &b, y, 32);
      const double s = std::ldexp(1.0, e - 127);
      for (int j = 0; j < 16; ++j) {
        CHECK(y[j] == static_cast<float>(test::e2m1_value(j) * s));
        CHECK(y[j + 16] == static_cast<float>(test::e2m1_value(15 - j) * s));
      }
    }
    CHECK(std::bit_cast<float>(e8m0_to_f32_half_bits(128)) == 1.0f);  // 2^(128-127) / 2
  }
  SUBCASE("Q4_K: sub-block j has scale j+1, min 2j+3 (6-bit packing), nibble = element % 16") {
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; ++j) {
      ls[j] = static_cast<uint8_t>(j == 7 ? 63 : j + 1);  // 63 exercises both top bits
      lm[j] = static_cast<uint8_t>(j == 6 ? 62 : 2 * j + 3);
    }
    BlockQ4_K b{};
    b.d = f32_to_fp16(0.125f);
    b.dmin = f32_to_fp16(0.0625f);
    for (int j = 0; j < 4; ++j) {
      b.scales[j] = static_cast<uint8_t>(ls[j] | ((ls[j + 4] >> 4) << 6));
      b.scales[j + 4] = static_cast<uint8_t>(lm[j] | ((lm[j + 4] >> 4) << 6));
      b.scales[j + 8] = static_cast<uint8_t>((ls[j + 4] & 15) | ((lm[j + 4] & 15) << 4));
    }
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l) b.qs[32 * c + l] = static_cast<uint8_t>((l % 16) | (((l + 5) % 16) << 4));
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      get_scale_min_k4(j, b.scales, sc, m);
      CHECK(sc == ls[j]);
      CHECK(m == lm[j]);
    }
    float y[256];
    dequantize_row(GgmlType::Q4_K, &b, y, 256);
    for (int i = 0; i < 256; ++i) {
      const int j = i / 32, l = i % 32;
      const int q = (j % 2 == 0) ? l % 16 : (l + 5) % 16;
      CHECK(y[i] == (0.125f * static_cast<float>(ls[j])) * static_cast<float>(q) - 0.0625f * static_cast<float>(lm[j]));
    }
  }
  SUBCASE("Q3_K: 16 signed 6-bit scales, high bit set means no -4") {
    BlockQ3_K b{};
    b.d = f32_to_fp16(1.0f);
    int want_sc[16];
    for (int j = 0; j < 16; ++j) {
      const int l = (j * 7 + 3) % 64;  // distinct 6-bit patterns
      want_sc[j] = l - 32;
      if (j < 8) b.scales[j] |= static_cast<uint8_t>(l & 15); else b.scales[j - 8] |= static_cast<uint8_t>((l & 15) << 4);
      b.scales[8 + j % 4] |= static_cast<uint8_t>((l >> 4) << (2 * (j / 4)));
    }
    int8_t sc[16];
    unpack_q3_k_scales(b.scales, sc);
    for (int j = 0; j < 16; ++j) CHECK(sc[j] == want_sc[j]);
    for (int l = 0; l < 32; ++l) b.hmask[l] = static_cast<uint8_t>(l * 37);
    for (int k = 0; k < 64; ++k) b.qs[k] = static_cast<uint8_t>(k * 11 + 1);
    float y[256];
    dequantize_row(GgmlType::Q3_K, &b, y, 256);
    for (int i = 0; i < 256; ++i) {
      const int h = i / 128, s = (i % 128) / 32, l = i % 32;
      const int q = ((b.qs[32 * h + l] >> (2 * s)) & 3) - (((b.hmask[l] >> (4 * h + s)) & 1) ? 0 : 4);
      CHECK(y[i] == static_cast<float>(want_sc[i / 16]) * static_cast<float>(q));
    }
  }
  SUBCASE("Q6_K: level 0 with all-zero bits is -32, scales are signed bytes") {
    BlockQ6_K b{};
    b.d = f32_to_fp16(2.0f);
    for (int j = 0; j < 16; ++j) b.scales[j] = static_cast<int8_t>(j % 2 ? -(j + 1) : j + 1);
    float y[256];
    dequantize_row(GgmlType::Q6_K, &b, y, 256);
    for (int i = 0; i < 256; ++i) CHECK(y[i] == 2.0f * static_cast<float>(b.scales[i / 16]) * -32.0f);
  }
}

TEST_CASE("dequantize_row rejects unsupported types and partial blocks") {
  float y[64];
  uint8_t buf[256] = {};
  CHECK_THROWS_AS(dequantize_row(GgmlType::Q4_0, buf, y, 31), Error);
  CHECK_THROWS_AS(dequantize_row(GgmlType::TQ1_0, buf, y, 256), Error);
  CHECK_FALSE(can_dequantize(GgmlType::Q8_K));
  CHECK(can_dequantize(GgmlType::MXFP4));
}

TEST_CASE("AVX2 dequantisation of Q8_0 / Q4_0 / Q5_0 equals the portable loops bit for bit" *
          doctest::skip(!cpu_features().avx2)) {
  std::mt19937 rng(77);
  const int64_t nb = 37;
  auto check = [&](GgmlType t, auto simd, auto portable, auto* blocks) {
    std::vector<uint8_t> raw(static_cast<size_t>(nb) * ggml_type_info(t).type_size);
    test::randomize_row(t, raw.data(), nb * 32, rng);
    std::memcpy(blocks, raw.data(), raw.size());
    std::vector<float> a(static_cast<size_t>(nb * 32), 1.0f), b(a.size(), 2.0f);
    simd(blocks, a.data(), nb);
    portable(blocks, b.data(), nb);
    INFO(ggml_type_name(t));
    CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
  };
  std::vector<BlockQ8_0> q8(nb);
  std::vector<BlockQ4_0> q4(nb);
  std::vector<BlockQ5_0> q5(nb);
  check(GgmlType::Q8_0, detail::dequant_q8_0_avx2, detail::dequant_q8_0, q8.data());
  check(GgmlType::Q4_0, detail::dequant_q4_0_avx2, detail::dequant_q4_0, q4.data());
  check(GgmlType::Q5_0, detail::dequant_q5_0_avx2, detail::dequant_q5_0, q5.data());
}
