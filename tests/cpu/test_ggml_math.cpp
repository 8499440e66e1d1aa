// ggml_math.hpp: the exp polynomial against the true exp, the documented summation trees (with inputs
// whose rounding exposes any other order), the softmax block sums, SwiGLU's SIMD/tail split, the F32
// order rule of gemm_rows, and the dispatched SIMD paths (AVX-512 or AVX2+FMA, whichever the CPU has)
// against the portable std::fma ones bit for bit; MOETIER_ISA=avx2 / scalar selects the others.
// Bit-exactness against ggml itself is checked on the golden tensor dumps (tests/models/test_ggml_exact).
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "cpu/ggml_math.hpp"
#include "cpu/matmul.hpp"

using namespace moetier;
using namespace moetier::cpu;

namespace {

std::vector<float> randn(size_t n, uint32_t seed, float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

bool same_bits(float a, float b) { return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b); }

double ulp_distance(float got, double want) {
  const float w = static_cast<float>(want);
  const float ulp = std::nextafter(std::fabs(w), INFINITY) - std::fabs(w);
  return std::fabs(double(got) - want) / double(ulp);
}

}  // namespace

TEST_CASE("ggml_expf_simd: within 2.5 ulp of exp, exact at 0, flushes like ggml_v_expf") {
  double worst = 0;
  for (float x = -87.0f; x < 88.0f; x += 0.0137f) worst = std::max(worst, ulp_distance(ggml_expf_simd(x), std::exp(double(x))));
  MESSAGE("worst error over [-87, 88): ", worst, " ulp");
  CHECK(worst < 2.5);  // ggml: "max error 1.45358 plus 0.5 ulps" (ulp measured above |exp|)
  CHECK(ggml_expf_simd(0.0f) == 1.0f);
  CHECK(ggml_expf_simd(-std::numeric_limits<float>::infinity()) == 0.0f);
  CHECK(ggml_expf_simd(std::numeric_limits<float>::infinity()) == std::numeric_limits<float>::infinity());
  CHECK(ggml_expf_simd(-200.0f) == 0.0f);   // |n| > 192 -> 0
  CHECK(ggml_expf_simd(200.0f) == std::numeric_limits<float>::infinity());
  CHECK(std::isnan(ggml_expf_simd(std::numeric_limits<float>::quiet_NaN())));
  // Subnormal results are rounded once (scalef), not flushed: exp(-100) ~ 3.7e-44.
  CHECK(ggml_expf_simd(-100.0f) > 0.0f);
  CHECK(ulp_distance(ggml_expf_simd(-100.0f), std::exp(-100.0)) < 2.0);
  // It is not libm's expf: the polynomial differs in the last bit somewhere on a fine grid.
  int differ = 0;
  for (float x = -10.0f; x < 10.0f; x += 0.001f) differ += !same_bits(ggml_expf_simd(x), std::exp(x));
  CHECK(differ > 0);
}

TEST_CASE("the vectorised exp (softmax blocks) gives ggml_expf_simd's bits, extremes included") {
  std::vector<float> x;
  for (float v = -110.0f; v < 100.0f; v += 0.37f) x.push_back(v);
  for (float v : {-200.0f, -150.0f, -103.9f, -87.4f, 0.0f, -0.0f, 88.3f, 88.8f, 192.5f, 300.0f})
    x.push_back(v);
  x.push_back(std::numeric_limits<float>::infinity());
  x.push_back(-std::numeric_limits<float>::infinity());
  x.push_back(std::numeric_limits<float>::denorm_min());
  while (x.size() % 16 != 0) x.push_back(1.0f);
  std::vector<float> y(x.size());
  ggml_softmax_exp_sum(x.data(), y.data(), static_cast<int64_t>(x.size()), 0.0f);
  int bad = 0;
  for (size_t i = 0; i < x.size(); ++i) bad += !same_bits(y[i], ggml_expf_simd(x[i]));
  CHECK(bad == 0);
}

