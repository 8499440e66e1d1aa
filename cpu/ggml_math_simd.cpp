// AVX2+FMA and AVX-512 versions of the ggml_math.hpp routines. Each performs exactly the operation
// sequence of the portable std::fma code in ggml_math.cpp (same products fused, same lane trees), so
// the bits do not depend on the ISA; tests/cpu/test_ggml_math.cpp compares them. Compiled with
// -ffp-contract=off; every function carries its own target attribute (dispatch in ggml_math.cpp).
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "cpu/ggml_math.hpp"
#include "cpu/ggml_math_simd.hpp"

namespace moetier::cpu::detail {
namespace {

#define MOETIER_AVX2 __attribute__((target("avx2,fma")))
#define MOETIER_AVX512 __attribute__((target("avx512f,avx2,fma")))

// ---- exp polynomial (ggml_v_expf), 8 and 16 lanes ----
struct ExpConst {
  static constexpr float kShift = 0x1.8p23f, kLog2e = 0x1.715476p+0f, kLn2Hi = 0x1.62e4p-1f, kLn2Lo = 0x1.7f7d1cp-20f;
  static constexpr float kC1 = 0x1.ffffecp-1f, kC2 = 0x1.fffdb6p-2f, kC3 = 0x1.555e66p-3f, kC4 = 0x1.573e2ep-5f,
                         kC5 = 0x1.0e4020p-7f;
};

// j * 2^n for integral n in [-192, 192], rounded once: exact product in double, one conversion to f32.
MOETIER_AVX2 inline __m128 scale_pow2_half(__m128 j, __m128 n) {
  const __m256d jd = _mm256_cvtps_pd(j);
  const __m256i e = _mm256_slli_epi64(_mm256_add_epi64(_mm256_cvtepi32_epi64(_mm_cvtps_epi32(n)), _mm256_set1_epi64x(1023)), 52);
  return _mm256_cvtpd_ps(_mm256_mul_pd(jd, _mm256_castsi256_pd(e)));
}

MOETIER_AVX2 inline __m256 expf8(__m256 x) {
  using C = ExpConst;
  const __m256 r = _mm256_set1_ps(C::kShift);
  const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(C::kLog2e), r);
  const __m256 n = _mm256_sub_ps(z, r);
  const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(C::kLn2Lo), _mm256_fnmadd_ps(n, _mm256_set1_ps(C::kLn2Hi), x));
  const __m256 u = _mm256_mul_ps(b, b);
  const __m256 j = _mm256_fmadd_ps(
      _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(C::kC5), b, _mm256_set1_ps(C::kC4)), u,
                      _mm256_fmadd_ps(_mm256_set1_ps(C::kC3), b, _mm256_set1_ps(C::kC2))),
      u, _mm256_fmadd_ps(_mm256_set1_ps(C::kC1), b, _mm256_set1_ps(1.0f)));
  const __m256 big = _mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), n), _mm256_set1_ps(192.0f), _CMP_GT_OQ);
  const __m256 nc = _mm256_blendv_ps(n, _mm256_setzero_ps(), big);  // keep the conversion in range
  const __m256 res = _mm256_set_m128(scale_pow2_half(_mm256_extractf128_ps(j, 1), _mm256_extractf128_ps(nc, 1)),
                                     scale_pow2_half(_mm256_castps256_ps128(j), _mm256_castps256_ps128(nc)));
  const __m256 alt = _mm256_blendv_ps(_mm256_set1_ps(INFINITY), _mm256_setzero_ps(),
                                      _mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ));
  return _mm256_blendv_ps(res, alt, big);
}

