// Tiered experts: the bridge between a model and offload/. Builds the expert catalog (each routed expert's
// gate / up / down byte ranges inside the GGUF files), the model identity a placement plan refers to,
// and TieredExperts, the streaming ExpertSource (scheduler/expert_source.hpp) that serves the NVMe-homed
// experts from a bounded DRAM cache filled through io_uring: reads of missing experts start when a
// layer's routing is known (the executor computes the resident experts while they arrive, then each
// streamed expert as its read completes); predictions of the next layer's experts start reads one layer
// ahead. DRAM-homed experts are the model's resident source; this object never sees them.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "offload/expert_cache.hpp"
#include "offload/expert_catalog.hpp"
#include "offload/placement_plan.hpp"
#include "runtime/models/model.hpp"
#include "scheduler/expert_source.hpp"

namespace moetier::tiered {

/// Catalog of the routed experts of `model` whose home in `plan` is nvme (all routed experts when
/// plan is nullptr): per expert three ranges, gate / up / down, in that order, and the expert's layout
/// (shapes, types, biases) from the model. Throws Error for
/// expert tensors that are not stacked [n_expert, n_out, n_in] or per-expert (legacy) tensors.
offload::ExpertCatalog build_expert_catalog(const models::Model& model, const offload::PlacementPlan* plan);

/// What a placement plan refers to: file name, n_layers, n_experts, bytes of one expert per layer.
offload::ModelIdentity model_identity(const models::Model& model);

/// Bytes of every tensor that is not a routed expert (what must stay resident whatever the plan).
uint64_t non_expert_bytes(const models::Model& model);

struct TieredOptions {
  offload::ReaderOptions reader;
  /// The device tiers this process has (a device's experts are computed by its backend, not served here):
  /// a plan using others is refused.
  offload::DeviceTiers devices;
  offload::PolicyParams policy_params;
};

/// Streaming source of the experts a placement plan homes on nvme (see file comment). Plans with device
/// tiers are checked by the caller (the executor's device places those experts). Single-threaded: used
/// from the thread that runs the model.
class TieredExperts final : public sched::ExpertSource {
 public:
  /// Throws Error when the plan does not match the model, uses a device tier not in opts.devices, or
  /// the cache cannot be built (e.g. its budget holds no expert). `model` is only read here.
  TieredExperts(const models::Model& model, const offload::PlacementPlan& plan, const TieredOptions& opts = {});

  /// `experts` must all be served (homed on nvme).
  void begin(int32_t layer, std::span<const int32_t> experts) override;
  int32_t next(HostFfn& out) override;
  bool serves(int32_t layer, int32_t expert) const override;
  void poll() override;
  bool wants_prediction() const override { return cache_ != nullptr && prefetch_; }
  void predict(int32_t layer, std::span<const int32_t> experts) override;

  /// Turns the next-layer prediction off or on (default on).
  void set_prefetch(bool on) { prefetch_ = on; }
  /// The cache of streamed experts (nullptr when the plan streams nothing).
  const offload::ExpertCache* cache() const { return cache_.get(); }
  size_t n_streamed() const { return n_streamed_; }
  const offload::PlacementPlan& plan() const { return plan_; }
  /// Demand accounting per layer, from the executor's point of view: when a layer's routing is known,
  /// each streamed expert it needs was already in the cache (hit), was being read because the
  /// previous layer predicted it (prefetched), or had to be read now (miss).
  struct DemandStats {
    uint64_t hits = 0, prefetched = 0, misses = 0;
    uint64_t requests() const { return hits + prefetched + misses; }
  };
  const std::vector<DemandStats>& demand_stats() const { return demand_; }
  DemandStats total_demand() const;
  /// Multi-line summary: tiers, cache size, per-layer hits / misses / bytes / stall, hit rate.
  std::string stats_report() const;

 private:
  HostFfn weights_from_lease(const offload::ExpertLease& lease) const;
  offload::PlacementPlan plan_;
  std::unique_ptr<offload::ExpertCache> cache_;
  size_t n_streamed_ = 0;
  bool prefetch_ = true;
  int32_t layer_ = 0;
  std::vector<int32_t> streamed_;
  std::vector<uint8_t> streamed_done_;
  offload::ExpertLease lease_;
  std::vector<DemandStats> demand_;
};

}  // namespace moetier::tiered
