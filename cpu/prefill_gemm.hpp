// Prefill GEMM for ggml-typed weights: Y = X · W^T for batches of many tokens. Computed the way llama.cpp's
// BLAS backend computes mul_mat for batches of >= 32 tokens (ggml-blas.cpp: dequantise W to f32, then one
// sgemm), but in tiles of W rows: each tile is dequantised once into a per-thread buffer that stays in
// cache and multiplied by all tokens with a single-threaded oneDNN f32 matmul. Threads take disjoint tile
// ranges (each streams its own slice of W), so there is one pool (the caller's) and no nested OpenMP team.
//
// The activations are first prepared exactly as for the dot-product path (quantize_activations: Q8_0 /
// Q8_1 / Q8_K blocks, or values rounded to F16 / BF16) and turned back into f32 (activation_values), so
// the GEMM multiplies the same numbers ggml's vec_dot multiplies; only the f32 summation order differs.
// Q4_1 / Q5_1 need one more column per 32-block: ggml's dot is d_w d_x sum(q_w q_x) + m_w s_x with s_x the
// Q8_1 block's stored sum (fp16 of the unrounded d_x times sum(q_x)), which is not d_x sum(q_x) (up to
// ~1e-3 relative apart). So their tiles hold d_w q_w and then the mins m_w, and X holds d_x q_x and then
// s_x (prefill_gemm_columns). (Multiplying d_w q_w + m_w by d_x q_x instead put outputs ~8e-4 of max |y|
// away from ggml's and moved a synth tiny-deepseek2's logits by 0.04-0.06.)
// Bound: max |GEMM - dot| <= ~1.6e-6 of max |dot| for every type on model-like rows (1024 inputs, 40
// tokens; test_prefill_gemm.cpp asserts 5e-6). Downstream, such last-bit differences can still flip one
// 8-bit activation level of a later layer, so a model's logits may move by more than f32 rounding (up to
// ~0.04 on synth tiny models with every expert matmul through the GEMM: the README's GEMM paragraph).
// Results do not depend on the thread count or on the row split as long as splits fall on multiples of
// kPrefillTileRows.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/ggml_type.hpp"
#include "cpu/matmul.hpp"
#include "cpu/onednn_matmul.hpp"

namespace moetier::cpu {

/// Rows of W per tile: dequantised once, then multiplied by every token of the batch.
inline constexpr int64_t kPrefillTileRows = 128;

/// Whether `t` can go through the prefill GEMM: every type dequantize_row supports (F32, F16, BF16,
/// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, MXFP4).
bool prefill_gemm_supports(GgmlType t);

/// Columns of the GEMM's X and of each tile row for weights of `weight_type` with n_in inputs: n_in, plus
/// n_in / 32 for Q4_1 / Q5_1 (the Q8_1 block sums s_x in X, the weight blocks' mins in the tile).
int64_t prefill_gemm_columns(GgmlType weight_type, int64_t n_in);

/// x [act.n_tokens(), cols] f32 row-major (written) = the values the rows of `act` stand for, with cols =
/// prefill_gemm_columns of the weight type `act` was prepared for: d * q for Q8_0 / Q8_1 / Q8_K blocks
/// (exact in f32), the stored f32 values otherwise; Q8_1 rows then hold each block's s (n_in + n_in / 32
/// columns). Single-threaded. Throws moetier::Error for an activation type it does not know.
void activation_values(const ActivationBuffer& act, float* x);
/// activation_values for token rows [t_begin, t_end) only (thread-safe for disjoint ranges).
void activation_values(const ActivationBuffer& act, float* x, int64_t t_begin, int64_t t_end);

/// The tile type the prefill GEMM uses, decided once per process from MOETIER_PREFILL_TILE: unset or "f32":
/// F32 (results within f32 rounding of ggml's); "bf16": BF16 (weights and activations rounded to bf16,
/// ~1e-3 relative error, up to 2x the GEMM throughput on AVX512_BF16 / AMX CPUs); "auto": BF16 only when
/// the CPU has AVX512_BF16 and a bf16 GEMM of a 256-token x 128-row x 2048 tile measures faster than f32
/// on one thread.
MatmulType prefill_tile_type();

/// Per-thread state of the prefill GEMM: a oneDNN engine, stream and plan cache, and the dequantised tile
/// (kPrefillTileRows x n_in f32, grown on demand). Use one per thread; not shareable between threads.
class PrefillGemmWorker {
 public:
  /// Throws moetier::Error if oneDNN cannot create its CPU engine.
  PrefillGemmWorker();
  ~PrefillGemmWorker();
  PrefillGemmWorker(const PrefillGemmWorker&) = delete;
  PrefillGemmWorker& operator=(const PrefillGemmWorker&) = delete;

  /// y[t * ldy + o] (written) = dot(W row o, x row t) for o in [row_begin, row_end) and t < m.
  /// w: W [n_out, n_in], rows of ggml_row_bytes(type, n_in) bytes, contiguous (read); x: [m, k] f32
  /// row-major (read) with k = prefill_gemm_columns(type, n_in) (activation_values); ldy >= row_end. Tiles start at row_begin and have kPrefillTileRows rows (the last
  /// may be shorter). oneDNN runs on the calling thread only (its OpenMP thread count is set to 1 for the
  /// call and restored), so this may be called from pool workers. Throws moetier::Error if the type is not
  /// supported, n_in is not a multiple of its block size, a dimension is not positive, or oneDNN fails.
  void rows(GgmlType type, const void* w, int64_t n_in, const float* x, int64_t m, float* y, int64_t ldy,
            int64_t row_begin, int64_t row_end);

  /// rows() with the tiles in `tile_type`: F32 as above; BF16: X given as bf16 bits [m, k] and each
  /// tile rounded to bf16 (round to nearest even; BF16 weights are used as they are), multiplied by oneDNN's
  /// bf16 matmul with f32 accumulation (AVX512_BF16 / AMX where the CPU has them). Same throws; also throws
  /// for a tile_type other than F32 / BF16.
  void rows(GgmlType type, const void* w, int64_t n_in, const void* x, MatmulType tile_type, int64_t m, float* y,
            int64_t ldy, int64_t row_begin, int64_t row_end);

  /// oneDNN's implementation name of the most recent GEMM (e.g. "gemm:jit"), for benchmarks; "" before.
  const std::string& implementation() const { return implementation_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string implementation_;
};

}  // namespace moetier::cpu
