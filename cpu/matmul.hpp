// CPU matrix products with ggml-format weights: y = x W^T for W [n_out, n_in] in any supported ggml type,
// x [n_tokens, n_in] f32. Two steps, as ggml's mul_mat: quantize_activations (once per x, into reusable
// scratch) then gemm_rows over any range of output rows (the scheduler splits rows over threads).
// Results are bit-identical whatever the row split, the token grouping or the ISA chosen (see vec_dot.hpp);
// except F32 weights, whose order follows ggml's mul_mat path for the batch (F32Path, ggml_math.hpp).
//
// Typical use (one thread):          ActivationBuffer act;
//                                    quantize_activations(GgmlType::Q4_K, x, n_tokens, n_in, act);
//                                    gemm_rows(GgmlType::Q4_K, w, n_in, act, y, n_out, 0, n_out);
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/aligned_buffer.hpp"
#include "common/ggml_type.hpp"
#include "cpu/ggml_math.hpp"
#include "cpu/vec_dot.hpp"

namespace moetier::cpu {

/// Which of ggml's F32 x F32 paths gemm_rows reproduces for F32 weights (orders in ggml_math.hpp):
/// kMulMat: ggml mul_mat over contiguous activations, ggml_mul_mat_f32_order(n_tokens, n_in, n_out)
/// (tinyBLAS order for batches of >= 2 tokens when the shape allows); kVecDot: always ggml_vec_dot_f32
/// order (ggml mul_mat_id, i.e. routed experts, and mul_mat over non-contiguous activations).
enum class F32Path : uint8_t { kMulMat, kVecDot };

/// Activations [n_tokens, n_in] prepared for one vec_dot_type (see vec_dot_type_for): Q8_0 / Q8_1 / Q8_K
/// blocks, or f32 values (rounded to F16 / BF16 for those weight types; zero-padded to 16 per row).
/// Owns its memory and only grows it: once sized, quantize_activations does not allocate.
class ActivationBuffer {
 public:
  ActivationBuffer() = default;
  /// Type the rows are stored in (the vec_dot_type; F16/BF16 rows are stored as rounded f32 values).
  GgmlType type() const { return type_; }
  int64_t n_tokens() const { return n_tokens_; }
  int64_t n_in() const { return n_in_; }
  /// F32 summation path chosen by quantize_activations (only used with F32 weights).
  F32Path f32_path() const { return f32_path_; }
  /// Bytes between consecutive token rows (a multiple of 64).
  size_t row_stride() const { return row_stride_; }
  /// Row of token t (0 <= t < n_tokens): ggml blocks of type(), or f32 values for float types.
  const void* row(int64_t t) const { return data_.data() + static_cast<size_t>(t) * row_stride_; }
  /// Grows the storage to hold n_tokens rows of n_in elements of `type` (vec_dot_type); keeps capacity.
  /// Called by quantize_activations; call it ahead of time to pre-size scratch for the largest batch.
  void reserve(GgmlType type, int64_t n_tokens, int64_t n_in);
  /// Bytes currently owned.
  size_t capacity_bytes() const { return data_.size(); }