TEST_CASE("SiLU and SwiGLU: 16-blocks through the SIMD exp, the tail through expf") {
  for (float x : {-20.0f, -1.5f, -1e-20f, 0.0f, 0.3f, 4.0f, 30.0f}) {
    const double want = double(x) / (1.0 + std::exp(-double(x)));
    CHECK(std::fabs(ggml_silu_simd(x) - want) <= 4e-7 * std::fabs(want) + 1e-38);
    CHECK(std::fabs(ggml_silu_scalar(x) - want) <= 4e-7 * std::fabs(want) + 1e-38);
  }
  for (int64_t n : {5, 16, 37}) {
    const auto g = randn(static_cast<size_t>(n), 3, 3.0f), u = randn(static_cast<size_t>(n), 4);
    std::vector<float> h(g.size());
    ggml_swiglu(g.data(), u.data(), h.data(), n);
    const int64_t n16 = n - n % 16;
    for (int64_t i = 0; i < n; ++i) {
      const float want = (i < n16 ? ggml_silu_simd(g[i]) : ggml_silu_scalar(g[i])) * u[i];
      CHECK(same_bits(h[i], want));
    }
    std::vector<float> alias = g;  // h may alias g
    ggml_swiglu(alias.data(), u.data(), alias.data(), n);
    CHECK(alias == h);
  }
}

TEST_CASE("ggml_reduce16 adds in the _mm512_reduce_add_ps tree") {
  // Lane 0 = 2^24 and lane k = 1 elsewhere: a sequential sum would lose every 1 (2^24 + 1 rounds to 2^24);
  // the tree first adds lanes 1..15 among themselves except lane 8, which meets 2^24 at once.
  float p[16];
  for (float& v : p) v = 1.0f;
  p[0] = 16777216.0f;
  // s8[0] = 2^24 + 1 -> 2^24; s8[1..7] = 2; s4[0] = 2^24 + 2, s4[1..3] = 4; (2^24+2+4) + 8 = 2^24 + 14.
  CHECK(ggml_reduce16(p) == 16777216.0f + 14.0f);
  float seq = 0;
  for (float v : p) seq += v;
  CHECK(seq != ggml_reduce16(p));
}

TEST_CASE("softmax exp-sum: 16-blocks summed in f32 trees, then added in double; padded variant") {
  const auto x = randn(53, 7, 3.0f);
  const float mx = *std::max_element(x.begin(), x.end());
  std::vector<float> y(x.size());
  const double sum = ggml_softmax_exp_sum(x.data(), y.data(), 53, mx);
  double want = 0;
  for (int b = 0; b < 3; ++b) {
    float e[16];
    for (int l = 0; l < 16; ++l) e[l] = ggml_expf_simd(x[16 * b + l] - mx);
    for (int l = 0; l < 16; ++l) CHECK(same_bits(y[16 * b + l], e[l]));
    want += double(ggml_reduce16(e));
  }
  for (int i = 48; i < 53; ++i) {
    CHECK(same_bits(y[i], std::exp(x[i] - mx)));
    want += double(std::exp(x[i] - mx));
  }
  CHECK(sum == want);
  // Padded: the tail block goes through the SIMD exp too, its missing lanes count as exp(-inf) = 0.
  std::vector<float> xp(64, -std::numeric_limits<float>::infinity()), yp(64), y2(53);
  std::copy(x.begin(), x.end(), xp.begin());
  CHECK(ggml_softmax_exp_sum_padded(x.data(), y2.data(), 53, mx) == ggml_softmax_exp_sum(xp.data(), yp.data(), 64, mx));
  for (int i = 0; i < 53; ++i) CHECK(same_bits(y2[i], yp[i]));
}

