// ggml-exact f32 arithmetic (see ggml_math.hpp). Compiled with -ffp-contract=off: every fused
// multiply-add here is an explicit std::fma / _mm512_fmadd_ps, everything else is rounded separately.
#include "cpu/ggml_math.hpp"

#include <cmath>

#include "cpu/cpu_features.hpp"
#include "cpu/ggml_math_simd.hpp"

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
  const CpuFeatures& f = cpu_features();
  if (f.avx512)
    detail::swiglu16_avx512(g, u, h, n16);
  else if (f.avx2)
    detail::swiglu16_avx2(g, u, h, n16);
  else
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

namespace {

// e[l] = ggml_expf_simd(x[l] - max), l < 16.
void exp_block16(const float* x, float max, float* e) {
  const CpuFeatures& f = cpu_features();
  if (f.avx512)
    detail::expf_minus_max16_avx512(x, max, e);
  else if (f.avx2)
    detail::expf_minus_max16_avx2(x, max, e);
  else
    for (int l = 0; l < 16; ++l) e[l] = ggml_expf_simd(x[l] - max);
}

}  // namespace

double ggml_softmax_exp_sum(const float* x, float* y, int64_t n, float max) {
  double sum = 0.0;
  int64_t i = 0;
  for (; i + 15 < n; i += 16) {
    float e[16];
    exp_block16(x + i, max, e);
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
    if (m == 16) {
      exp_block16(x + i, max, e);
    } else {
      float xb[16];
      for (int64_t l = 0; l < 16; ++l) xb[l] = l < m ? x[i + l] : max;  // padding lanes are zeroed below
      exp_block16(xb, max, e);
      for (int64_t l = m; l < 16; ++l) e[l] = 0.0f;
    }
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

}  // namespace

namespace detail {

float ggml_dot_f32_scalar(F32DotOrder order, const float* a, const float* b, int64_t n) {
  return dot_generic(order, a, n, [b](int64_t i) { return b[i]; });
}

void ggml_weighted_sum_scalar(F32DotOrder order, const float* p, int64_t n, const float* v, int64_t v_stride,
                              int64_t d_v, float* out) {
  for (int64_t i = 0; i < d_v; ++i)
    out[i] = dot_generic(order, p, n, [v, v_stride, i](int64_t j) { return v[j * v_stride + i]; }, true);
}

}  // namespace detail

float ggml_dot_f32(F32DotOrder order, const float* a, const float* b, int64_t n) {
  const CpuFeatures& f = cpu_features();
  if (f.avx512) return detail::dot_f32_avx512(order, a, b, n);
  if (f.avx2) return detail::dot_f32_avx2(order, a, b, n);
  return detail::ggml_dot_f32_scalar(order, a, b, n);
}

void ggml_dot_f32_keys(const float* q, int64_t q_stride, int64_t n_heads, const float* k, int64_t k_stride,
                       int64_t n_keys, int64_t d, float* out, int64_t out_stride) {
  if (cpu_features().avx512) return detail::dot_f32_keys_avx512(q, q_stride, n_heads, k, k_stride, n_keys, d, out, out_stride);
  for (int64_t h = 0; h < n_heads; ++h)
    for (int64_t j = 0; j < n_keys; ++j)
      out[h * out_stride + j] = ggml_dot_f32(F32DotOrder::kVecDot, k + j * k_stride, q + h * q_stride, d);
}

void ggml_weighted_sum_heads(F32DotOrder order, const float* p, int64_t p_stride, int64_t n_heads, int64_t n,
                             const float* v, int64_t v_stride, int64_t d_v, float* out, int64_t out_stride,
                             float* pack) {
  if (cpu_features().avx512 && order == F32DotOrder::kTiled)
    return detail::weighted_sum_tiled_heads_avx512(p, p_stride, n_heads, n, v, v_stride, d_v, out, out_stride, pack);
  for (int64_t h = 0; h < n_heads; ++h) ggml_weighted_sum(order, p + h * p_stride, n, v, v_stride, d_v, out + h * out_stride);
}

void ggml_weighted_sum(F32DotOrder order, const float* p, int64_t n, const float* v, int64_t v_stride, int64_t d_v,
                       float* out) {
  const CpuFeatures& f = cpu_features();
  if (f.avx512)
    detail::weighted_sum_avx512(order, p, n, v, v_stride, d_v, out);
  else if (f.avx2)
    detail::weighted_sum_avx2(order, p, n, v, v_stride, d_v, out);
  else
    detail::ggml_weighted_sum_scalar(order, p, n, v, v_stride, d_v, out);
}

void ggml_gemm_f32_rows(F32DotOrder order, const float* w, int64_t n_in, const float* x, size_t x_stride,
                        int64_t n_tokens, float* y, int64_t ldy, int64_t row_begin, int64_t row_end) {
  if (cpu_features().avx512 && row_end - row_begin >= 8 && (order == F32DotOrder::kTiled || n_in % 64 == 0))
    return detail::gemm_f32_rows_avx512(order, w, n_in, x, x_stride, n_tokens, y, ldy, row_begin, row_end);
  for (int64_t r = row_begin; r < row_end; ++r)
    for (int64_t t = 0; t < n_tokens; ++t)
      y[t * ldy + r] = ggml_dot_f32(order, w + r * n_in, x + static_cast<size_t>(t) * x_stride, n_in);
}

}  // namespace moetier::cpu
