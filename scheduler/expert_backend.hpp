// ExpertBackend: what the MoE executor (scheduler/moe_executor.hpp) hands one expert's token group to:
// the CPU kernels, the simulated device (sim:N, for CPU-only machines and tests), or a CUDA device
// (gpu:N). A backend accepts a problem or declines it with a reason (supports), like the CPU kernel
// registry; run() is asynchronous: it returns a ticket, and wait(ticket) returns once that group and every
// group submitted before it on this backend are done (in-order stream semantics). The weights of a group
// carry their memory kind in their type (common/weight_view.hpp), so device memory never reaches a CPU
// kernel. Device backends also own their memory: the executor places experts and non-expert FFNs there
// once (or refreshes dynamic slots between steps) and asks holds() where an expert lives.
//
// Threading: a backend is used from the thread that runs the model; a device backend may compute on its
// own thread (its stream), but errors never cross threads as exceptions: they are captured there and
// rethrown by wait() on the caller's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <variant>

#include "common/weight_view.hpp"
#include "scheduler/cpu_ffn.hpp"

namespace moetier::sched {

/// Identifies an FFN a device may hold: a routed expert (expert >= 0) or a layer's non-expert FFN
/// (expert == kSharedFfn: the shared expert of a MoE layer, or the dense FFN of a dense layer).
struct FfnKey {
  int32_t layer = 0;
  int32_t expert = 0;
  static constexpr int32_t kSharedFfn = -1;
  friend bool operator==(const FfnKey&, const FfnKey&) = default;
  /// One 64-bit id per key (device backends' maps of held FFNs).
  uint64_t id() const { return (static_cast<uint64_t>(static_cast<uint32_t>(layer)) << 32) | static_cast<uint32_t>(expert); }
};

/// "layer 3 expert 7" or "layer 3 shared FFN" (error messages).
std::string to_string(FfnKey key);

/// One group of rows for one FFN: x [n_tokens, n_embd] f32 (read) -> y [n_tokens, n_embd] f32
/// (written). x and y are host memory owned by the executor and stay valid until the group's ticket
/// completes. For device backends, `weights` is ignored when the device holds `key` (it computes from its
/// own copy); host weights are only passed to the CPU backend.
struct ExpertGroup {
  FfnKey key;
  HostFfn weights;             // host weights (CPU backend); unset for groups computed on a device
  const float* x = nullptr;
  float* y = nullptr;
  int64_t n_tokens = 0;
  int64_t n_embd = 0;
  FfnAct act = FfnAct::SwiGLU;
  FfnKind kind = FfnKind::Routed;  // routed experts follow ggml's mul_mat_id, shared / dense FFNs mul_mat
  /// x holds the same rows as the previous group run on this backend in this layer (decode: the executor
  /// sets it on every group of a layer but the first per backend), so a kept quantisation may be reused.
  bool same_input = false;
};

/// Time and traffic of one backend (executor statistics; `run -v`).
struct BackendStats {
  uint64_t groups = 0;         // groups computed
  uint64_t token_rows = 0;     // sum of n_tokens over groups
  uint64_t busy_ns = 0;        // time spent computing groups (on the backend's own thread for devices)
  uint64_t h2d_bytes = 0;      // bytes copied host -> device (placement and dynamic slots)
  uint64_t h2d_ns = 0;         // time the copy engine spent on them
};

/// Told which experts each MoE layer's batch routed to (e.g. dynamic device slots counting use).
class RoutingObserver {
 public:
  virtual ~RoutingObserver() = default;
  /// experts: distinct ids routed to by the batch, ascending (valid during the call only).
  virtual void observe(int32_t layer, std::span<const int32_t> experts) = 0;
  /// A new forward step (prefill batch or decode token) starts: the time to act on what was observed
  /// (e.g. refresh dynamic device slots). Called by MoeExecutor::begin_step.
  virtual void between_steps() {}
};

class ExpertBackend {
 public:
  virtual ~ExpertBackend() = default;
  /// "cpu", "sim:0", "gpu:1".
  virtual std::string name() const = 0;
  /// The memory kind this backend computes from.
  virtual MemoryKind memory_kind() const = 0;
  /// std::nullopt when the backend can compute an FFN whose matrices have `weight_type`, on a group of
  /// `n_tokens` rows, reading weights of kind `weights_in`; otherwise the reason it declines
  /// ("device memory is not readable by CPU kernels", "no Q2_K kernel").
  virtual std::optional<std::string> supports(GgmlType weight_type, int64_t n_tokens, MemoryKind weights_in) const = 0;
  /// Starts computing `g`; returns its ticket. The CPU backend computes before returning.
  /// Throws moetier::Error when the group is not supported (checked before any work).
  virtual uint64_t run(const ExpertGroup& g) = 0;
  /// Returns once the group of `ticket` and all earlier ones finished; rethrows the first error a group
  /// raised on the backend's thread (then the backend is reset: later groups run again).
  virtual void wait(uint64_t ticket) = 0;
  virtual BackendStats stats() const = 0;
};

/// The checks every DeviceBackend::place makes before allocating, one line each naming `device` and the
/// FFN: each matrix present, with ggml's row size for its type and accepted by `declines` (a reason, or
/// std::nullopt), and the three matrices fitting each other (gate / up [n_ff, n_embd], down [n_embd, n_ff]).
void check_placeable(const std::string& device, FfnKey key, const HostFfn& w,
                     const std::function<std::optional<std::string>(const HostWeight&)>& declines);

/// The checks every DeviceBackend::run makes before queueing `g` on an FFN it holds whose rows have
/// `ffn_n_embd` values: at least one row, x and y set, n_embd matching. Throws moetier::Error naming
/// `device` and the FFN.
void check_group(const std::string& device, const ExpertGroup& g, int64_t ffn_n_embd);

/// A backend with its own memory (gpu:N, sim:N): holds a set of FFNs (experts placed at start-up, the
/// non-expert FFNs when the plan puts them there, dynamic slots).
class DeviceBackend : public ExpertBackend {
 public:
  /// Bytes of device memory in all / in use (never more than capacity: allocation beyond it throws).
  virtual uint64_t capacity_bytes() const = 0;
  virtual uint64_t used_bytes() const = 0;
  /// Copies `w` (host bytes) into device memory and records it under `key` (synchronous: done when this
  /// returns; counted in stats().h2d_bytes). Throws moetier::Error naming the device, the FFN and the bytes
  /// when it does not fit, or when `key` is already held.
  virtual void place(FfnKey key, const HostFfn& w) = 0;
  /// Frees the device copy of `key` (no-op when not held). Must not be called while a group using it runs.
  virtual void evict(FfnKey key) = 0;
  /// Whether the device holds `key`.
  virtual bool holds(FfnKey key) const = 0;
};

}  // namespace moetier::sched
