#include "runtime/tiered/device_tier.hpp"

#include <fmt/format.h>

#include "runtime/models/size_breakdown.hpp"

namespace moetier::tiered {

DeviceTier::DeviceTier(models::Model& model, const offload::PlacementPlan& plan, offload::Tier tier,
                       const sched::DeviceSpec& spec, uint64_t slot_bytes)
    : model_(model), plan_(plan) {
  device_ = sched::make_device_backend(spec);
  placed_ = place_plan_on_device(model, *device_, plan_, tier);
  if (slot_bytes > 0) {
    sched::DynamicSlotsOptions so;
    so.n_layers = static_cast<int32_t>(model.hparams().n_layer);
    so.n_experts = static_cast<int32_t>(model.hparams().n_expert);
    slots_ = std::make_unique<sched::DynamicSlots>(*device_, slot_bytes, so);
    // Only experts whose bytes are in host memory at a fixed address (the DRAM tier: the mmapped file) are
    // copied into slots; streamed experts stay with the NVMe cache.
    lookup_ = [this](sched::FfnKey k) -> std::optional<HostFfn> {
      if (plan_.tier({k.layer, k.expert}).kind != offload::Tier::Kind::Dram) return std::nullopt;
      return model_.resident_expert(k.layer, k.expert);
    };
  }
  model_.executor().set_device(device_.get());
  model_.executor().set_observer(slots_ ? this : nullptr);
}

DeviceTier::~DeviceTier() {
  model_.executor().set_observer(nullptr);
  model_.executor().set_device(nullptr);
}

void DeviceTier::observe(int32_t layer, std::span<const int32_t> experts) {
  if (slots_) slots_->observe(layer, experts);
}

void DeviceTier::between_steps() {
  if (slots_) slots_->refresh(lookup_);
}

std::string DeviceTier::stats_report() const {
  std::string s = fmt::format("{}: {} experts and {} shared / dense FFNs placed ({}), {} of {} device memory in use\n",
                              device_->name(), placed_.n_experts, placed_.n_shared, models::format_bytes(placed_.bytes),
                              models::format_bytes(device_->used_bytes()), models::format_bytes(device_->capacity_bytes()));
  if (slots_) {
    const auto& st = slots_->stats();
    s += fmt::format("  dynamic slots: {} of {} in use, {} experts held, hit rate {:.1f}% ({} of {} routed experts), "
                     "{} placed, {} evicted, {} copied in {} refreshes\n",
                     models::format_bytes(slots_->used_bytes()), models::format_bytes(slots_->budget_bytes()),
                     slots_->n_held(), 100.0 * st.hit_rate(), st.hits, st.lookups, st.placed, st.evicted,
                     models::format_bytes(st.bytes_copied), st.refreshes);
  }
  s += model_.executor().stats_report();
  return s;
}

}  // namespace moetier::tiered
