// DeviceTier: the device of a run (sim:N or gpu:N) installed in a model's MoE executor: opens the backend
// from a DeviceSpec, copies what the plan homes there (runtime/tiered/device_placement.hpp), optionally
// keeps dynamic slots (scheduler/dynamic_slots.hpp) refreshed from the routing between forward steps, and
// reports per-tier statistics. Removes itself from the model when destroyed.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "offload/placement_plan.hpp"
#include "runtime/models/model.hpp"
#include "runtime/tiered/device_placement.hpp"
#include "scheduler/backend_registry.hpp"
#include "scheduler/dynamic_slots.hpp"

namespace moetier::tiered {

class DeviceTier final : public sched::RoutingObserver {
 public:
  /// Opens `spec`, places what `plan` homes on `tier`, and installs the device in `model`'s executor.
  /// `slot_bytes` > 0: device bytes for dynamic expert slots on top of the placement (filled from DRAM-homed
  /// experts between steps). Throws moetier::Error (opening the device, a placement that does not fit).
  DeviceTier(models::Model& model, const offload::PlacementPlan& plan, offload::Tier tier,
             const sched::DeviceSpec& spec, uint64_t slot_bytes = 0);
  ~DeviceTier() override;
  DeviceTier(const DeviceTier&) = delete;
  DeviceTier& operator=(const DeviceTier&) = delete;

  sched::DeviceBackend& device() { return *device_; }
  const DevicePlacement& placement() const { return placed_; }
  const sched::DynamicSlots* slots() const { return slots_.get(); }

  void observe(int32_t layer, std::span<const int32_t> experts) override;
  void between_steps() override;

  /// Multi-line summary: what was placed, device memory, the executor's per-backend and per-layer split,
  /// dynamic-slot hit rate.
  std::string stats_report() const;

 private:
  models::Model& model_;
  offload::PlacementPlan plan_;
  std::unique_ptr<sched::DeviceBackend> device_;
  DevicePlacement placed_;
  std::unique_ptr<sched::DynamicSlots> slots_;
  sched::HostLookup lookup_;
};

}  // namespace moetier::tiered
