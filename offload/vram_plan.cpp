// offload/vram_plan.cpp — the planner with a device tier (see vram_plan.hpp).
#include "offload/vram_plan.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "common/error.hpp"

namespace moetier::offload {

bool shared_fits_on_device(uint64_t non_expert_bytes, uint64_t kv_cache_bytes, uint64_t device_bytes) {
  return non_expert_bytes <= device_bytes && kv_cache_bytes <= device_bytes - non_expert_bytes;
}

VramPlan plan_with_vram(const ModelIdentity& model, const VramPlanRequest& rq) {
  const Tier dev = rq.device.tier;
  if (!dev.is_device() || dev.device < 0)
    fail("plan for {}: {} is not a device tier (expected gpu:N or sim:N)", model.file, to_string(dev));
  if (rq.device.bytes == 0) fail("plan for {}: the VRAM budget of {} is 0 bytes", model.file, to_string(dev));
  check_usage_shape(model, rq.usage, "plan_with_vram");
  const std::vector<ExpertId> order = fill_order(model, rq.usage);  // checks the identity

  VramPlan out;
  PlacementPlan& p = out.plan;
  p.model = model;
  p.cache_policy = rq.policy;
  p.devices = {rq.device};
  p.experts.resize(model.expert_bytes.size());
  for (size_t l = 0; l < model.expert_bytes.size(); ++l)
    if (model.expert_bytes[l] > 0) p.experts[l].assign(static_cast<size_t>(model.n_experts), Tier::dram());

  // 1. What every token reads: non-expert weights and the KV cache, together or not at all.
  uint64_t room = rq.device.bytes;
  if (shared_fits_on_device(rq.non_expert_bytes, rq.kv_cache_bytes, room)) {
    out.shared_on_device = true;
    p.non_expert = dev;
    p.kv_cache = dev;
    room -= rq.non_expert_bytes + rq.kv_cache_bytes;
  } else {
    out.notes.push_back(
        rq.kv_cache_bytes == 0
            ? fmt::format("the non-expert weights ({} bytes) do not fit the VRAM budget of {} ({} bytes): they stay in "
                          "DRAM; the device holds experts only",
                          rq.non_expert_bytes, to_string(dev), rq.device.bytes)
            : fmt::format("the non-expert weights ({} bytes) and the KV cache ({} bytes) do not fit the VRAM budget of "
                          "{} ({} bytes) together: both stay in DRAM; the device holds experts only",
                          rq.non_expert_bytes, rq.kv_cache_bytes, to_string(dev), rq.device.bytes));
  }

  // 2. The hottest experts while they fit.
  std::vector<ExpertId> rest;
  uint64_t smallest_left = 0;
  for (ExpertId id : order) {
    const uint64_t b = model.expert_bytes[static_cast<size_t>(id.layer)];
    if (b <= room) {
      room -= b;
      p.experts[static_cast<size_t>(id.layer)][static_cast<size_t>(id.expert)] = dev;
    } else {
      rest.push_back(id);
      smallest_left = smallest_left == 0 ? b : std::min(smallest_left, b);
    }
  }
  out.device_bytes_used = rq.device.bytes - room;
  if (!rest.empty())
    out.notes.push_back(fmt::format("{} of {} experts do not fit the {} bytes left on {} (smallest left: {} bytes): "
                                    "they go to DRAM{}",
                                    rest.size(), order.size(), room, to_string(dev), smallest_left,
                                    rq.dram_budget_bytes ? " and NVMe" : ""));

  // 3. DRAM, then NVMe with a cache, for the rest.
  if (rq.dram_budget_bytes)
    fill_dram_then_nvme(p, rest, *rq.dram_budget_bytes,
                        rq.dram_non_expert_bytes ? *rq.dram_non_expert_bytes
                                                 : (out.shared_on_device ? 0 : rq.non_expert_bytes),
                        rq.min_cache_experts);
  p.validate();
  return out;
}

}  // namespace moetier::offload
