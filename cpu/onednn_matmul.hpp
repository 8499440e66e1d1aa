// oneDNN (dnnl 2.6) matmul for prefill: Y[M,N] = X[M,K] · W[N,K]^T, with W in f32 / f16 / bf16 and X in
// f32 / bf16, Y in f32. Plan/execute split as in oneDNN itself: plan() creates the primitive descriptor,
// primitive and reorders once per (M, N, K, dtypes, packing) and caches them; execute() only sets data
// pointers and runs. Optionally the weights are pre-packed once (format_tag::any -> reorder) into the
// layout oneDNN's kernel prefers, which is what the decode-bandwidth measurement uses.
//
// Compute type (oneDNN 2.6 has no mixed f32 x bf16 / f16 matmul on CPU):
//   W f32  -> f32 GEMM (an X in bf16 is widened to f32, exactly);
//   W bf16 -> bf16 GEMM with f32 accumulation (an X in f32 is rounded to bf16); falls back to f32 when
//             the CPU has no bf16 matmul;
//   W f16  -> f32 GEMM (W widened to f32 exactly: per call unless packed, once when packed).
// Threading: oneDNN runs on OpenMP threads. Call from the thread pool's caller thread only (it sets the
// OpenMP thread count and pins those threads, see scheduler/thread_pool.hpp), never from inside a
// parallel_for. An OnednnMatmul and its plans are not thread-safe.
#pragma once

#include "common/aligned_buffer.hpp"

#include <compare>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

namespace moetier::cpu {

/// Element types the matmul accepts (a subset of GgmlType: plain floating-point tensors).
enum class MatmulType { F32, F16, BF16 };

/// "f32", "f16", "bf16".
const char* to_string(MatmulType t);
/// Bytes per element.
size_t type_size(MatmulType t);

/// What a plan is specialised for.
struct MatmulKey {
  int64_t m = 0;  ///< rows of X and Y (tokens)
  int64_t n = 0;  ///< rows of W, columns of Y (output features)
  int64_t k = 0;  ///< columns of X and W (input features)
  MatmulType x_type = MatmulType::F32;
  MatmulType w_type = MatmulType::F32;
  bool packed_weights = false;  ///< execute() takes PackedWeights made by pack() instead of raw W
  int64_t ldy = 0;              ///< floats between rows of Y (0: n, i.e. Y dense); otherwise >= n
  auto operator<=>(const MatmulKey&) const = default;
};

class OnednnMatmul;

/// A planned matmul for one MatmulKey (owned by the OnednnMatmul's cache; reference stays valid for its
/// lifetime). Holds the oneDNN primitives and the scratch buffers for type conversions.
class MatmulPlan {
 public:
  ~MatmulPlan();
  MatmulPlan(const MatmulPlan&) = delete;
  MatmulPlan& operator=(const MatmulPlan&) = delete;

  const MatmulKey& key() const { return key_; }
  /// The type the GEMM runs in (see the file comment).
  MatmulType compute_type() const { return compute_type_; }
  /// oneDNN's implementation name for the GEMM (e.g. "brg:avx512_core_bf16"), for logs and benchmarks.
  const std::string& implementation() const { return implementation_; }
  /// Bytes of packed weights for this plan (the packed layout may pad), 0 unless key().packed_weights.
  size_t packed_weight_bytes() const;

 private:
  friend class OnednnMatmul;
  friend class PackedWeights;
  MatmulPlan() = default;
  struct Impl;
  MatmulKey key_;
  MatmulType compute_type_ = MatmulType::F32;
  std::string implementation_;
  std::unique_ptr<Impl> impl_;
};

/// Weights W [N, K] reordered once into a plan's packed layout and compute type. Movable, owns its bytes.
class PackedWeights {
 public:
  const MatmulKey& key() const { return key_; }
  size_t bytes() const { return buffer_.size(); }
  const void* data() const { return buffer_.data(); }

 private:
  friend class OnednnMatmul;
  MatmulKey key_;
  AlignedBuffer buffer_;
};

/// oneDNN CPU engine + stream + plan cache.
class OnednnMatmul {
 public:
  /// Creates the CPU engine and stream. Throws moetier::Error if oneDNN cannot.
  OnednnMatmul();
  ~OnednnMatmul();
  OnednnMatmul(const OnednnMatmul&) = delete;
  OnednnMatmul& operator=(const OnednnMatmul&) = delete;

  /// The cached plan for `key`, creating it on first use (primitive descriptors are built only here).
  /// Throws moetier::Error for non-positive dims or when oneDNN supports no implementation.
  MatmulPlan& plan(const MatmulKey& key);
  /// Number of cached plans.
  size_t n_plans() const { return plans_.size(); }
  /// Drops every cached plan (references returned by plan() become invalid).
  void clear_plans() { plans_.clear(); }

  /// Y = X · W^T. x: [m, k] row-major of key.x_type (read); w: [n, k] row-major of key.w_type (read);
  /// y: [m, n] f32, row t at y + t * ldy (overwritten; ldy = key.ldy or n). Pointers need no alignment. Throws moetier::Error if the
  /// plan was made for packed weights, or oneDNN fails.
  void execute(MatmulPlan& plan, const void* x, const void* w, float* y);

  /// Reorders w: [n, k] row-major of key.w_type into the plan's packed layout (once, at load time).
  /// Throws moetier::Error unless plan.key().packed_weights.
  PackedWeights pack(MatmulPlan& plan, const void* w);

  /// Y = X · W^T with weights from pack(). Throws moetier::Error if `w` was packed for another key.
  void execute(MatmulPlan& plan, const void* x, const PackedWeights& w, float* y);

 private:
  struct Engine;
  std::unique_ptr<Engine> engine_;
  std::map<MatmulKey, std::unique_ptr<MatmulPlan>> plans_;
};

}  // namespace moetier::cpu
