// Prefill GEMM on AMX-INT8 tiles (Intel Sapphire Rapids and later) for Q4_K / Q5_K weights x Q8_K
// activations, bit-identical with gemm_rows' GEMV kernels and vec_dot_scalar (the canonical order of
// vec_dot.hpp), so a model gives the same logits with or without it.
//
// Why it is exact: per super-block and (row, token) the canonical dot is
//   isum = sum_j sc_j * sum_{k in sub-block j} q_k y_k,   msum = sum_j m_j * (Q8_K sum of sub-block j)
//   acc += (dy * d) * float(isum) - (dy * dmin) * float(msum)
// with 6-bit scales sc_j, which do not fit an int8 tile operand once multiplied into the levels (q * sc up
// to 31 * 63). Splitting sc_j = 8 * (sc_j >> 3) + (sc_j & 7) gives two u8 operands q * (sc_j >> 3) and
// q * (sc_j & 7) (both <= 31 * 7 = 217), so isum = 8 * C_hi + C_lo with C_hi, C_lo two exact int32 tile
// products (TDPBUSD: u8 weights x s8 activations) over the whole 256-element super-block. msum and the f32
// term are then computed per row on AVX-512 for 16 tokens at a time, one token per lane, in the canonical
// order.
//
// Layout: each call repacks 16 weight rows at a time into tiles (levels times the split scales, 2 x 256
// bytes per row and super-block) and the activations of up to 128 tokens into TDPBUSD's B layout (4
// consecutive bytes of one token per int32 column), in per-thread scratch.
#pragma once

#include <cstdint>

#include "common/ggml_type.hpp"

namespace moetier::cpu {

class ActivationBuffer;

/// Smallest batch gemm_rows hands to amx_gemm_rows. Up to 8 tokens the AVX-512 tile kernels take the batch
/// in one chunk and win; from 9 the tiles do (Qwen3-30B-A3B expert matrix 768 x 2048 Q4_K, one thread:
/// 88 vs 75 GMAC/s at 9 tokens, 157 vs 90 at 16; DeepSeek-V2-Lite's Q5_0 2048 x 1408: 60 vs 47, 106 vs 53).
inline constexpr int64_t kAmxMinTokens = 9;

/// Weight types amx_gemm_rows takes: Q4_K and Q5_K (this file's scheme), Q4_0 and Q5_0 (one tile product per
/// 32-element block, amx_tiles.hpp).
bool amx_gemm_supports(GgmlType weight_type);

/// y[t * n_out + o] (written, y is [n_tokens, n_out] f32) = dot(W row o, activation row t) for o in
/// [row_begin, row_end) and every token of `act` (prepared for Q8_K by quantize_activations), bit-identical
/// with gemm_rows. W: [n_out, n_in] rows of ggml_row_bytes(weight_type, n_in) bytes (read). Single-threaded
/// and thread-safe for disjoint row ranges; per-thread scratch grows on the first calls (about 17 KiB per
/// 256 inputs plus 36 KiB per 128 tokens x 256 inputs) and is reused. Throws moetier::Error (before any work)
/// when cpu_features().amx_int8 is false, the type is not supported, or for gemm_rows' argument errors.
void amx_gemm_rows(GgmlType weight_type, const void* w, int64_t n_in, const ActivationBuffer& act, float* y,
                   int64_t n_out, int64_t row_begin, int64_t row_end);

}  // namespace moetier::cpu
