// Linear layers for the model code: y = x · W^T with W in any supported ggml type, computed the way ggml
// does on the CPU (activations quantised to the type ggml pairs with the weight type, integer dot
// products per block; see cpu/). Owns the activation scratch so the hot path does not allocate once
// sized, and splits output rows over the process's worker pool.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "cpu/matmul.hpp"
#include "runtime/models/weights.hpp"

namespace moetier::models {

class LinearExec {
 public:
  LinearExec();
  ~LinearExec();
  LinearExec(const LinearExec&) = delete;
  LinearExec& operator=(const LinearExec&) = delete;

  /// y [n_tokens, w.n_out] f32 (written) = x [n_tokens, w.n_in] f32 (read) · W^T. f32_path: which of
  /// ggml's F32 summation orders F32 weights follow (kVecDot for routed experts = ggml mul_mat_id).
  void operator()(const Weight& w, const float* x, int64_t n_tokens, float* y,
                  cpu::F32Path f32_path = cpu::F32Path::kMulMat);

  /// One embedding row: out [w.n_in] f32 = dequantised row `row` of W (ggml_get_rows).
  static void get_row(const Weight& w, int64_t row, float* out);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace moetier::models
