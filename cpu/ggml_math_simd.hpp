// AVX2+FMA and AVX-512 kernels behind ggml_math.hpp (dispatch in ggml_math.cpp by cpu_features()).
// Same contracts and the same bits as the portable functions they replace; call only on CPUs with the ISA.
#pragma once

#include <cstdint>

#include "cpu/ggml_math.hpp"

namespace moetier::cpu::detail {

/// y[l] = ggml_expf_simd(x[l] - max) for l < 16.
void expf_minus_max16_avx2(const float* x, float max, float* y);
void expf_minus_max16_avx512(const float* x, float max, float* y);

/// h[i] = ggml_silu_simd(g[i]) * u[i] for i < n16 (a multiple of 16).
void swiglu16_avx2(const float* g, const float* u, float* h, int64_t n16);
void swiglu16_avx512(const float* g, const float* u, float* h, int64_t n16);

/// ggml_dot_f32.
float dot_f32_avx2(F32DotOrder order, const float* a, const float* b, int64_t n);
float dot_f32_avx512(F32DotOrder order, const float* a, const float* b, int64_t n);

/// ggml_gemm_f32_rows (kVecDot only when n_in % 64 == 0).
void gemm_f32_rows_avx512(F32DotOrder order, const float* w, int64_t n_in, const float* x, size_t x_stride,
                          int64_t n_tokens, float* y, int64_t ldy, int64_t row_begin, int64_t row_end);

/// ggml_dot_f32_keys.
void dot_f32_keys_avx512(const float* q, int64_t q_stride, int64_t n_heads, const float* k, int64_t k_stride,
                         int64_t n_keys, int64_t d, float* out, int64_t out_stride);
/// ggml_weighted_sum_heads in the tiled order.
void weighted_sum_tiled_heads_avx512(const float* p, int64_t p_stride, int64_t n_heads, int64_t n, const float* v,
                                     int64_t v_stride, int64_t d_v, float* out, int64_t out_stride, float* pack);

/// ggml_weighted_sum.
void weighted_sum_avx2(F32DotOrder order, const float* p, int64_t n, const float* v, int64_t v_stride, int64_t d_v,
                       float* out);
void weighted_sum_avx512(F32DotOrder order, const float* p, int64_t n, const float* v, int64_t v_stride, int64_t d_v,
                         float* out);

}  // namespace moetier::cpu::detail
