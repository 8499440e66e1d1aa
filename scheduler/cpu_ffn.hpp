// CpuFfn: one SwiGLU FFN (a routed expert, a shared expert or a dense FFN) over a block of rows with the
// CPU kernels, computed the way ggml's CPU backend does: gate and up share one quantisation of x (and,
// in decode, every expert of a layer reuses it), routed experts follow ggml_mul_mat_id's order and take
// the prefill GEMM for large groups, shared / dense FFNs follow ggml_mul_mat. The CPU backend and the
// simulated device both compute with it, so their results are the same bits.
// Source: llama.cpp build_ffn / build_moe_ffn (llama-graph.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/weight_view.hpp"
#include "cpu/matmul.hpp"
#include "scheduler/linear_exec.hpp"

namespace moetier::sched {

/// Activation function of the FFN.
enum class FfnAct : uint8_t {
  SwiGLU,            ///< silu(gate) * up
  SwiGLUClampedOss,  ///< gpt-oss: x = min(gate, 7), y = clamp(up, -7, 7), x * sigmoid(1.702 x) * (y + 1)
};

/// Which of ggml's matmul orders the FFN follows.
enum class FfnKind : uint8_t {
  Routed,  ///< a routed expert: ggml_mul_mat_id (F32 weights: kVecDot), the prefill GEMM for >= gemm_min_tokens rows
  Dense,   ///< a shared expert or a dense layer's FFN: ggml_mul_mat (F32 weights: kMulMat)
};

/// std::nullopt when CpuFfn can compute with matrices of `weight_type` held in memory of kind `kind`;
/// otherwise why not ("device memory is not readable by CPU kernels", "no CPU kernel for IQ2_XXS").
std::optional<std::string> cpu_ffn_declines(GgmlType weight_type, MemoryKind kind);

class CpuFfn {
 public:
  /// `lin` (its pool, its GEMM threshold) must outlive this object.
  explicit CpuFfn(LinearExec& lin) : lin_(lin) {}

  /// y [m, n_embd] f32 (written) = FFN `w` of x [m, n_embd] f32 (read), n_embd = w.gate.n_in.
  /// same_input: x holds the same rows as the previous call since the last new_input() (decode: every
  /// expert of a layer multiplies the one token), so its quantisation is reused when the types agree.
  /// Throws moetier::Error (before any work) when the matrices do not fit each other.
  void run(const HostFfn& w, const float* x, int64_t m, float* y, FfnAct act, FfnKind kind, bool same_input = false);

  /// Forgets the kept quantisation of x (a new layer's input).
  void new_input() { xq_valid_ = false; }

  LinearExec& linear() { return lin_; }

 private:
  LinearExec& lin_;
  cpu::ActivationBuffer xq_;  // x quantised for the current FFN's gate / up
  bool xq_valid_ = false;
  std::vector<float> gate_, up_;
};

}  // namespace moetier::sched
