// Activation quantisation: f32 activation rows -> the vec_dot_type a weight format multiplies with
// (ggml's type_traits_cpu[type].vec_dot_type), computed exactly as ggml does on an x86 AVX2/AVX-512 CPU
// for finite rows. Unlike ggml, a row holding a NaN or inf becomes blocks with NaN scales (d, and s for
// Q8_1) and zero quants, so every dot product with it is NaN instead of a silently finite value.
#pragma once

#include <cstdint>

#include "cpu/quant_blocks.hpp"

namespace moetier::cpu {

/// y [n/32] <- x [n] f32. ggml's x86 quantize_row_q8_0 (arch/x86/quants.c): amax = max |x|;
/// d = fp16(amax / 127); q = round-half-even(x * (127 / amax)) (0 for an all-zero block). n % 32 == 0
/// (unchecked: callers validate at the API boundary).
void quantize_row_q8_0(const float* x, BlockQ8_0* y, int64_t n);

/// y [n/32] <- x [n] f32. ggml's x86 quantize_row_q8_1: as Q8_0, plus s = fp16(d * sum(q)) with d the
/// f32 value before its fp16 rounding. n % 32 == 0 (unchecked).
void quantize_row_q8_1(const float* x, BlockQ8_1* y, int64_t n);

/// y [n/256] <- x [n] f32. ggml's quantize_row_q8_K_ref (used on x86): max = the signed value of largest
/// |x| (first on ties); iscale = -127 / max; q = min(127, nearest_int(iscale * x)); d = 1 / iscale (f32);
/// bsums[j] = sum q[16j..16j+15]. All-zero block: d = 0, q = 0, bsums = 0. n % 256 == 0 (unchecked).
void quantize_row_q8_K(const float* x, BlockQ8_K* y, int64_t n);

namespace detail {
/// quantize_row_q8_K's per-block loop for n_blocks finite blocks: the scalar reference and its AVX2 build
/// (act_quant_avx2.cpp; needs cpu_features().avx2), bit-identical (tests compare them).
void quantize_blocks_q8_K_scalar(const float* x, BlockQ8_K* y, int64_t n_blocks);
void quantize_blocks_q8_K_avx2(const float* x, BlockQ8_K* y, int64_t n_blocks);
}  // namespace detail

/// y [n] <- x [n] rounded to the nearest fp16 value (ties to even), kept as f32: the F16 weight path's
/// activation (ggml converts activations to F16 and multiplies in f32). In place allowed.
void round_row_to_f16(const float* x, float* y, int64_t n);

/// y [n] <- x [n] rounded to the nearest bf16 value (ties to even, NaN kept), kept as f32: the BF16
/// weight path's activation. In place allowed.
void round_row_to_bf16(const float* x, float* y, int64_t n);

}  // namespace moetier::cpu
