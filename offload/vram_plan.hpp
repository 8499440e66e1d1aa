// offload/vram_plan.hpp — plans with a device tier (gpu:N or sim:N): the weights every token reads
// (non-expert weights) and the KV cache go to device memory first, then the most-routed experts while
// they fit the VRAM budget, then DRAM and NVMe as plan_from_ram_budget places them. One device for now.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "offload/placement_plan.hpp"

namespace moetier::offload {

/// What plan_with_vram places, besides the model's experts (all sizes in bytes).
struct VramPlanRequest {
  uint64_t non_expert_bytes = 0;  ///< weights that are not routed experts (attention, norms, embeddings, shared experts)
  uint64_t kv_cache_bytes = 0;    ///< the KV cache for the requested context
  DeviceBudget device;            ///< the device tier (gpu:N or sim:N) and its VRAM budget (bytes > 0)
  /// DRAM for the weights the device does not take, as plan_from_ram_budget's budget_bytes: the
  /// non-expert weights when they stay in DRAM, DRAM-homed experts and the cache of streamed experts
  /// (the KV cache is not in it: in DRAM it is the caller's, as the other reserved parts are). None: no
  /// DRAM limit (every expert the device does not take is homed in DRAM, nothing streams).
  std::optional<uint64_t> dram_budget_bytes;
  /// Non-expert bytes DRAM holds whatever the device takes (while no device backend computes attention,
  /// the host keeps every non-expert weight and the device only copies the FFNs it computes). None: DRAM
  /// holds non_expert_bytes when they do not go to the device, nothing when they do.
  std::optional<uint64_t> dram_non_expert_bytes;
  std::vector<std::vector<uint64_t>> usage;  ///< [n_layers][n_experts] routing counts, or empty
  uint64_t min_cache_experts = 16;           ///< as RamBudgetOptions
  PolicyKind policy = PolicyKind::Lru;
};

/// A plan with a device tier and what the planner decided.
struct VramPlan {
  PlacementPlan plan;              ///< plan.devices holds request.device; validated
  bool shared_on_device = false;   ///< non-expert weights and KV cache on the device (both or neither)
  uint64_t device_bytes_used = 0;  ///< non-expert + KV (when on the device) + experts there; <= device.bytes
  std::vector<std::string> notes;  ///< one line each: what did not fit the device and why (empty when all did)
};

/// True when the non-expert weights and the KV cache fit a device budget of device_bytes together
/// (no overflow for any sizes).
bool shared_fits_on_device(uint64_t non_expert_bytes, uint64_t kv_cache_bytes, uint64_t device_bytes);

/// Plans `model` over one device, DRAM and NVMe, deterministically:
/// 1. the non-expert weights and the KV cache go to the device when they fit its budget together,
///    otherwise both stay in DRAM (a note says so);
/// 2. experts in fill_order(model, usage) (most routed first; without usage spread evenly over layers)
///    go to the device while they fit what is left (skipping any that does not);
/// 3. the rest are homed in DRAM, or, with a DRAM budget, as fill_dram_then_nvme places them (DRAM
///    while they fit after a cache of at least min_cache_experts slots, the rest on nvme).
/// The device's bytes never exceed request.device.bytes. Throws moetier::Error when the device tier is
/// not gpu:N / sim:N, its budget is 0, usage has the wrong shape, or the DRAM budget cannot hold the
/// non-expert weights it must hold plus one streamed expert (fill_dram_then_nvme's messages).
VramPlan plan_with_vram(const ModelIdentity& model, const VramPlanRequest& request);

}  // namespace moetier::offload
