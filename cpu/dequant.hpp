// Weight format conversion, one row at a time: ggml block formats -> f32 (dequantize_row, bit-exact with
// ggml's dequantize_row_* / to_float), and f32 -> block formats (quantize_row_ref: simple reference
// quantizers used by `moetier synth` and tests; deterministic, not the importance-matrix ones).
#pragma once

#include <cstdint>

#include "common/ggml_type.hpp"
#include "cpu/quant_blocks.hpp"

namespace moetier::cpu {

/// True when dequantize_row supports `type`: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K,
/// MXFP4 and the IQ types (is_iq_type).
bool can_dequantize(GgmlType type);

/// True for ggml's IQ weight types moetier reads: IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M,
/// IQ4_NL, IQ4_XS (dequantize_row and matmul; no quantize_row_ref: their quantizers need an importance
/// search, `moetier synth` writes random valid blocks instead).
bool is_iq_type(GgmlType type);

/// True when quantize_row_ref supports `type`: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K,
/// MXFP4.
bool can_quantize(GgmlType type);

/// dst [n] f32 (written) <- src: one row of n elements of `type` (ggml_row_bytes(type, n) bytes, read).
/// Bit-exact with ggml's dequantize_row_<type> (ggml-quants.c) evaluated without FMA contraction.
/// Throws moetier::Error if the type is unsupported or n is not a multiple of its block size.
void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n);

/// dst: one row of `type` (ggml_row_bytes(type, n) bytes, written) <- src [n] f32 (read).
/// F16/BF16 round to nearest even; Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/MXFP4 follow ggml's quantize_row_*_ref
/// bit-exactly; K-quants use moetier's own least-squares reference quantizer (same formats, not the same
/// bits as ggml's). Throws moetier::Error if unsupported or n is not a multiple of the block size.
void quantize_row_ref(GgmlType type, const float* src, void* dst, int64_t n);

namespace detail {
/// IQ rows (dequant_iq.cpp): false when `type` is not an IQ type; n a multiple of the block size (checked).
bool dequantize_row_iq(GgmlType type, const void* src, float* dst, int64_t n);
// K-quant reference quantizers (quantize_kquants.cpp); n is a multiple of 256 (checked by the caller).
void quantize_row_q2_k_ref(const float* x, void* y, int64_t n);
void quantize_row_q3_k_ref(const float* x, void* y, int64_t n);
void quantize_row_q4_k_ref(const float* x, void* y, int64_t n);
void quantize_row_q5_k_ref(const float* x, void* y, int64_t n);
void quantize_row_q6_k_ref(const float* x, void* y, int64_t n);
/// ggml's nearest_int: round to nearest, ties to even, for |v| <= 4194303.
int nearest_int(float v);
/// AVX2 builds of dequantize_row's loops for nb blocks (dequant_avx2.cpp; need cpu_features().avx2) and the
/// portable ones they must equal bit for bit (tests compare them).
void dequant_q8_0_avx2(const BlockQ8_0* x, float* y, int64_t nb);
void dequant_q4_0_avx2(const BlockQ4_0* x, float* y, int64_t nb);
void dequant_q5_0_avx2(const BlockQ5_0* x, float* y, int64_t nb);
void dequant_q8_0(const BlockQ8_0* x, float* y, int64_t nb);
void dequant_q4_0(const BlockQ4_0* x, float* y, int64_t nb);
void dequant_q5_0(const BlockQ5_0* x, float* y, int64_t nb);
}  // namespace detail

}  // namespace moetier::cpu
