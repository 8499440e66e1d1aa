// SimBackend: the simulated device (sim:N), a DeviceBackend for CPU-only machines and tests. It has its
// own memory with a capacity (SimMemory), copies FFNs into it through a paced copy engine
// (SimCopyEngine, spec.h2d_gbps), and computes groups asynchronously on its stream thread (SimStream)
// with the CPU kernels (CpuFfn on a one-thread pool, spec.gemm_min_tokens), so its results are the same
// bits as the CPU backend's for the same weights. make_device_backend({.kind = "sim"}) opens one
// (backend_registry.hpp); tests may construct it directly for the extra inspection calls below.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "scheduler/backend_registry.hpp"
#include "scheduler/cpu_ffn.hpp"
#include "scheduler/expert_backend.hpp"
#include "scheduler/linear_exec.hpp"
#include "scheduler/sim_device.hpp"
#include "scheduler/thread_pool.hpp"

namespace moetier::sched {

class SimBackend final : public DeviceBackend {
 public:
  /// Opens sim:<spec.index> with spec.capacity_bytes of memory (> 0), host -> device copies at
  /// spec.h2d_gbps GB/s (0 = unpaced) and the GEMM threshold spec.gemm_min_tokens (>= 0; 0 = never).
  /// Throws moetier::Error for a bad index, capacity, rate or threshold.
  explicit SimBackend(const DeviceSpec& spec);
  ~SimBackend() override;  // finishes the running group, drops queued ones

  /// "sim:N".
  std::string name() const override { return name_; }
  MemoryKind memory_kind() const override { return MemoryKind::Device; }
  /// Declines empty groups, weights not in device memory, and weight types the CPU kernels cannot compute.
  std::optional<std::string> supports(GgmlType weight_type, int64_t n_tokens, MemoryKind weights_in) const override;
  /// Queues g on the stream; returns its ticket at once. Computes from the device copy of g.key
  /// (g.weights is ignored); g.x / g.y must stay valid until the ticket is done. Throws moetier::Error
  /// (before queueing) when the device does not hold g.key, when n_tokens < 1, x or y is null, or n_embd
  /// does not match the held FFN.
  uint64_t run(const ExpertGroup& g) override;
  /// See SimStream::wait: rethrows (as moetier::Error naming the device and the FFN) the first error of a
  /// group <= ticket not yet reported; the backend keeps working afterwards.
  void wait(uint64_t ticket) override;
  BackendStats stats() const override;

  uint64_t capacity_bytes() const override { return memory_.capacity_bytes(); }
  uint64_t used_bytes() const override { return memory_.used_bytes(); }
  /// One buffer of w.bytes() for gate, up and down (contiguous, in that order), filled through the copy
  /// engine; biases stay host pointers (they must outlive the placement). Throws moetier::Error (nothing
  /// left allocated) when `key` is held, a matrix is missing, the matrices do not fit each other, a
  /// type has no CPU kernel, or the FFN does not fit the free memory.
  void place(FfnKey key, const HostFfn& w) override;
  /// Waits for the stream to finish all queued groups (errors stay for wait()), then frees `key`.
  void evict(FfnKey key) override;
  bool holds(FfnKey key) const override;

  /// Largest used_bytes() since opened (never above capacity_bytes()).
  uint64_t peak_bytes() const { return memory_.peak_bytes(); }
  /// The device copy of `key` (device views: not for CPU code). Throws moetier::Error when not held.
  const DeviceFfn& device_ffn(FfnKey key) const;
  /// Whether `ticket` and every earlier group finished (does not block or report errors).
  bool done(uint64_t ticket) const { return stream_.done(ticket); }
  /// When the stream ran its last (up to SimStream::kSpanHistory) groups.
  std::vector<SimSpan> recent_spans() const { return stream_.recent_spans(); }
  std::thread::id stream_thread_id() const { return stream_.thread_id(); }
  /// Test hook: the next group run() accepts fails on the stream thread ("injected fault") instead of
  /// computing, so tests can check that stream errors come back from wait().
  void inject_fault_for_test();

 private:
  struct Slot {
    SimBuffer buffer;
    DeviceFfn ffn;
  };
  void compute(const SimWork& work, uint64_t ticket);  // on the stream thread

  std::string name_;
  SimMemory memory_;
  SimCopyEngine copy_;
  std::unordered_map<uint64_t, Slot> slots_;  // after memory_: its buffers are freed first
  // The stream thread's compute: CPU kernels on a one-thread pool (used only by the stream thread).
  ThreadPool pool_;
  LinearExec lin_;
  CpuFfn ffn_;
  std::atomic<uint64_t> groups_{0}, token_rows_{0}, busy_ns_{0};
  std::atomic<uint64_t> fault_ticket_{0};  // inject_fault_for_test: the ticket that fails (0: none)
  SimStream stream_;                       // last: its thread stops before the members above go
};

}  // namespace moetier::sched