MOETIER_AVX512 inline __m512 expf16(__m512 x) {  // ggml_v_expf, AVX-512 variant, as written there
  using C = ExpConst;
  const __m512 r = _mm512_set1_ps(C::kShift);
  const __m512 z = _mm512_fmadd_ps(x, _mm512_set1_ps(C::kLog2e), r);
  const __m512 n = _mm512_sub_ps(z, r);
  const __m512 b = _mm512_fnmadd_ps(n, _mm512_set1_ps(C::kLn2Lo), _mm512_fnmadd_ps(n, _mm512_set1_ps(C::kLn2Hi), x));
  const __mmask16 d = _mm512_cmp_ps_mask(_mm512_abs_ps(n), _mm512_set1_ps(192.0f), _CMP_GT_OQ);
  const __m512 u = _mm512_mul_ps(b, b);
  const __m512 j = _mm512_fmadd_ps(
      _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_set1_ps(C::kC5), b, _mm512_set1_ps(C::kC4)), u,
                      _mm512_fmadd_ps(_mm512_set1_ps(C::kC3), b, _mm512_set1_ps(C::kC2))),
      u, _mm512_fmadd_ps(_mm512_set1_ps(C::kC1), b, _mm512_set1_ps(1.0f)));
  const __m512 res = _mm512_maskz_scalef_ps(static_cast<__mmask16>(0xFFFF), j, n);  // = _mm512_scalef_ps
  const __m512 alt = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(n, _mm512_setzero_ps(), _CMP_LE_OQ),
                                          _mm512_set1_ps(INFINITY), _mm512_setzero_ps());
  return _mm512_mask_blend_ps(d, res, alt);
}

}  // namespace

MOETIER_AVX2 void expf_minus_max16_avx2(const float* x, float max, float* y) {
  const __m256 m = _mm256_set1_ps(max);
  _mm256_storeu_ps(y, expf8(_mm256_sub_ps(_mm256_loadu_ps(x), m)));
  _mm256_storeu_ps(y + 8, expf8(_mm256_sub_ps(_mm256_loadu_ps(x + 8), m)));
}

MOETIER_AVX512 void expf_minus_max16_avx512(const float* x, float max, float* y) {
  _mm512_storeu_ps(y, expf16(_mm512_sub_ps(_mm512_loadu_ps(x), _mm512_set1_ps(max))));
}

MOETIER_AVX2 void swiglu16_avx2(const float* g, const float* u, float* h, int64_t n16) {
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  for (int64_t i = 0; i < n16; i += 8) {
    const __m256 x = _mm256_loadu_ps(g + i);
    const __m256 silu = _mm256_div_ps(x, _mm256_add_ps(one, expf8(_mm256_sub_ps(zero, x))));
    _mm256_storeu_ps(h + i, _mm256_mul_ps(silu, _mm256_loadu_ps(u + i)));
  }
}

MOETIER_AVX512 void swiglu16_avx512(const float* g, const float* u, float* h, int64_t n16) {
  const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
  for (int64_t i = 0; i < n16; i += 16) {
    const __m512 x = _mm512_loadu_ps(g + i);
    const __m512 silu = _mm512_div_ps(x, _mm512_add_ps(one, expf16(_mm512_sub_ps(zero, x))));
    _mm512_storeu_ps(h + i, _mm512_mul_ps(silu, _mm512_loadu_ps(u + i)));
  }
}

// ---- dot products: accumulators stored to 16 lanes, then the scalar tree (ggml_reduce16) ----
MOETIER_AVX2 float dot_f32_avx2(F32DotOrder order, const float* a, const float* b, int64_t n) {
  alignas(32) float p[16];
  if (order == F32DotOrder::kTiled) {
    __m256 lo = _mm256_setzero_ps(), hi = lo;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
      lo = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), lo);
      hi = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), hi);
    }
    _mm256_store_ps(p, lo);
    _mm256_store_ps(p + 8, hi);
    for (; i < n; ++i) p[i % 16] = std::fma(a[i], b[i], p[i % 16]);
    return ggml_reduce16(p);
  }
  const int64_t np = n & ~int64_t{63};
  float s = 0.0f;
  if (np > 0) {
    __m256 acc[8];
    for (auto& v : acc) v = _mm256_setzero_ps();
    for (int64_t i = 0; i < np; i += 64)
      for (int q = 0; q < 8; ++q) acc[q] = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8 * q), _mm256_loadu_ps(b + i + 8 * q), acc[q]);
    // accumulator r = lanes {acc[2r], acc[2r + 1]}; (acc0 + acc2) + (acc1 + acc3)
    const __m256 lo = _mm256_add_ps(_mm256_add_ps(acc[0], acc[4]), _mm256_add_ps(acc[2], acc[6]));
    const __m256 hi = _mm256_add_ps(_mm256_add_ps(acc[1], acc[5]), _mm256_add_ps(acc[3], acc[7]));
    _mm256_store_ps(p, lo);
    _mm256_store_ps(p + 8, hi);
    s = ggml_reduce16(p);
  }
  for (int64_t i = np; i < n; ++i) s = s + a[i] * b[i];
  return s;
}

