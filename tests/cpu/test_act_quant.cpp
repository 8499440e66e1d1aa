// Activation quantisation (Q8_0 / Q8_1 / Q8_K) as ggml computes it on x86.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <cstring>
#include <limits>
#include <vector>

#include "common/half.hpp"
#include "cpu/act_quant.hpp"
#include "cpu/cpu_features.hpp"
#include "format_reader.hpp"

using namespace moetier;
using namespace moetier::cpu;

TEST_CASE("Q8_0 activations: id = 127 / amax, ties round to even, d stored as fp16") {
  float x[32];
  for (int j = 0; j < 32; ++j) x[j] = 0.0f;
  x[0] = 127.0f;  // amax = 127 -> id = 1 exactly, so x * id is x
  const float ties[] = {0.5f, 1.5f, 2.5f, -2.5f, -3.5f, 126.5f, -0.5f};
  const int want[] = {0, 2, 2, -2, -4, 126, 0};
  for (int k = 0; k < 7; ++k) x[1 + k] = ties[k];
  x[10] = 3.49f;
  BlockQ8_0 b;
  quantize_row_q8_0(x, &b, 32);
  CHECK(fp16_to_f32(b.d) == 1.0f);
  CHECK(b.qs[0] == 127);
  for (int k = 0; k < 7; ++k) CHECK(b.qs[1 + k] == want[k]);
  CHECK(b.qs[10] == 3);
}

TEST_CASE("Q8_0 / Q8_1 activations match the x86 formula on random data; zero blocks give zeros") {
  const auto x = test::gaussian(32 * 40, 3);
  std::vector<float> xz = x;
  std::fill(xz.begin() + 64, xz.begin() + 96, 0.0f);  // block 2 all zero
  std::vector<BlockQ8_0> q0(40);
  std::vector<BlockQ8_1> q1(40);
  quantize_row_q8_0(xz.data(), q0.data(), 32 * 40);
  quantize_row_q8_1(xz.data(), q1.data(), 32 * 40);
  for (int b = 0; b < 40; ++b) {
    const float* xb = xz.data() + 32 * b;
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(xb[j]));
    const float id = amax != 0 ? 127.0f / amax : 0.0f;  // multiplier, not 1 / (amax / 127)
    int sum = 0;
    for (int j = 0; j < 32; ++j) {
      const int q = static_cast<int>(std::nearbyint(xb[j] * id));
      CHECK(q0[b].qs[j] == q);
      CHECK(q1[b].qs[j] == q);
      sum += q;
    }
    CHECK(q0[b].d == f32_to_fp16(amax / 127.0f));
    CHECK(q1[b].d == q0[b].d);
    CHECK(q1[b].s == f32_to_fp16((amax / 127.0f) * static_cast<float>(sum)));
  }
  for (int j = 0; j < 32; ++j) CHECK(q1[2].qs[j] == 0);
  CHECK(fp16_to_f32(q1[2].d) == 0.0f);
  CHECK(fp16_to_f32(q1[2].s) == 0.0f);
}

TEST_CASE("Q8_K activations: sign of the scale follows the largest-magnitude value; bsums per 16") {
  std::vector<float> x(512);
  for (int i = 0; i < 512; ++i) x[i] = std::sin(0.37f * static_cast<float>(i));
  x[100] = -5.0f;  // block 0: most negative dominates -> iscale = -127 / -5 > 0
  x[300] = 5.0f;   // block 1: first of two equal magnitudes wins
  x[301] = -5.0f;
  std::vector<BlockQ8_K> q(2);
  quantize_row_q8_K(x.data(), q.data(), 512);
  CHECK(q[0].d > 0.0f);
  CHECK(q[0].qs[100] == -127);
  CHECK(q[1].d < 0.0f);
  CHECK(q[1].qs[300 - 256] == -127);
  CHECK(q[1].qs[301 - 256] == 127);
  for (int b = 0; b < 2; ++b) {
    const float iscale = -127.0f / (b == 0 ? -5.0f : 5.0f);
    CHECK(q[b].d == 1.0f / iscale);
    for (int j = 0; j < 256; ++j) {
      const float v = iscale * x[256 * b + j];
      CHECK(q[b].qs[j] == static_cast<int>(std::fmin(127.0f, std::nearbyint(v))));
    }
    for (int g = 0; g < 16; ++g) {
      int s = 0;
      for (int l = 0; l < 16; ++l) s += q[b].qs[16 * g + l];
      CHECK(q[b].bsums[g] == s);
    }
  }
  // Ties: max = -127 gives iscale = 1, so x is rounded half-to-even directly.
  std::vector<float> t(256, 0.0f);
  t[0] = -127.0f;
  t[1] = 2.5f;
  t[2] = 3.5f;
  t[3] = -0.5f;
  quantize_row_q8_K(t.data(), q.data(), 256);
  CHECK(q[0].qs[1] == 2);
  CHECK(q[0].qs[2] == 4);
  CHECK(q[0].qs[3] == 0);
  // All-zero block: zero scale, quants and sums.
  std::vector<float> z(256, 0.0f);
  std::memset(q.data(), 0x5A, sizeof(BlockQ8_K));
  quantize_row_q8_K(z.data(), q.data(), 256);
  CHECK(q[0].d == 0.0f);
  for (int j = 0; j < 256; ++j) CHECK(q[0].qs[j] == 0);
  for (int g = 0; g < 16; ++g) CHECK(q[0].bsums[g] == 0);
}

