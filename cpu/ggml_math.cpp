// ggml-exact f32 arithmetic (see ggml_math.hpp). Compiled with -ffp-contract=off: every fused
// multiply-add here is an explicit std::fma / _mm512_fmadd_ps, everything else is rounded separately.
#include "cpu/ggml_math.hpp"

#include <immintrin.h>

#include <cmath>

#include "cpu/cpu_features.hpp"

namespace moetier::cpu {

float ggml_expf_simd(float x) {
  // Constants of ggml_v_expf (ARM optimized-routines expf): round-to-int shift, log2(e), ln2 hi/lo,
  // polynomial coefficients c1..c5.
  const float kShift = 0x1.8p23f;
  const float z = std::fma(x, 0x1.715476p+0f, kShift);
  const float n = z - kShift;
  const float b = std::fma(-n, 0x1.7f7d1cp-20f, std::fma(-n, 0x1.62e4p-1f, x));
  const float u = b * b;
  const float hi = std::fma(std::fma(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, std::fma(0x1.555e66p-3f, b, 0x1.fffdb6p-2f));
  const float j = std::fma(hi, u, std::fma(0x1.ffffecp-1f, b, 1.0f));
  if (std::isnan(n)) return n;
  if (std::fabs(n) > 192.0f) return n <= 0.0f ? 0.0f : INFINITY;
  return std::ldexp(j, static_cast<int>(n));  // _mm512_scalef_ps: j * 2^n, one rounding
}

float ggml_silu_scalar(float x) { return x / (1.0f + std::exp(-x)); }

float ggml_silu_simd(float x) { return x / (1.0f + ggml_expf_simd(0.0f - x)); }

void ggml_swiglu(const float* g, const float* u, float* h, int64_t n) {
  const int64_t n16 = n - n % 16;
  for (int64_t i = 0; i < n16; ++i) h[i] = ggml_silu_simd(g[i]) * u[i];
  for (int64_t i = n16; i < n; ++i) h[i] = ggml_silu_scalar(g[i]) * u[i];
}

float ggml_reduce16(const float* p) {
  float s8[8], s4[4];
  for (int k = 0; k < 8; ++k) s8[k] = p[k] + p[k + 8];
  for (int k = 0; k < 4; ++k) s4[k] = s8[k] + s8[k + 4];
  const float a = s4[0] + s4[2], b = s4[1] + s4[3];
  return a + b;
}

double ggml_softmax_exp_sum(const float* x, float* y, int64_t n, float max) {
  double sum = 0.0;
  int64_t i = 0;
  for (; i + 15 < n; i += 16) {
    float e[16];
    for (int l = 0; l < 16; ++l) e[l] = ggml_expf_simd(x[i + l] - max);
    for (int l = 0; l < 16; ++l) y[i + l] = e[l];
    sum += static_cast<double>(ggml_reduce16(e));
  }
  for (; i < n; ++i) {
    const float e = std::exp(x[i] - max);
    sum += static_cast<double>(e);
    y[i] = e;
  }
  return sum;
}

double ggml_softmax_exp_sum_padded(const float* x, float* y, int64_t n, float max) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; i += 16) {
    float e[16] = {};
    const int64_t m = n - i < 16 ? n - i : 16;
    for (int64_t l = 0; l < m; ++l) e[l] = ggml_expf_simd(x[i + l] - max);
    for (int64_t l = 0; l < m; ++l) y[i + l] = e[l];
    sum += static_cast<double>(ggml_reduce16(e));
  }
  return sum;
}

F32DotOrder ggml_mul_mat_f32_order(int64_t n_tokens, int64_t n_in, int64_t n_out) {
  return n_tokens >= 2 && n_in % 16 == 0 && n_out % 4 == 0 ? F32DotOrder::kTiled : F32DotOrder::kVecDot;
}

namespace {

template <typename LoadB>
float dot_generic(F32DotOrder order, const float* a, int64_t n, LoadB b, bool padded = false) {
  if (order == F32DotOrder::kTiled) {
    float p[16] = {};
    for (int64_t i = 0; i < n; ++i) p[i % 16] = std::fma(a[i], b(i), p[i % 16]);
    return ggml_reduce16(p);
  }
  const int64_t np = padded ? n : n & ~int64_t{63};
  float acc[4][16] = {};
  for (int64_t i = 0; i < np; ++i) acc[(i / 16) % 4][i % 16] = std::fma(a[i], b(i), acc[(i / 16) % 4][i % 16]);
  float s = 0.0f;
  if (np > 0) {
    for (int l = 0; l < 16; ++l) {
      acc[0][l] = acc[0][l] + acc[2][l];
      acc[1][l] = acc[1][l] + acc[3][l];
    }
    for (int l = 0; l < 16; ++l) acc[0][l] = acc[0][l] + acc[1][l];
    s = ggml_reduce16(acc[0]);
  }
  for (int64_t i = np; i < n; ++i) s = s + a[i] * b(i);
  return s;
}

// ---- AVX-512 path (same operation sequence) ----
__attribute__((target("avx512f"))) inline float reduce16_avx512(__m512 v) {
  alignas(64) float p[16];
  _mm512_store_ps(p, v);
  return ggml_reduce16(p);
}

__attribute__((target("avx512f"))) float dot_tiled_avx512(const float* a, const float* b, int64_t n) {
  __m512 acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    acc = _mm512_mask3_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc, m);
  }
  return reduce16_avx512(acc);
}

__attribute__((target("avx512f"))) float dot_vec_avx512(const float* a, const float* b, int64_t n) {
  const int64_t np = n & ~int64_t{63};
  float s = 0.0f;
  if (np > 0) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    for (int64_t i = 0; i < np; i += 64) {
      acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
      acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
      acc2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), acc2);
      acc3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), acc3);
    }
    s = reduce16_avx512(_mm512_add_ps(_mm512_add_ps(acc0, acc2), _mm512_add_ps(acc1, acc3)));
  }
  for (int64_t i = np; i < n; ++i) s = s + a[i] * b[i];
  return s;
}

}  // namespace

float ggml_dot_f32(F32DotOrder order, const float* a, const float* b, int64_t n) {
  return dot_generic(order, a, n, [b](int64_t i) { return b[i]; });
}

float ggml_dot_f32_strided(F32DotOrder order, const float* a, const float* b, int64_t b_stride, int64_t n) {
  return dot_generic(order, a, n, [b, b_stride](int64_t i) { return b[i * b_stride]; });
}

float ggml_dot_f32_padded_strided(F32DotOrder order, const float* a, const float* b, int64_t b_stride, int64_t n) {
  return dot_generic(order, a, n, [b, b_stride](int64_t i) { return b[i * b_stride]; }, true);
}

void ggml_gemm_f32_rows(F32DotOrder order, const float* w, int64_t n_in, const float* x, size_t x_stride,
                        int64_t n_tokens, float* y, int64_t ldy, int64_t row_begin, int64_t row_end) {
  const bool simd = cpu_features().avx512;
  for (int64_t r = row_begin; r < row_end; ++r) {
    const float* wr = w + r * n_in;
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* xt = x + static_cast<size_t>(t) * x_stride;
      float v;
      if (simd)
        v = order == F32DotOrder::kTiled ? dot_tiled_avx512(wr, xt, n_in) : dot_vec_avx512(wr, xt, n_in);
      else
        v = ggml_dot_f32(order, wr, xt, n_in);
      y[t * ldy + r] = v;
    }
  }
}

}  // namespace moetier::cpu