// ggml_vec_dot_f32's 16 lanes before ggml_reduce16 for np (a multiple of 64) products: four 16-lane fma
// accumulators (accumulator (i / 16) % 4), combined (acc0 + acc2) + (acc1 + acc3).
MOETIER_AVX512 inline __m512 vec_dot_lanes16(const float* a, const float* b, int64_t np) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
  for (int64_t i = 0; i < np; i += 64) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
    acc2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), acc2);
    acc3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), acc3);
  }
  return _mm512_add_ps(_mm512_add_ps(acc0, acc2), _mm512_add_ps(acc1, acc3));
}

// The 16 lanes of tinyBLAS's order before ggml_reduce16: p[i % 16] = fma(a[i], b[i], p[i % 16]), i ascending.
MOETIER_AVX512 inline __m512 tiled_lanes16(const float* a, const float* b, int64_t n) {
  __m512 acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    acc = _mm512_mask3_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc, m);
  }
  return acc;
}

MOETIER_AVX512 float dot_f32_avx512(F32DotOrder order, const float* a, const float* b, int64_t n) {
  alignas(64) float p[16];
  if (order == F32DotOrder::kTiled) {
    _mm512_store_ps(p, tiled_lanes16(a, b, n));
    return ggml_reduce16(p);
  }
  const int64_t np = n & ~int64_t{63};
  float s = 0.0f;
  if (np > 0) {
    _mm512_store_ps(p, vec_dot_lanes16(a, b, np));
    s = ggml_reduce16(p);
  }
  for (int64_t i = np; i < n; ++i) s = s + a[i] * b[i];
  return s;
}

// ---- attention value sums: kBlocks vectors of columns per sweep over the rows; accumulator q of a
// column block holds lane q (tiled: j % 16; vec_dot: j % 64 = 16 * ((j / 16) % 4) + j % 16); then the
// lane tree of ggml_dot_f32, vector-wise (the AVX2 and AVX-512 bodies are the same code on 8 / 16 columns).
#define MOETIER_WEIGHTED_SUM_BODY(V, kW, ZERO, SET1, LOAD, LOAD_PART, FMADD, ADD, STORE_PART)                     \
  constexpr int kBlocks = 4;                                                                                    \
  const int n_acc = order == F32DotOrder::kTiled ? 16 : 64;                                                     \
  alignas(64) V acc[64][kBlocks];                                                                               \
  for (int64_t c0 = 0; c0 < d_v; c0 += kW * kBlocks) {                                                          \
    const int nb = static_cast<int>(std::min<int64_t>(kBlocks, (d_v - c0 + kW - 1) / kW));                     \
    const int last_w = static_cast<int>(std::min<int64_t>(kW, d_v - c0 - kW * (nb - 1)));                       \
    for (int q = 0; q < n_acc; ++q)                                                                             \
      for (int c = 0; c < nb; ++c) acc[q][c] = ZERO;                                                            \
    for (int64_t j0 = 0; j0 < n; j0 += n_acc) {                                                                 \
      const int m = static_cast<int>(std::min<int64_t>(n_acc, n - j0));                                         \
      for (int q = 0; q < m; ++q) {                                                                             \
        const V pj = SET1(p[j0 + q]);                                                                           \
        const float* row = v + (j0 + q) * v_stride + c0;                                                        \
        for (int c = 0; c + 1 < nb; ++c) acc[q][c] = FMADD(pj, LOAD(row + c * kW), acc[q][c]);                 \
        acc[q][nb - 1] = FMADD(pj, LOAD_PART(row + (nb - 1) * kW, last_w), acc[q][nb - 1]);                     \
      }                                                                                                         \
    }                                                                                                           \
    for (int c = 0; c < nb; ++c) {                                                                              \
      V t[16];                                                                                                  \
      for (int l = 0; l < 16; ++l)                                                                              \
        t[l] = n_acc == 64 ? ADD(ADD(acc[l][c], acc[32 + l][c]), ADD(acc[16 + l][c], acc[48 + l][c])) : acc[l][c]; \
      for (int k = 0; k < 8; ++k) t[k] = ADD(t[k], t[k + 8]);                                                   \
      for (int k = 0; k < 4; ++k) t[k] = ADD(t[k], t[k + 4]);                                                   \
      STORE_PART(out + c0 + c * kW, ADD(ADD(t[0], t[2]), ADD(t[1], t[3])), c + 1 < nb ? kW : last_w);            \
    }                                                                                                           \
  }

