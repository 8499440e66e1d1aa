#include "scheduler/cpu_ffn.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "common/error.hpp"
#include "cpu/kernel_registry.hpp"
#include "cpu/ops.hpp"
#include "cpu/vec_dot.hpp"

namespace moetier::sched {

std::optional<std::string> cpu_ffn_declines(GgmlType weight_type, MemoryKind kind) {
  if (kind == MemoryKind::Device) return std::string("device memory is not readable by CPU kernels");
  if (!cpu::select_gemv(weight_type, 1, cpu::Isa::kScalar))
    return fmt::format("no CPU kernel for {} weights", ggml_type_name(weight_type));
  return std::nullopt;
}

void CpuFfn::run(const HostFfn& w, const float* x, int64_t m, float* y, FfnAct act, FfnKind kind, bool same_input) {
  const int64_t n_ff = w.gate.n_out;
  if (w.up.n_out != n_ff || w.up.n_in != w.gate.n_in || w.down.n_in != n_ff)
    fail("FFN matrices do not fit each other: gate [{}, {}], up [{}, {}], down [{}, {}]", w.gate.n_out, w.gate.n_in,
         w.up.n_out, w.up.n_in, w.down.n_out, w.down.n_in);
  const cpu::F32Path path = kind == FfnKind::Routed ? cpu::F32Path::kVecDot : cpu::F32Path::kMulMat;
  gate_.resize(static_cast<size_t>(m * n_ff));
  up_.resize(static_cast<size_t>(m * n_ff));
  // Routed experts (kVecDot: ggml's mul_mat_id) take the prefill GEMM for large per-expert batches;
  // dense and shared FFNs keep ggml's mul_mat order.
  const bool routed = kind == FfnKind::Routed;
  if (routed && lin_.takes_gemm(w.gate, m)) {
    lin_.batch(w.gate, x, m, gate_.data(), path);
    lin_.batch(w.up, x, m, up_.data(), path);
  } else {
    // x quantised once for gate and up (and, for same_input, kept for the next expert of the layer); both
    // matrices in one dispatch when they take the same activations.
    const GgmlType at = cpu::vec_dot_type_for(w.gate.type);
    if (!(same_input && xq_valid_ && xq_.type() == at && xq_.n_tokens() == m && xq_.n_in() == w.gate.n_in &&
          w.gate.type != GgmlType::F32)) {
      lin_.quantize(w.gate.type, x, m, w.gate.n_in, xq_, path);
      xq_valid_ = true;
    }
    const bool pair = w.up.type != GgmlType::F32 && cpu::vec_dot_type_for(w.up.type) == at && w.up.n_in == w.gate.n_in;
    lin_.apply_pair(w.gate, pair ? &w.up : nullptr, xq_, gate_.data(), up_.data());
    if (!pair) lin_(w.up, x, m, up_.data(), path);
  }
  for (int64_t t = 0; t < m; ++t) {
    float* g = gate_.data() + t * n_ff;
    float* u = up_.data() + t * n_ff;
    if (w.gate_bias)
      for (int64_t i = 0; i < n_ff; ++i) g[i] += w.gate_bias[i];
    if (w.up_bias)
      for (int64_t i = 0; i < n_ff; ++i) u[i] += w.up_bias[i];
    if (act == FfnAct::SwiGLU) {
      cpu::swiglu(g, u, g, n_ff);
    } else {
      for (int64_t i = 0; i < n_ff; ++i) {
        const float a = std::min(g[i], 7.0f);
        const float b = std::clamp(u[i], -7.0f, 7.0f);
        g[i] = a / (1.0f + std::exp(-1.702f * a)) * (b + 1.0f);
      }
    }
  }
  if (routed) lin_.batch(w.down, gate_.data(), m, y, path);
  else lin_(w.down, gate_.data(), m, y, path);
  if (w.down_bias)
    for (int64_t t = 0; t < m; ++t)
      for (int64_t i = 0; i < w.down.n_out; ++i) y[t * w.down.n_out + i] += w.down_bias[i];
}

}  // namespace moetier::sched
