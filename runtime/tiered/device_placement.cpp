#include "runtime/tiered/device_placement.hpp"

namespace moetier::tiered {

uint64_t non_expert_ffn_bytes(const models::Model& model) {
  uint64_t b = 0;
  for (int32_t il = 0; il < model.hparams().n_layer; ++il)
    if (const HostFfn* w = model.non_expert_ffn(il)) b += w->bytes();
  return b;
}

DevicePlacement place_on_device(const models::Model& model, sched::DeviceBackend& device,
                                const std::function<bool(offload::ExpertId)>& expert_on_device,
                                bool non_expert_ffns) {
  const auto& hp = model.hparams();
  DevicePlacement p;
  for (int32_t il = 0; il < hp.n_layer; ++il) {
    if (!hp.is_moe_layer(il)) continue;
    for (int32_t e = 0; e < hp.n_expert; ++e) {
      if (!expert_on_device({il, e})) continue;
      const HostFfn w = model.resident_expert(il, e);
      device.place(sched::FfnKey{il, e}, w);
      ++p.n_experts;
      p.bytes += w.bytes();
    }
  }
  if (non_expert_ffns)
    for (int32_t il = 0; il < hp.n_layer; ++il)
      if (const HostFfn* w = model.non_expert_ffn(il)) {
        device.place(sched::FfnKey{il, sched::FfnKey::kSharedFfn}, *w);
        ++p.n_shared;
        p.bytes += w->bytes();
      }
  return p;
}

DevicePlacement place_plan_on_device(const models::Model& model, sched::DeviceBackend& device,
                                     const offload::PlacementPlan& plan, offload::Tier device_tier) {
  return place_on_device(
      model, device, [&](offload::ExpertId id) { return plan.tier(id) == device_tier; },
      plan.non_expert == device_tier);
}

}  // namespace moetier::tiered