 private:
  friend void prepare_activations(GgmlType, int64_t, int64_t, ActivationBuffer&, F32Path);
  friend void quantize_activation_rows(const float*, int64_t, int64_t, ActivationBuffer&);
  void* mutable_row(int64_t t) { return data_.data() + static_cast<size_t>(t) * row_stride_; }
  AlignedBuffer data_;
  GgmlType type_ = GgmlType::F32;
  int64_t n_tokens_ = 0;
  int64_t n_in_ = 0;
  size_t row_stride_ = 0;
  F32Path f32_path_ = F32Path::kMulMat;
};

/// act <- x [n_tokens, n_in] f32 (row-major, read) quantised to vec_dot_type_for(weight_type), exactly as
/// ggml does on x86 (act_quant.hpp); f32_path is recorded for F32 weights (ignored otherwise). Throws
/// moetier::Error if weight_type has no CPU matmul, n_in is not a multiple of its block size, or
/// n_tokens/n_in < 0. Allocates only when act must grow.
void quantize_activations(GgmlType weight_type, const float* x, int64_t n_tokens, int64_t n_in,
                          ActivationBuffer& act, F32Path f32_path = F32Path::kMulMat);

/// quantize_activations in two steps, so that rows can be quantised on several threads: prepare sizes act
/// for n_tokens x n_in of vec_dot_type_for(weight_type) and records f32_path (same checks and throws as
/// quantize_activations); quantize_activation_rows then fills rows [t_begin, t_end) from x [n_tokens, n_in]
/// (thread-safe for disjoint ranges; throws moetier::Error for a range outside the prepared rows).
void prepare_activations(GgmlType weight_type, int64_t n_tokens, int64_t n_in, ActivationBuffer& act,
                         F32Path f32_path = F32Path::kMulMat);
void quantize_activation_rows(const float* x, int64_t t_begin, int64_t t_end, ActivationBuffer& act);

/// Row-range granularity for splitting gemm_rows over threads: ranges starting at multiples of it keep the
/// SIMD kernels on their 8-row fast path and threads' outputs on separate 64-byte lines. Any split gives
/// the same results; this only affects speed.
inline constexpr int64_t kGemmRowAlign = 16;

/// y[t][o] (written, y is [n_tokens, n_out] row-major f32) = dot(W row o, x row t) for o in
/// [row_begin, row_end) and every token of `act`; other entries of y untouched. W: [n_out, n_in] rows of
/// ggml_row_bytes(weight_type, n_in) bytes, contiguous (read). Single-threaded; thread-safe for disjoint
/// row ranges; never allocates. Uses the best kernel for cpu_features() (see kernel_registry.hpp).
/// Throws moetier::Error (before any work) if act was not prepared for this weight type's vec_dot_type or
/// for n_in, or if the row range is not within [0, n_out]: callers that run it on worker threads should
/// validate on the submitting thread with check_gemm_rows.
void gemm_rows(GgmlType weight_type, const void* w, int64_t n_in, const ActivationBuffer& act, float* y,
               int64_t n_out, int64_t row_begin, int64_t row_end);

/// Whether gemm_rows runs a batch of n_tokens of `weight_type` on AMX-INT8 tiles on this CPU (amx_gemm.hpp:
/// Q4_K / Q5_K / Q4_0 / Q5_0, >= kAmxMinTokens tokens, cpu_features().amx_int8): then it is exact and faster than
/// the f32 prefill GEMM (perf/bench_prefill), and callers should not take the GEMM.
bool gemm_rows_uses_amx(GgmlType weight_type, int64_t n_tokens);

/// The argument checks of gemm_rows, for the submitting thread. Throws moetier::Error.
void check_gemm_rows(GgmlType weight_type, int64_t n_in, const ActivationBuffer& act, int64_t n_out,
                     int64_t row_begin, int64_t row_end);

/// y [n_tokens, n_out] (written) = x [n_tokens, n_in] W^T, single-threaded: quantize_activations into
/// `scratch` then gemm_rows over all rows. For tests and small tensors. Throws as the two.
void matmul(GgmlType weight_type, const void* w, int64_t n_out, int64_t n_in, const float* x, int64_t n_tokens,
            float* y, ActivationBuffer& scratch);

/// dst [n_in] f32 (written) <- row `row` of W [n_rows, n_in] (ggml type, rows contiguous): the embedding
/// lookup (ggml get_rows). Bit-exact with ggml's dequantize_row. Throws moetier::Error for an unsupported
/// type, n_in not a multiple of the block size, or row outside [0, n_rows).
void get_row(GgmlType type, const void* w, int64_t n_rows, int64_t n_in, int64_t row, float* dst);

}  // namespace moetier::cpu
