// Bit-exact emulation of the f32 arithmetic of ggml's x86 CPU backend as llama.cpp's golden outputs were
// produced (AVX-512 F/DQ build, llamafile sgemm on, GCC with its default FMA contraction): the SIMD exp
// polynomial (ggml_v_expf), SiLU / SwiGLU, the softmax exp-sum, and the two summation orders ggml uses
// for F32 x F32 dot products. Each function states the ggml code it follows; the operation order (which
// products are fused, how lanes are reduced) is part of the contract, checked bit for bit against the
// golden tensor dumps. Reference code is plain C++ with std::fma (correctly rounded everywhere); the
// AVX2+FMA and AVX-512 paths of ggml_math_simd.cpp, chosen by cpu_features(), give the same bits.
#pragma once

#include <cstddef>
#include <cstdint>

namespace moetier::cpu {

/// exp(x) as ggml_v_expf (ggml-cpu/vec.h, AVX-512 variant; ARM's optimised-routines polynomial):
/// n = round(x log2 e) via the 0x1.8p23 shift (one fma), b = x - n ln2 in two fma steps (hi/lo ln2),
/// j = 1 + b c1 + b^2 (c2 + b c3) + b^4 (c4 + b c5) with fmas, result j * 2^n (scalef, exactly rounded);
/// |n| > 192 gives +inf (n > 0) or 0. Max error ~1.5 ulp against the true exp. -inf -> 0.
float ggml_expf_simd(float x);

/// silu(x) = x / (1 + exp(-x)) with libm expf: ggml_silu_f32 (scalar tails of ggml's SiLU loops).
float ggml_silu_scalar(float x);

/// silu(x) = x / (1 + ggml_expf_simd(0 - x)): ggml_v_silu (16-lane bodies of ggml's SiLU loops).
float ggml_silu_simd(float x);

/// h[i] = silu(g[i]) * u[i] as ggml_vec_swiglu_f32: elements of whole 16-blocks use ggml_silu_simd, the
/// last n % 16 ggml_silu_scalar. g, u, h: [n] f32; h may alias g or u.
void ggml_swiglu(const float* g, const float* u, float* h, int64_t n);

/// ggml_vec_soft_max_f32: y[i] = exp(x[i] - max) and returns their sum in double, summed as ggml does:
/// per whole 16-block, ggml_expf_simd and the block's f32 sum (tree: lanes k + k+8, then + k+4, + k+2,
/// + k+1) added to the double total; the last n % 16 with libm expf, each added in double.
/// x, y: [n] f32 (y may alias x).
double ggml_softmax_exp_sum(const float* x, float* y, int64_t n, float max);

/// ggml_softmax_exp_sum over x padded with -inf to a multiple of 16 (a masked row of llama.cpp's KV
/// cache, whose length is a multiple of 256): every element goes through ggml_expf_simd and the last
/// block's sum includes the padding's zeros. y: [n] written (the padding is not stored).
double ggml_softmax_exp_sum_padded(const float* x, float* y, int64_t n, float max);

/// The f32 sum of 16 lanes in the tree of _mm512_reduce_add_ps: s8[k] = p[k] + p[k+8],
/// s4[k] = s8[k] + s8[k+4], (s4[0] + s4[2]) + (s4[1] + s4[3]).
float ggml_reduce16(const float* p);

/// Summation orders of ggml's F32 x F32 dot products (x86, AVX-512 build):
///  * kTiled: llamafile tinyBLAS<16, __m512> (ggml mul_mat when it accepts the shape): 16 lanes,
///    p[i % 16] = fma(a[i], b[i], p[i % 16]) for i ascending, then ggml_reduce16.
///  * kVecDot: ggml_vec_dot_f32: for i < n rounded down to 64, four 16-lane fma accumulators
///    (accumulator (i / 16) % 4, lane i % 16), combined (acc0 + acc2) + (acc1 + acc3) lane-wise, then
///    ggml_reduce16; the remaining n % 64 products added one by one (s = s + a[i] * b[i], not fused).
enum class F32DotOrder : uint8_t { kTiled, kVecDot };

/// The order ggml's mul_mat uses for F32 weights W [n_out, n_in] times n_tokens contiguous f32
/// activation rows: kTiled when llamafile_sgemm accepts (n_tokens >= 2, n_in % 16 == 0,
/// n_out % 4 == 0), else kVecDot. (mul_mat_id, i.e. routed experts, and activations that are not
/// contiguous always use kVecDot.)
F32DotOrder ggml_mul_mat_f32_order(int64_t n_tokens, int64_t n_in, int64_t n_out);

/// dot(a, b) over n f32 values in the given order (kTiled: lanes continue as i % 16 when n % 16 != 0,
/// a case ggml never runs). SIMD when the CPU has it (same bits).
float ggml_dot_f32(F32DotOrder order, const float* a, const float* b, int64_t n);

/// Attention scores of n_heads query rows against the same keys: out[h * out_stride + j] =
/// ggml_dot_f32(F32DotOrder::kVecDot, k + j * k_stride, q + h * q_stride, d) for h < n_heads, j < n_keys,
/// the same bits as calling it per key. k: n_keys rows of d floats at stride k_stride; q: rows of d (read).
/// On AVX-512 with d % 64 == 0, 16 keys at a time for every head in turn (each batch of key rows is read
/// from memory once, not once per head), the 16 lane trees reduced together.
void ggml_dot_f32_keys(const float* q, int64_t q_stride, int64_t n_heads, const float* k, int64_t k_stride,
                       int64_t n_keys, int64_t d, float* out, int64_t out_stride);

/// ggml_weighted_sum for n_heads probability rows p + h * p_stride over the same values, into
/// out + h * out_stride; the same bits. On AVX-512 in the tiled order, each 16-column block of v is packed
/// into `pack` ([16 * n] f32 scratch, 64-byte aligned; may be null: then read in place) and swept for every
/// head in turn, so it is read from memory once, not once per head.
void ggml_weighted_sum_heads(F32DotOrder order, const float* p, int64_t p_stride, int64_t n_heads, int64_t n,
                             const float* v, int64_t v_stride, int64_t d_v, float* out, int64_t out_stride,
                             float* pack = nullptr);

/// Attention's value sum over llama.cpp's 256-padded KV row: out[i] = sum_{j<n} p[j] * v[j * v_stride + i]
/// for i < d_v, each in `order` as ggml_dot_f32 over the zero-padded row (for kVecDot every product goes
/// to the fma accumulators, none to the unfused tail). p: [n], v: rows at stride v_stride (read);
/// out: [d_v] (written). SIMD when the CPU has it (same bits).
void ggml_weighted_sum(F32DotOrder order, const float* p, int64_t n, const float* v, int64_t v_stride, int64_t d_v,
                       float* out);

/// y[t * ldy + r] = ggml_dot_f32(order, W row r, x row t) for r in [row_begin, row_end), t < n_tokens.
/// W: [n_out, n_in] f32 rows of n_in (read); x: n_tokens rows at x + t * x_stride (read); y written.
/// SIMD when the CPU has it (same bits). Never allocates or throws.
void ggml_gemm_f32_rows(F32DotOrder order, const float* w, int64_t n_in, const float* x, size_t x_stride,
                        int64_t n_tokens, float* y, int64_t ldy, int64_t row_begin, int64_t row_end);

namespace detail {
/// The portable std::fma implementations behind ggml_dot_f32 / ggml_weighted_sum (tests compare them
/// with the SIMD paths).
float ggml_dot_f32_scalar(F32DotOrder order, const float* a, const float* b, int64_t n);
void ggml_weighted_sum_scalar(F32DotOrder order, const float* p, int64_t n, const float* v, int64_t v_stride,
                              int64_t d_v, float* out);
}  // namespace detail

}  // namespace moetier::cpu
