// CpuBackend: the ExpertBackend of the CPU kernels (scheduler/cpu_ffn.hpp) on the process's worker pool.
// Synchronous: run() computes the group before it returns, so every ticket is complete at once. Accepts
// host and pinned-host weights of every type the CPU kernels compute; declines device memory.
#pragma once

#include <chrono>
#include <string>

#include "scheduler/cpu_ffn.hpp"
#include "scheduler/expert_backend.hpp"

namespace moetier::sched {

class CpuBackend final : public ExpertBackend {
 public:
  /// Computes with `lin` (its pool and GEMM threshold); `lin` must outlive the backend.
  explicit CpuBackend(LinearExec& lin) : ffn_(lin) {}

  std::string name() const override { return "cpu"; }
  MemoryKind memory_kind() const override { return MemoryKind::Host; }
  std::optional<std::string> supports(GgmlType weight_type, int64_t n_tokens, MemoryKind weights_in) const override;
  /// Computes g from g.weights (host memory) on the calling thread and the pool; returns its ticket.
  uint64_t run(const ExpertGroup& g) override;
  void wait(uint64_t) override {}
  BackendStats stats() const override { return stats_; }

 private:
  CpuFfn ffn_;
  BackendStats stats_;
  uint64_t ticket_ = 0;
};

}  // namespace moetier::sched