namespace {

MOETIER_AVX2 inline __m256 load_part8(const float* x, int w) {
  if (w == 8) return _mm256_loadu_ps(x);
  alignas(32) float t[8] = {};
  std::copy_n(x, w, t);
  return _mm256_load_ps(t);
}

MOETIER_AVX2 inline void store_part8(float* y, __m256 v, int w) {
  alignas(32) float t[8];
  _mm256_store_ps(t, v);
  std::copy_n(t, w, y);
}

MOETIER_AVX512 inline __m512 load_part16(const float* x, int w) {
  return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << w) - 1), x);
}

MOETIER_AVX512 inline void store_part16(float* y, __m512 v, int w) {
  _mm512_mask_storeu_ps(y, static_cast<__mmask16>((1u << w) - 1), v);
}

}  // namespace

MOETIER_AVX2 void weighted_sum_avx2(F32DotOrder order, const float* p, int64_t n, const float* v, int64_t v_stride,
                                    int64_t d_v, float* out) {
  MOETIER_WEIGHTED_SUM_BODY(__m256, 8, _mm256_setzero_ps(), _mm256_set1_ps, _mm256_loadu_ps, load_part8,
                            _mm256_fmadd_ps, _mm256_add_ps, store_part8)
}

// Tiled order on 16 columns at a time with the 16 accumulators (lane q = key % 16) in registers: per key
// one load and one fma, instead of 4 column blocks whose 64 accumulators live in memory. A key past n adds
// nothing, as in the generic body (the tail's missing keys contribute p = 0 times 0: acc + 0 is acc,
// since an accumulator that starts at +0 never becomes -0).
MOETIER_AVX512 void weighted_sum_tiled_heads_avx512(const float* p, int64_t p_stride, int64_t n_heads, int64_t n,
                                                    const float* v, int64_t v_stride, int64_t d_v, float* out,
                                                    int64_t out_stride, float* pack) {
  for (int64_t c0 = 0; c0 < d_v; c0 += 16) {
    const auto mask = static_cast<__mmask16>((1u << std::min<int64_t>(16, d_v - c0)) - 1);
    // Several heads: the column block is first packed contiguously (V rows are often 2^k floats apart, so
    // the block's cache lines would fall into a few L1 sets and evict each other between heads).
    const float* src = v + c0;
    int64_t stride = v_stride;
    if (n_heads > 1 && pack) {
      for (int64_t j = 0; j < n; ++j) _mm512_store_ps(pack + j * 16, _mm512_maskz_loadu_ps(mask, v + j * v_stride + c0));
      src = pack;
      stride = 16;
    }
    for (int64_t h = 0; h < n_heads; ++h) {
      const float* ph = p + h * p_stride;
      __m512 acc[16];
      for (auto& a : acc) a = _mm512_setzero_ps();
      for (int64_t j0 = 0; j0 < n; j0 += 16) {
        const bool full = j0 + 16 <= n;
#pragma GCC unroll 16
        for (int q = 0; q < 16; ++q) {
          const bool in = full || j0 + q < n;
          const __m512 pj = _mm512_set1_ps(in ? ph[j0 + q] : 0.0f);
          const __m512 row = _mm512_maskz_loadu_ps(in ? mask : __mmask16{0}, src + (j0 + q) * stride);
          acc[q] = _mm512_fmadd_ps(pj, row, acc[q]);
        }
      }
      for (int k = 0; k < 8; ++k) acc[k] = _mm512_add_ps(acc[k], acc[k + 8]);
      for (int k = 0; k < 4; ++k) acc[k] = _mm512_add_ps(acc[k], acc[k + 4]);
      _mm512_mask_storeu_ps(out + h * out_stride + c0, mask,
                            _mm512_add_ps(_mm512_add_ps(acc[0], acc[2]), _mm512_add_ps(acc[1], acc[3])));
    }
  }
}

MOETIER_AVX512 void weighted_sum_avx512(F32DotOrder order, const float* p, int64_t n, const float* v, int64_t v_stride,
                                        int64_t d_v, float* out) {
  if (order == F32DotOrder::kTiled) return weighted_sum_tiled_heads_avx512(p, 0, 1, n, v, v_stride, d_v, out, 0, nullptr);
  MOETIER_WEIGHTED_SUM_BODY(__m512, 16, _mm512_setzero_ps(), _mm512_set1_ps, _mm512_loadu_ps, load_part16,
                            _mm512_fmadd_ps, _mm512_add_ps, store_part16)
}

