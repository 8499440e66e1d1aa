// DynamicSlots: a cache of routed experts in device memory, refreshed from routing statistics between
// steps. The executor reports, per MoE layer, the experts the batch routed to (observe); after a step
// (e.g. each forward call) refresh() decays the counts, copies the hottest experts that are not on the
// device yet into a byte budget of device memory, and evicts the coldest ones it placed itself to make
// room. Experts the device held before (placed statically from the plan) are never evicted. A new expert
// replaces a held one only when its score beats the held one's by a margin (hysteresis), so a stable or
// tied routing pattern does not make experts bounce between host and device.
//
// Threading: one thread (the one that runs the model); refresh() must only be called while no group of
// the device runs (DeviceBackend::evict's precondition), i.e. between steps.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "common/weight_view.hpp"
#include "scheduler/expert_backend.hpp"

namespace moetier::sched {

struct DynamicSlotsOptions {
  int32_t n_layers = 0;   ///< layers of the model (FfnKey::layer in [0, n_layers))
  int32_t n_experts = 0;  ///< routed experts per layer (FfnKey::expert in [0, n_experts))
  /// Each refresh multiplies every score by `decay` before adding the counts observed since the last one:
  /// an exponential window of about 1 / (1 - decay) steps. In [0, 1); 0 = only the last step counts.
  /// The defaults (0.95, 1.5, 0.5) come from a sweep on the Mixtral-8x7B trace in ../shared/traces (decode,
  /// a refresh per token, 64 of 256 experts): hit rate 0.35 at 1.3 experts copied per token, against 0.40
  /// at 38 copies per token when only the last token counts (decay 0, no hysteresis) and 0.34 for the
  /// best fixed placement chosen with hindsight. Copies cost PCIe time: lower swap_ratio only with care.
  double decay = 0.95;
  /// Hysteresis: a candidate displaces a dynamic expert only when
  /// score(candidate) > swap_ratio * score(held) + swap_margin. swap_ratio >= 1, swap_margin >= 0.
  double swap_ratio = 1.5;
  double swap_margin = 0.5;
  /// Smallest score an expert needs to fill a free slot (> 0 means "routed within the window").
  double min_score = 1e-3;
  /// Most bytes one refresh may copy to the device (bounds the stall between steps); 0 = no limit.
  uint64_t max_copy_bytes_per_refresh = 0;
};

/// What one refresh changed. The spans point into the DynamicSlots object and stay valid until its next
/// refresh().
struct RefreshResult {
  std::span<const FfnKey> placed;   ///< copied to the device, in the order placed (hottest first)
  std::span<const FfnKey> evicted;  ///< freed on the device, in the order evicted (coldest first)
  uint64_t bytes_copied = 0;        ///< device bytes copied by this refresh
};

/// Counters since construction.
struct DynamicSlotsStats {
  uint64_t lookups = 0;       ///< routed experts observed
  uint64_t hits = 0;          ///< ... that were in a dynamic slot when observed
  uint64_t static_hits = 0;   ///< ... that were on the device but placed by someone else (the plan)
  uint64_t refreshes = 0;
  uint64_t placed = 0;        ///< experts copied to the device
  uint64_t evicted = 0;       ///< dynamic experts freed
  uint64_t bytes_copied = 0;  ///< device bytes of the placed experts (host -> device copies)
  /// hits / lookups (0 when nothing was observed).
  double hit_rate() const { return lookups ? static_cast<double>(hits) / static_cast<double>(lookups) : 0.0; }
  /// (hits + static_hits) / lookups: the share of routed experts the device held.
  double device_hit_rate() const {
    return lookups ? static_cast<double>(hits + static_hits) / static_cast<double>(lookups) : 0.0;
  }
};

/// Where refresh() finds a routed expert's host weights: the HostFfn of (layer, expert) when its bytes are
/// in host memory now (mmap, DRAM tier, a cache slot), std::nullopt otherwise (e.g. a streamed expert not
/// resident). The view only needs to stay valid during the call (DeviceBackend::place copies before
/// returning).
using HostLookup = std::function<std::optional<HostFfn>(FfnKey key)>;

class DynamicSlots final : public RoutingObserver {
 public:
  /// `device` must outlive this object. `budget_bytes`: device bytes the dynamic slots may take beyond
  /// what the device holds already (device memory as DeviceBackend::used_bytes counts it). Experts the
  /// device holds now (or that turn out to be held when refresh wants to place them) count as static
  /// and are never evicted. Allocates its n_layers x n_experts tables here and nowhere else.
  /// Throws moetier::Error when the options are out of range (n_layers or n_experts < 1, decay outside
  /// [0, 1), swap_ratio < 1, swap_margin or min_score < 0).
  DynamicSlots(DeviceBackend& device, uint64_t budget_bytes, const DynamicSlotsOptions& opts);

  /// Records that the current batch routed layer `layer` to `experts` (an expert listed twice counts
  /// twice: prefill may pass one entry per token). Ids outside [0, n_layers) x [0, n_experts) are
  /// ignored. Does not allocate and does not call the device.
  void observe(int32_t layer, std::span<const int32_t> experts) override;

  /// Between steps: folds the counts observed since the last refresh into the scores, then fills the
  /// budget with the hottest experts `lookup` can provide, evicting colder dynamic ones (hysteresis:
  /// see DynamicSlotsOptions). Calls lookup only for experts it means to place. Does not allocate.
  /// Throws what device.place throws (the object stays consistent: the expert is simply not held).
  RefreshResult refresh(const HostLookup& lookup);

  /// Whether `key` is in a dynamic slot (placed by this object and not evicted).
  bool holds_dynamic(FfnKey key) const;
  /// Device bytes the dynamic slots take now (never more than budget_bytes()).
  uint64_t used_bytes() const { return used_bytes_; }
  uint64_t budget_bytes() const { return budget_bytes_; }
  /// Experts in dynamic slots now.
  int64_t n_held() const { return n_held_; }
  /// The decayed score of an expert (0 for ids out of range).
  double score(FfnKey key) const;
  const DynamicSlotsStats& stats() const { return stats_; }

 private:
  enum class State : uint8_t { Absent, Static, Dynamic };
  int64_t index(int32_t layer, int32_t expert) const {
    return static_cast<int64_t>(layer) * opts_.n_experts + expert;
  }
  FfnKey key_of(int64_t i) const {
    return FfnKey{static_cast<int32_t>(i / opts_.n_experts), static_cast<int32_t>(i % opts_.n_experts)};
  }
  bool in_range(FfnKey key) const {
    return key.layer >= 0 && key.layer < opts_.n_layers && key.expert >= 0 && key.expert < opts_.n_experts;
  }
  void evict_slot(int64_t i);

  DeviceBackend& device_;
  uint64_t budget_bytes_;
  DynamicSlotsOptions opts_;
  // Flat [n_layers * n_experts] tables, index = layer * n_experts + expert.
  std::vector<uint32_t> counts_;     // observations since the last refresh
  std::vector<double> scores_;       // decayed scores
  std::vector<State> state_;
  std::vector<uint64_t> slot_bytes_;  // device bytes of each dynamic slot
  // Scratch of refresh (capacity reserved at construction).
  std::vector<int64_t> candidates_, victims_;
  std::vector<FfnKey> placed_, evicted_;
  uint64_t used_bytes_ = 0;
  uint64_t overhead_bytes_ = 0;  // most the device took beyond HostFfn::bytes() for one placement
  int64_t n_held_ = 0;
  DynamicSlotsStats stats_;
};

}  // namespace moetier::sched
