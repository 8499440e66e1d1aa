// Scalar reference dot products of one weight row with one prepared activation row, per ggml's
// type_traits_cpu pairs (weight type -> vec_dot_type). They define the exact result every SIMD kernel of
// cpu/ reproduces bit for bit (the "canonical order" below), so a result never depends on the ISA, on how
// rows are split over threads, or on how many tokens are computed together.
//
// Canonical order (all f32 ops rounded separately, no FMA; integer parts are exact int32):
//  * Q8_0 (x) Q8_0 follows ggml's x86 order exactly (bit parity with llama.cpp): per block, 8 int32 lanes
//    of 4 consecutive products, acc[l] = fma(dx * dy, float(lane_l), acc[l]); then (acc[k] + acc[k+4]),
//    then (s0 + s2) + (s1 + s3). Only the scalar kernel implements it (no SIMD Q8_0 variant for now).
//  * Q4_0, Q5_0, MXFP4 (x) Q8_0 and Q4_1, Q5_1 (x) Q8_1: per 32-block b, isum_b = sum w_q * a_q (int),
//      t_b = float(isum_b) * (dx_b * dy_b)           [+ mx_b * sy_b for Q4_1/Q5_1, added to t_b]
//      acc = acc + t_b, b ascending from acc = 0.
//    dx: fp16 weight scale (e8m0_to_f32_half for MXFP4, whose w_q are the doubled e2m1 integers);
//    w_q: Q4_0 nibble-8, Q5_0 5-bit-16, Q4_1/Q5_1 unsigned levels.
//  * Q2_K .. Q6_K (x) Q8_K: per 256-super-block, isum = sum_j sc_j * sum_{i in j} w_q * a_q,
//      Q2_K/Q4_K/Q5_K: t = (dy * d) * float(isum) - (dy * dmin) * float(msum), msum = sum_j m_j * bsum_j
//      Q3_K/Q6_K:      t = (dy * d) * float(isum)   (signed levels: Q3_K -4..3, Q6_K -32..31)
//      acc = acc + t, super-blocks ascending.
//  * IQ types (vec_dot_iq.cpp), ggml's generic order; levels w (grid * sign, IQ4 table values), s raw scales:
//      IQ2_XXS/IQ2_XS/IQ2_S/IQ3_XXS/IQ3_S (x) Q8_K: bsum = sum_halves (2s + 1) * sum w * a (int),
//        acc = acc + (dx * dy) * float(bsum); result = f * acc, f = 1/8 (IQ2), 1/4 (IQ3_XXS), 1 (IQ3_S)
//      IQ1_S/IQ1_M (x) Q8_K: acc = acc + (dx * dy) * (float(sumi) + 0.125f * float(sumd)), sumi =
//        sum (2s + 1) * sum w * a, sumd = sum (2s + 1) * (±1 per 8-group) * sum a
//      IQ4_XS (x) Q8_K: per 32-block, acc = acc + ((dx * dy) * float(ls - 32)) * float(isum_b)
//      IQ4_NL (x) Q8_0: as Q4_0 with the table levels.
//  * F32: ggml_vec_dot_f32's order, F32DotOrder::kVecDot of ggml_math.hpp (four 16-lane fma accumulators
//      per 64 elements, reduced, then the n % 64 tail added one by one). gemm_rows may use ggml's tiled
//      order instead for batches (F32Path in matmul.hpp); F32 weights bypass the kernel registry.
//  * F16, BF16 (activations rounded to F16 / BF16 and held as f32): 16 lanes,
//      p[k] = p[k] + w_i * x_i for i = k mod 16, i ascending; then s8[k] = p[k] + p[k+8],
//      s4[k] = s8[k] + s8[k+4], s2[k] = s4[k] + s4[k+2], result = s2[0] + s2[1].
#pragma once

#include <cstdint>

#include "common/ggml_type.hpp"

namespace moetier::cpu {

/// The activation type a weight type multiplies with (ggml type_traits_cpu vec_dot_type):
/// F32->F32, F16->F16, BF16->BF16, Q4_0/Q5_0/Q8_0/MXFP4/IQ4_NL->Q8_0, Q4_1/Q5_1->Q8_1, Q2_K..Q6_K and the
/// other IQ types->Q8_K.
/// Throws moetier::Error for a weight type without a CPU matmul.
GgmlType vec_dot_type_for(GgmlType weight_type);

/// True when the CPU kernels can multiply weights of this type (the types listed above).
bool can_matmul(GgmlType weight_type);

/// Elements per weight block of a matmul type (1 for F32/F16/BF16): n_in must be a multiple of it.
int64_t matmul_block_size(GgmlType weight_type);

/// Canonical dot product (see the header comment) of one weight row w (ggml_row_bytes(weight_type, n)
/// bytes) with one activation row act prepared for it: vec_dot_type blocks for quantised types, n f32
/// values (already rounded to F16/BF16 for those weight types) for float types. n is a multiple of the
/// block size (unchecked; this is the inner reference of gemm_rows).
float vec_dot_scalar(GgmlType weight_type, const void* w, const void* act, int64_t n);

namespace detail {
/// IQ part of vec_dot_scalar (vec_dot_iq.cpp): false when weight_type is not an IQ type.
bool vec_dot_iq(GgmlType weight_type, const void* w, const void* act, int64_t n, float& out);
}  // namespace detail

}  // namespace moetier::cpu