#undef MOETIER_WEIGHTED_SUM_BODY

// ---- attention scores: 16 keys at a time; each key's four 16-lane accumulators are combined as in
// dot_f32_avx512 (kVecDot), then the 16 lane trees of ggml_reduce16 run together on transposed vectors:
// (l, l + 8) by 256-bit halves, (l, l + 4) by 128-bit blocks, then (0, 2) / (1, 3) and a + b inside blocks.
// Lane u = ggml_reduce16(s[u]) for 16 vectors at once, the same adds in the same pairs: (l, l + 8) by
// 256-bit halves, (l, l + 4) by 128-bit blocks, then (0, 2) / (1, 3) and a + b inside blocks.
MOETIER_AVX512 inline __m512 reduce16x16(const __m512* s) {
  __m512 x[8], y[4], z[2];
  for (int u = 0; u < 8; ++u)
    x[u] = _mm512_add_ps(_mm512_shuffle_f32x4(s[2 * u], s[2 * u + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_f32x4(s[2 * u], s[2 * u + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  for (int u = 0; u < 4; ++u)
    y[u] = _mm512_add_ps(_mm512_shuffle_f32x4(x[2 * u], x[2 * u + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(x[2 * u], x[2 * u + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  for (int u = 0; u < 2; ++u)
    z[u] = _mm512_add_ps(_mm512_shuffle_ps(y[2 * u], y[2 * u + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(y[2 * u], y[2 * u + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512 w = _mm512_add_ps(_mm512_shuffle_ps(z[0], z[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_ps(z[0], z[1], _MM_SHUFFLE(3, 1, 3, 1)));
  // lane 4m + i of w holds vector m + 4i
  return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), w);
}

// ggml_gemm_f32_rows: 16 rows at a time per token, their lane trees reduced together (a partial last group
// repeats its last row in the lanes that are not stored). kVecDot needs n_in % 64 == 0 (no unfused tail).
MOETIER_AVX512 void gemm_f32_rows_avx512(F32DotOrder order, const float* w, int64_t n_in, const float* x,
                                         size_t x_stride, int64_t n_tokens, float* y, int64_t ldy, int64_t row_begin,
                                         int64_t row_end) {
  for (int64_t r0 = row_begin; r0 < row_end; r0 += 16) {
    const int valid = static_cast<int>(std::min<int64_t>(16, row_end - r0));
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* xt = x + static_cast<size_t>(t) * x_stride;
      __m512 s[16];
      for (int u = 0; u < 16; ++u) {
        const float* wr = w + (r0 + std::min(u, valid - 1)) * n_in;
        s[u] = order == F32DotOrder::kTiled ? tiled_lanes16(wr, xt, n_in) : vec_dot_lanes16(wr, xt, n_in);
      }
      _mm512_mask_storeu_ps(y + t * ldy + r0, static_cast<__mmask16>((1u << valid) - 1), reduce16x16(s));
    }
  }
}

MOETIER_AVX512 void dot_f32_keys_avx512(const float* q, int64_t q_stride, int64_t n_heads, const float* k,
                                        int64_t k_stride, int64_t n_keys, int64_t d, float* out, int64_t out_stride) {
  int64_t j = 0;
  // A last, partial batch repeats its last key in the missing lanes, which are not stored.
  for (; j < n_keys && d % 64 == 0; j += 16) {
    const int valid = static_cast<int>(std::min<int64_t>(16, n_keys - j));
    for (int64_t h = 0; h < n_heads; ++h) {  // the 16 key rows stay in cache from one head to the next
      const float* qh = q + h * q_stride;
      __m512 s[16];
      for (int u = 0; u < 16; ++u) s[u] = vec_dot_lanes16(k + (j + std::min(u, valid - 1)) * k_stride, qh, d);
      _mm512_mask_storeu_ps(out + h * out_stride + j, static_cast<__mmask16>((1u << valid) - 1), reduce16x16(s));
    }
  }
  for (; j < n_keys; ++j)
    for (int64_t h = 0; h < n_heads; ++h)
      out[h * out_stride + j] = dot_f32_avx512(F32DotOrder::kVecDot, k + j * k_stride, q + h * q_stride, d);
}

}  // namespace moetier::cpu::detail
