// MoeExecutor: runs the routed experts (and the shared expert) of one MoE layer. From the router's
// token-major routing it builds the expert-major groups (ExpertBatches), asks each expert's home for its
// weights — the device when it holds the expert, else the streaming source when it serves it (NVMe
// through the DRAM cache), else the resident source (mmapped GGUF) — dispatches each group to the backend
// that computes it (device groups are queued first and run on the device's stream while the CPU computes
// its groups), then combines the outputs in the router's slot order: y = ((w0*e0 + w1*e1) + w2*e2) + ...
// (ggml_mul then successive ggml_add). Each group is computed the same way wherever it runs, and the
// combination order is fixed, so results do not depend on placement or thread count.
// Models compute the routing and call the executor; they never see a file, a cache or a device.
// Source: llama.cpp build_moe_ffn (llama-graph.cpp); KTransformers' CPU/GPU expert split.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "scheduler/cpu_backend.hpp"
#include "scheduler/expert_backend.hpp"
#include "scheduler/expert_source.hpp"
#include "scheduler/routing_layout.hpp"

namespace moetier::sched {

/// Per-layer work split (run -v).
struct LayerExecStats {
  uint64_t cpu_groups = 0, device_groups = 0;  // FFNs computed (routed experts, shared / dense FFNs)
  uint64_t cpu_rows = 0, device_rows = 0;      // token rows over those groups
  uint64_t cpu_ns = 0;                         // time the calling thread spent computing CPU groups
  uint64_t device_wait_ns = 0;                 // time it then waited for the device's groups
  uint64_t device_busy_ns = 0;                 // time the device spent computing this layer's groups
};

/// When and where one group ran on the CPU (steady_clock ns): the executor's span log (profiling, tests).
struct GroupSpan {
  FfnKey key;
  int64_t start_ns = 0, end_ns = 0;
};

class MoeExecutor {
 public:
  /// CPU groups are computed with `lin` (its pool, its GEMM threshold); `lin` must outlive the executor.
  explicit MoeExecutor(LinearExec& lin);

  /// Where experts' host bytes come from. `resident` (required before moe()) serves every expert not
  /// served elsewhere; `streamed` (optional, nullptr to remove) serves the experts it says it serves.
  /// Both must outlive their use.
  void set_resident(ExpertSource* resident) { resident_ = resident; }
  void set_streamed(ExpertSource* streamed) { streamed_ = streamed; }
  ExpertSource* streamed() const { return streamed_; }
  /// The device whose held FFNs it computes (nullptr: CPU only). Must outlive its use.
  void set_device(DeviceBackend* device) { device_ = device; }
  DeviceBackend* device() const { return device_; }
  void set_observer(RoutingObserver* o) { observer_ = o; }
  /// Appends a GroupSpan for every group computed on the CPU to `log` (nullptr: off). Device backends
  /// keep their own spans. `log` must outlive its use; it grows (profiling only, not the hot path).
  void set_span_log(std::vector<GroupSpan>* log) { span_log_ = log; }

  /// Called by the model at the start of each forward step: the observer's between_steps() runs here.
  void begin_step() {
    if (observer_) observer_->between_steps();
  }

  /// One MoE layer. x [n_tokens, n_embd] f32 (read) with n_tokens = r.n_tokens; y [n_tokens, n_embd] f32
  /// (written) = the weighted sum of the routed experts in slot order. With `shared` (the layer's shared
  /// expert, host weights), shared_y [n_tokens, n_embd] (written) = shared(x), computed on the device when
  /// it holds FfnKey{layer, kSharedFfn}. Throws moetier::Error when a source fails (read error) or returns
  /// an expert it was not asked for, or a backend refuses a group.
  void moe(int32_t layer, const TokenRouting& r, const float* x, int64_t n_embd, float* y, FfnAct act,
           const HostFfn* shared = nullptr, float* shared_y = nullptr);

  /// A dense layer's FFN: y [n_tokens, n_embd] (written) = w(x), on the device when it holds
  /// FfnKey{layer, kSharedFfn}, else on the CPU (ggml_mul_mat order).
  void dense(int32_t layer, const HostFfn& w, const float* x, int64_t n_tokens, float* y, FfnAct act);

  /// Next-layer prediction: `experts` are the ids layer `layer` is predicted to route to (from an earlier
  /// hidden state); the streaming source starts reading them, and the prediction is scored when that
  /// layer runs. True when a streaming source wants predictions.
  bool wants_prediction() const { return streamed_ && streamed_->wants_prediction(); }
  void predict(int32_t layer, std::span<const int32_t> experts);
  struct PredictionStats {
    uint64_t predicted = 0;  // expert ids predicted for a layer
    uint64_t correct = 0;    // of those, actually routed to by the batch
  };
  const PredictionStats& prediction_stats() const { return pred_stats_; }

  const std::vector<LayerExecStats>& layer_stats() const { return layer_stats_; }
  BackendStats cpu_stats() const { return cpu_.stats(); }
  /// Multi-line summary: per backend groups / rows / busy time / bytes copied, per layer CPU and device
  /// share of the groups and time.
  std::string stats_report() const;

 private:
  LayerExecStats& stats_of(int32_t layer);
  /// Computes on the CPU every expert `src` hands out after its begin(layer, ids).
  void drain(int32_t layer, ExpertSource& src, std::span<const int32_t> ids, int64_t n_embd, FfnAct act, bool decode,
             bool& first_cpu);
  CpuBackend cpu_;
  ExpertSource* resident_ = nullptr;
  ExpertSource* streamed_ = nullptr;
  DeviceBackend* device_ = nullptr;
  RoutingObserver* observer_ = nullptr;
  std::vector<GroupSpan>* span_log_ = nullptr;
  /// Runs g on the CPU backend and accounts it to layer stats (and the span log); `home` names where its
  /// bytes live ("dram", "nvme": the DRAM cache of streamed experts) in the trace (common/trace_events.hpp).
  void run_cpu(const ExpertGroup& g, LayerExecStats& st, const char* home = "dram");
  ExpertBatches batches_;
  std::vector<float> xs_, ys_;              // rows grouped by expert: gathered inputs, outputs
  std::vector<int64_t> group_row_;          // [n_groups] first row of each group in xs_ / ys_
  std::vector<int64_t> row_of_slot_;        // [n_tokens * k] row of ys_ holding that slot's output
  std::vector<int32_t> on_device_, from_streamed_, from_resident_;
  int32_t predicted_layer_ = -1;
  std::vector<int32_t> predicted_;
  PredictionStats pred_stats_;
  std::vector<LayerExecStats> layer_stats_;
};

}  // namespace moetier::sched
