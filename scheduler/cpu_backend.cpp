#include "scheduler/cpu_backend.hpp"

#include <chrono>

#include "common/error.hpp"

namespace moetier::sched {

std::optional<std::string> CpuBackend::supports(GgmlType weight_type, int64_t n_tokens, MemoryKind weights_in) const {
  if (n_tokens < 1) return std::string("empty group");
  return cpu_ffn_declines(weight_type, weights_in);
}

uint64_t CpuBackend::run(const ExpertGroup& g) {
  for (const HostWeight* w : {&g.weights.gate, &g.weights.up, &g.weights.down}) {
    if (!w->valid()) fail("cpu backend: FFN of layer {} expert {} has no host weights", g.key.layer, g.key.expert);
    if (auto why = supports(w->type, g.n_tokens, MemoryKind::Host))
      fail("cpu backend: layer {} expert {}: {}", g.key.layer, g.key.expert, *why);
  }
  const auto t0 = std::chrono::steady_clock::now();
  ffn_.run(g.weights, g.x, g.n_tokens, g.y, g.act, g.kind, g.same_input);
  stats_.busy_ns += static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count());
  ++stats_.groups;
  stats_.token_rows += static_cast<uint64_t>(g.n_tokens);
  return ++ticket_;
}

}  // namespace moetier::sched