TEST_CASE("F16 / BF16 activation rounding is round-to-nearest-even") {
  const float x[] = {1.0f + 1.0f / 2048, 1.0f + 3.0f / 2048, 1.0f + 1.0f / 256, 65520.0f, -0.0f};
  float y[5], z[5];
  round_row_to_f16(x, y, 5);
  round_row_to_bf16(x, z, 5);
  CHECK(y[0] == 1.0f);                    // tie to even (down)
  CHECK(y[1] == 1.0f + 4.0f / 2048);      // tie to even (up)
  CHECK(std::isinf(y[3]));                // beyond the largest fp16 after rounding
  CHECK(z[2] == 1.0f);                    // bf16 tie to even
  CHECK(std::signbit(y[4]));
}

TEST_CASE("a NaN / inf anywhere in a row gives NaN scales for every block of it (ggml would drop it)") {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const int64_t n = 512;  // 16 Q8_0 / Q8_1 blocks, 2 Q8_K blocks
  for (float bad : {nan, inf, -inf}) {
    for (int64_t at : {int64_t{0}, int64_t{300}, n - 1}) {
      CAPTURE(bad);
      CAPTURE(at);
      for (bool all_bad : {false, true}) {  // all-NaN rows used to give d = 0: every dot product 0
        std::vector<float> x = test::gaussian(n, 9);
        if (all_bad) std::fill(x.begin(), x.end(), bad);
        x[static_cast<size_t>(at)] = bad;
        std::vector<BlockQ8_0> q0(n / 32);
        std::vector<BlockQ8_1> q1(n / 32);
        std::vector<BlockQ8_K> qk(n / 256);
        quantize_row_q8_0(x.data(), q0.data(), n);
        quantize_row_q8_1(x.data(), q1.data(), n);
        quantize_row_q8_K(x.data(), qk.data(), n);
        for (const auto& b : q0) CHECK(std::isnan(fp16_to_f32(b.d)));
        for (const auto& b : q1) CHECK((std::isnan(fp16_to_f32(b.d)) && std::isnan(fp16_to_f32(b.s))));
        for (const auto& b : qk) CHECK(std::isnan(b.d));
      }
    }
  }
  // The largest finite values still quantise normally.
  std::vector<float> big(256, std::numeric_limits<float>::max());
  big[1] = -std::numeric_limits<float>::max();
  BlockQ8_0 b0;
  BlockQ8_K bk;
  quantize_row_q8_0(big.data(), &b0, 32);
  quantize_row_q8_K(big.data(), &bk, 256);
  CHECK(std::isfinite(bk.d));
  CHECK(b0.qs[0] == 127);
  CHECK(b0.qs[1] == -127);
}

TEST_CASE("Q8_K activations: the AVX2 block loop equals the scalar one byte for byte" *
          doctest::skip(!cpu_features().avx2)) {
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  const int64_t n_blocks = 40;
  std::vector<float> x(static_cast<size_t>(n_blocks * kQK_K));
  for (auto& v : x) v = nd(rng);
  // awkward blocks: all zero, ties of +a / -a (first one wins), one huge value, halves that round to even,
  // tiny (subnormal) values
  std::fill(x.begin(), x.begin() + kQK_K, 0.0f);
  x[kQK_K + 5] = -90.0f;
  x[kQK_K + 9] = 90.0f;
  x[2 * kQK_K + 3] = 90.0f;
  x[2 * kQK_K + 200] = -90.0f;
  x[3 * kQK_K + 17] = 1e30f;
  for (int j = 0; j < kQK_K; ++j) x[static_cast<size_t>(4 * kQK_K + j)] = (j % 2 ? -0.5f : 0.5f) * static_cast<float>(j % 7) + 0.5f;
  for (int j = 0; j < kQK_K; ++j) x[static_cast<size_t>(5 * kQK_K + j)] = 1e-42f * static_cast<float>(j - 128);
  std::vector<BlockQ8_K> a(static_cast<size_t>(n_blocks)), b(a.size());
  std::memset(a.data(), 0x11, a.size() * sizeof(BlockQ8_K));
  std::memset(b.data(), 0x22, b.size() * sizeof(BlockQ8_K));
  detail::quantize_blocks_q8_K_scalar(x.data(), a.data(), n_blocks);
  detail::quantize_blocks_q8_K_avx2(x.data(), b.data(), n_blocks);
  for (int64_t i = 0; i < n_blocks; ++i) {
    INFO("block ", i);
    CHECK(std::memcmp(&a[static_cast<size_t>(i)], &b[static_cast<size_t>(i)], sizeof(BlockQ8_K)) == 0);
  }
  CHECK(a[1].d > 0.0f);  // max is the first of the tie, -90: iscale = 127 / 90 > 0
  CHECK(a[2].d < 0.0f);
}
