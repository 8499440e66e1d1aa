// Linear layers for the model code: y = x · W^T with W in any supported ggml type, computed the way ggml
// does on the CPU (activations quantised to the type ggml pairs with the weight type, integer dot
// products per block; see cpu/). Owns the activation scratch so the hot path does not allocate once
// sized, and splits output rows over a worker pool (the process's by default).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "cpu/matmul.hpp"
#include "common/weight_view.hpp"

namespace moetier::sched {

class ThreadPool;

class LinearExec {
 public:
  /// Rows are split over `pool` (nullptr: the process's global_pool()). A pool of size 1 computes on the
  /// calling thread only (a device backend's stream thread uses one; results are the same bits).
  explicit LinearExec(ThreadPool* pool = nullptr);
  ~LinearExec();
  LinearExec(const LinearExec&) = delete;
  LinearExec& operator=(const LinearExec&) = delete;

  /// y [n_tokens, w.n_out] f32 (written) = x [n_tokens, w.n_in] f32 (read) · W^T. f32_path: which of
  /// ggml's F32 summation orders F32 weights follow (kVecDot for routed experts = ggml mul_mat_id).
  void operator()(const HostWeight& w, const float* x, int64_t n_tokens, float* y,
                  cpu::F32Path f32_path = cpu::F32Path::kMulMat);

  /// cpu::quantize_activations with the token rows split over the pool for large batches (same bits).
  void quantize(GgmlType weight_type, const float* x, int64_t n_tokens, int64_t n_in, cpu::ActivationBuffer& act,
                       cpu::F32Path f32_path);

  /// y [act.n_tokens(), w.n_out] f32 (written) = activations already prepared for w's type
  /// (cpu::quantize_activations) · W^T; lets several matrices share one quantisation of x.
  void apply(const HostWeight& w, const cpu::ActivationBuffer& act, float* y);
  /// apply() for two matrices of the same input (e.g. an FFN's gate and up; w2's type must take the same
  /// activations), rows of both split over the pool in one dispatch. w2 may be null (then y2 is unused).
  /// Throws moetier::Error (before any work) if act does not fit either weight.
  void apply_pair(const HostWeight& w1, const HostWeight* w2, const cpu::ActivationBuffer& act, float* y1, float* y2);

  /// Whether batch() would send this matrix and batch size to the prefill GEMM: never where gemm_rows takes
  /// the batch on AMX-INT8 tiles (cpu::gemm_rows_uses_amx: exact and faster).
  bool takes_gemm(const HostWeight& w, int64_t n_tokens) const;

  /// Like operator(), but batches of at least gemm_min_tokens() tokens (and weight types with a dequantiser)
  /// take the prefill GEMM (cpu/prefill_gemm.hpp: dequantised f32 tiles x oneDNN, one tile range per pool
  /// worker), as llama.cpp's BLAS backend does for batches of >= 32. The GEMM multiplies the dequantised
  /// weights by the activations as quantised for ggml's dot product (activation_values), so results equal
  /// ggml's up to f32 summation order. Used for the FFN matrices (routed, shared and dense).
  void batch(const HostWeight& w, const float* x, int64_t n_tokens, float* y,
             cpu::F32Path f32_path = cpu::F32Path::kMulMat);

  /// Smallest batch batch() sends to the prefill GEMM; 0 = never (ggml's CPU-backend numerics always).
  void set_gemm_min_tokens(int64_t n) { gemm_min_tokens_ = n; }
  int64_t gemm_min_tokens() const { return gemm_min_tokens_; }
  /// Batch-invariant mode (the server's decode steps): every token's result is the bits a batch of that
  /// token alone gives, whatever else is in the batch. F32 weights then take ggml_vec_dot_f32's order for
  /// every batch size (llama.cpp's tinyBLAS order for batches of >= 2 is what changes with the batch) and
  /// batch() never takes the prefill GEMM; the quantised types' GEMV, tile and AMX kernels are
  /// bit-identical to one another already.
  void set_batch_invariant(bool on) { batch_invariant_ = on; }
  bool batch_invariant() const { return batch_invariant_; }
  /// Matrix products batch() has sent to the prefill GEMM so far.
  uint64_t gemm_matmuls() const { return gemm_matmuls_; }
  /// Default of gemm_min_tokens(): 32, where the GEMM overtakes the GEMV kernels on AVX2 (perf/bench_prefill)
  /// and llama.cpp's BLAS backend starts too.
  static constexpr int64_t kDefaultGemmMinTokens = 32;

  /// One embedding row: out [w.n_in] f32 = dequantised row `row` of W (ggml_get_rows).
  static void get_row(const HostWeight& w, int64_t row, float* out);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  ThreadPool* pool_;  // nullptr: global_pool() at each call (it may be reconfigured)
  int64_t gemm_min_tokens_ = kDefaultGemmMinTokens;
  uint64_t gemm_matmuls_ = 0;
  bool batch_invariant_ = false;
};

}  // namespace moetier::sched
