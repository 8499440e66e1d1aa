// Device placement: puts on a device backend (sim:N, gpu:N) what a placement decision homes there, by
// copying it from the mmapped model once at start-up: routed experts, and the FFNs every token reads
// (each layer's shared expert or dense FFN) when the non-expert weights go to the device. Attention,
// norms and embeddings are computed on the CPU until the CUDA backend (issue 10) brings attention kernels:
// they are not copied.
#pragma once

#include <cstdint>
#include <functional>

#include "offload/expert_id.hpp"
#include "offload/placement_plan.hpp"
#include "runtime/models/model.hpp"
#include "scheduler/expert_backend.hpp"

namespace moetier::tiered {

/// What was placed.
struct DevicePlacement {
  uint64_t n_experts = 0;       ///< routed experts copied
  uint64_t n_shared = 0;        ///< shared experts / dense FFNs copied
  uint64_t bytes = 0;           ///< bytes copied (gate + up + down of each)
};

/// Bytes of the FFNs every token reads that a device computes when the plan puts the non-expert weights
/// there: each layer's shared expert or dense FFN (gate + up + down).
uint64_t non_expert_ffn_bytes(const models::Model& model);

/// Copies every routed expert for which `expert_on_device` is true, then, when `non_expert_ffns`, every
/// layer's shared expert / dense FFN, into `device` (DeviceBackend::place). Throws moetier::Error (the
/// device's message, naming the FFN and bytes) when they do not fit; what was placed before stays.
DevicePlacement place_on_device(const models::Model& model, sched::DeviceBackend& device,
                                const std::function<bool(offload::ExpertId)>& expert_on_device,
                                bool non_expert_ffns);

/// place_on_device for what `plan` homes on `device_tier`: experts whose tier equals it, and the
/// non-expert FFNs when plan.non_expert equals it.
DevicePlacement place_plan_on_device(const models::Model& model, sched::DeviceBackend& device,
                                     const offload::PlacementPlan& plan, offload::Tier device_tier);

}  // namespace moetier::tiered