TEST_CASE("F32 dot orders: tinyBLAS lanes and ggml_vec_dot_f32 accumulators, each as documented") {
  for (int64_t n : {16, 48, 64, 80, 200, 256}) {
    CAPTURE(n);
    auto a = randn(static_cast<size_t>(n), 11), b = randn(static_cast<size_t>(n), 12);
    a[0] = 3e4f, b[0] = 3e3f;  // a large term makes the result order-sensitive
    float p[16] = {};
    for (int64_t i = 0; i < n; ++i) p[i % 16] = std::fma(a[i], b[i], p[i % 16]);
    CHECK(same_bits(detail::ggml_dot_f32_scalar(F32DotOrder::kTiled, a.data(), b.data(), n), ggml_reduce16(p)));

    const int64_t np = n / 64 * 64;
    float acc[4][16] = {};
    for (int64_t i = 0; i < np; ++i) acc[(i / 16) % 4][i % 16] = std::fma(a[i], b[i], acc[(i / 16) % 4][i % 16]);
    float c[16];
    for (int l = 0; l < 16; ++l) c[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
    float s = np > 0 ? ggml_reduce16(c) : 0.0f;
    for (int64_t i = np; i < n; ++i) s = s + a[i] * b[i];
    CHECK(same_bits(detail::ggml_dot_f32_scalar(F32DotOrder::kVecDot, a.data(), b.data(), n), s));
  }
  // The two orders are really different.
  int differ = 0;
  for (uint32_t seed = 0; seed < 20; ++seed) {
    const auto a = randn(128, 100 + seed), b = randn(128, 200 + seed);
    differ += !same_bits(ggml_dot_f32(F32DotOrder::kTiled, a.data(), b.data(), 128),
                         ggml_dot_f32(F32DotOrder::kVecDot, a.data(), b.data(), 128));
  }
  CHECK(differ > 0);
}

TEST_CASE("ggml_dot_f32 / ggml_weighted_sum: the dispatched path (AVX-512 or AVX2 if present) = portable path") {
  for (auto order : {F32DotOrder::kTiled, F32DotOrder::kVecDot}) {
    for (int64_t n : {1, 15, 16, 33, 64, 80, 130, 256, 1000}) {
      CAPTURE(n);
      const auto a = randn(static_cast<size_t>(n), 21), b = randn(static_cast<size_t>(n), 22);
      CHECK(same_bits(ggml_dot_f32(order, a.data(), b.data(), n), detail::ggml_dot_f32_scalar(order, a.data(), b.data(), n)));
      for (int64_t d_v : {1, 16, 20, 64, 130}) {
        const int64_t stride = d_v + 3;
        const auto v = randn(static_cast<size_t>(n * stride), 23);
        std::vector<float> o1(static_cast<size_t>(d_v)), o2(o1.size());
        ggml_weighted_sum(order, a.data(), n, v.data(), stride, d_v, o1.data());
        detail::ggml_weighted_sum_scalar(order, a.data(), n, v.data(), stride, d_v, o2.data());
        for (int64_t i = 0; i < d_v; ++i) CHECK(same_bits(o1[i], o2[i]));
        // Padded semantics: the vec_dot order has no unfused tail, unlike a dot over exactly n values.
        if (order == F32DotOrder::kTiled) {
          std::vector<float> col(static_cast<size_t>(n));
          for (int64_t j = 0; j < n; ++j) col[j] = v[j * stride];
          CHECK(same_bits(o1[0], detail::ggml_dot_f32_scalar(order, a.data(), col.data(), n)));
        }
      }
    }
  }
}

TEST_CASE("ggml_dot_f32_keys / ggml_weighted_sum_heads (heads of a KV group together) = per head, portable path") {
  for (int64_t d : {64, 128, 192, 80, 16}) {  // 80, 16: not multiples of 64 (per-key path)
    for (int64_t n_keys : {1, 15, 16, 17, 48, 100}) {
      CAPTURE(d);
      CAPTURE(n_keys);
      const int64_t n_heads = 3, stride = d + 8, out_stride = n_keys + 5;
      const auto q = randn(static_cast<size_t>(n_heads * d), 31), k = randn(static_cast<size_t>(n_keys * stride), 32);
      std::vector<float> out(static_cast<size_t>(n_heads * out_stride), 7.0f);
      ggml_dot_f32_keys(q.data(), d, n_heads, k.data(), stride, n_keys, d, out.data(), out_stride);
      int wrong = 0, touched = 0;
      for (int64_t h = 0; h < n_heads; ++h)
        for (int64_t j = 0; j < out_stride; ++j) {
          const float got = out[static_cast<size_t>(h * out_stride + j)];
          if (j >= n_keys) {
            touched += got != 7.0f;  // nothing written past n_keys
            continue;
          }
          wrong += !same_bits(got, detail::ggml_dot_f32_scalar(F32DotOrder::kVecDot, k.data() + j * stride,
                                                               q.data() + h * d, d));
        }
      CHECK(wrong == 0);
      CHECK(touched == 0);
      // value sums of the same keys for the 3 heads (tiled and vec_dot orders), against one head at a time
      for (auto order : {F32DotOrder::kTiled, F32DotOrder::kVecDot}) {
        const auto p = randn(static_cast<size_t>(n_heads * out_stride), 33);
        std::vector<float> o1(static_cast<size_t>(n_heads * (d + 1)), 5.0f), o2(o1.size(), 5.0f);
        ggml_weighted_sum_heads(order, p.data(), out_stride, n_heads, n_keys, k.data(), stride, d, o1.data(), d + 1);
        for (int64_t h = 0; h < n_heads; ++h)
          detail::ggml_weighted_sum_scalar(order, p.data() + h * out_stride, n_keys, k.data(), stride, d, o2.data() + h * (d + 1));
        int diff = 0;
        for (size_t i = 0; i < o1.size(); ++i) diff += !same_bits(o1[i], o2[i]);
        CHECK(diff == 0);
      }
    }
  }
}

TEST_CASE("ggml_gemm_f32_rows (16 rows reduced together on AVX-512) = ggml_dot_f32 per output, portable path") {
  for (auto order : {F32DotOrder::kTiled, F32DotOrder::kVecDot}) {
    for (int64_t n_in : {64, 128, 100, 2048}) {
      for (auto [row_begin, row_end] : {std::pair<int64_t, int64_t>{0, 37}, {5, 21}, {3, 11}, {0, 7}}) {
        CAPTURE(n_in);
        CAPTURE(row_begin);
        CAPTURE(row_end);
        const int64_t n_out = 40, n_tokens = 3, ldy = n_out + 2;
        const auto w = randn(static_cast<size_t>(n_out * n_in), 41), x = randn(static_cast<size_t>(n_tokens * n_in), 42);
        std::vector<float> y(static_cast<size_t>(n_tokens * ldy), 9.0f);
        ggml_gemm_f32_rows(order, w.data(), n_in, x.data(), static_cast<size_t>(n_in), n_tokens, y.data(), ldy, row_begin,
                           row_end);
        int wrong = 0, touched = 0;
        for (int64_t t = 0; t < n_tokens; ++t)
          for (int64_t r = 0; r < ldy; ++r) {
            const float got = y[static_cast<size_t>(t * ldy + r)];
            if (r < row_begin || r >= row_end) {
              touched += got != 9.0f;
              continue;
            }
            wrong += !same_bits(got, detail::ggml_dot_f32_scalar(order, w.data() + r * n_in, x.data() + t * n_in, n_in));
          }
        CHECK(wrong == 0);
        CHECK(touched == 0);
      }
    }
  }
}

TEST_CASE("gemm_rows with F32 weights follows ggml's mul_mat / mul_mat_id choice") {
  CHECK(ggml_mul_mat_f32_order(2, 64, 16) == F32DotOrder::kTiled);
  CHECK(ggml_mul_mat_f32_order(1, 64, 16) == F32DotOrder::kVecDot);   // sgemm only for n >= 2
  CHECK(ggml_mul_mat_f32_order(5, 40, 16) == F32DotOrder::kVecDot);   // k % 16
  CHECK(ggml_mul_mat_f32_order(5, 64, 18) == F32DotOrder::kVecDot);   // m % 4
  const int64_t n_out = 12, n_in = 96, n_tok = 3;
  const auto w = randn(static_cast<size_t>(n_out * n_in), 31), x = randn(static_cast<size_t>(n_tok * n_in), 32);
  for (auto path : {F32Path::kMulMat, F32Path::kVecDot}) {
    ActivationBuffer act;
    quantize_activations(GgmlType::F32, x.data(), n_tok, n_in, act, path);
    std::vector<float> y(static_cast<size_t>(n_tok * n_out));
    gemm_rows(GgmlType::F32, w.data(), n_in, act, y.data(), n_out, 0, n_out);
    const F32DotOrder order = path == F32Path::kMulMat ? F32DotOrder::kTiled : F32DotOrder::kVecDot;
    for (int64_t t = 0; t < n_tok; ++t)
      for (int64_t r = 0; r < n_out; ++r)
        CHECK(same_bits(y[t * n_out + r], detail::ggml_dot_f32_scalar(order, w.data() + r * n_in, x.data() + t * n_in, n_in)));
    // A single token is ggml's vec_dot path whatever the requested path.
    ActivationBuffer one;
    quantize_activations(GgmlType::F32, x.data(), 1, n_in, one, path);
    std::vector<float> y1(static_cast<size_t>(n_out));
    gemm_rows(GgmlType::F32, w.data(), n_in, one, y1.data(), n_out, 0, n_out);
    for (int64_t r = 0; r < n_out; ++r)
      CHECK(same_bits(y1[r], detail::ggml_dot_f32_scalar(F32DotOrder::kVecDot, w.data() + r * n_in, x.data(), n_in)));
  }
}
