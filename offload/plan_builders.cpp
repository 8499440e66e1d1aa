// offload/plan_builders.cpp — the DRAM / NVMe planners of placement_plan.hpp: fill order, the DRAM fill
// with a cache for streamed experts, plan_from_ram_budget and plan_experts_on_nvme.
#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "common/error.hpp"
#include "offload/placement_plan.hpp"
#include "offload/slot_layout.hpp"

namespace moetier::offload {
namespace {

constexpr uint64_t kRangesPerExpert = 3;  // gate, up, down: alignment slack of a cache slot (as planned_slot_bytes)

uint64_t slot_bytes_for(uint64_t expert_bytes) { return slot_bytes_bound(expert_bytes, kRangesPerExpert); }

// Expert order "spread evenly over layers": expert 0 of every MoE layer, then expert 1, ...
std::vector<ExpertId> round_robin(const ModelIdentity& m) {
  std::vector<ExpertId> out;
  for (int32_t e = 0; e < m.n_experts; ++e)
    for (int32_t l = 0; l < m.n_layers; ++l)
      if (m.expert_bytes[static_cast<size_t>(l)] > 0) out.push_back(ExpertId{l, e});
  return out;
}

PlacementPlan empty_plan(const ModelIdentity& model, Tier fill) {
  PlacementPlan p;
  p.model = model;
  p.experts.resize(model.expert_bytes.size());
  for (size_t l = 0; l < model.expert_bytes.size(); ++l)
    if (model.expert_bytes[l] > 0) p.experts[l].assign(static_cast<size_t>(model.n_experts), fill);
  return p;
}

void check_identity(const ModelIdentity& m) {
  if (m.n_layers <= 0 || m.n_experts <= 0 || m.expert_bytes.size() != static_cast<size_t>(m.n_layers))
    fail("placement plan for {}: inconsistent model identity ({} layers, {} experts, {} expert sizes)", m.file,
         m.n_layers, m.n_experts, m.expert_bytes.size());
}

}  // namespace

void check_usage_shape(const ModelIdentity& model, const std::vector<std::vector<uint64_t>>& usage, const char* who) {
  if (usage.empty()) return;
  bool ok = usage.size() == static_cast<size_t>(model.n_layers);
  for (const auto& row : usage) ok = ok && row.size() == static_cast<size_t>(model.n_experts);
  if (!ok)
    fail("{}: usage counts must be [{} layers][{} experts] for {}", who, model.n_layers, model.n_experts, model.file);
}

std::vector<ExpertId> fill_order(const ModelIdentity& model, const std::vector<std::vector<uint64_t>>& usage) {
  check_identity(model);
  check_usage_shape(model, usage, "fill_order");
  std::vector<ExpertId> order = round_robin(model);
  if (!usage.empty()) {
    std::stable_sort(order.begin(), order.end(), [&](ExpertId a, ExpertId b) {
      return usage[static_cast<size_t>(a.layer)][static_cast<size_t>(a.expert)] >
             usage[static_cast<size_t>(b.layer)][static_cast<size_t>(b.expert)];
    });
  }
  return order;
}

void fill_dram_then_nvme(PlacementPlan& p, const std::vector<ExpertId>& order, uint64_t budget_bytes,
                         uint64_t dram_non_expert_bytes, uint64_t min_cache_experts) {
  const ModelIdentity& model = p.model;
  const uint64_t ne = dram_non_expert_bytes;
  if (ne > budget_bytes)
    fail("plan for {}: DRAM budget {} bytes is smaller than the non-expert weights ({} bytes)", model.file,
         budget_bytes, ne);
  const uint64_t avail = budget_bytes - ne;
  uint64_t total = 0;
  for (ExpertId id : order) total += model.expert_bytes[static_cast<size_t>(id.layer)];
  if (total <= avail) return;  // everything resident, no cache

  const uint64_t slot = planned_slot_bytes(model);
  if (avail < slot)
    fail("plan for {}: DRAM budget {} bytes leaves {} bytes after the non-expert weights, less than one streamed "
         "expert needs ({} bytes)",
         model.file, budget_bytes, avail, slot);
  const uint64_t reserve = std::min(avail, std::max<uint64_t>(min_cache_experts, 1) * slot);
  uint64_t room = avail - reserve;
  for (ExpertId id : order) {
    const uint64_t b = model.expert_bytes[static_cast<size_t>(id.layer)];
    Tier& t = p.experts[static_cast<size_t>(id.layer)][static_cast<size_t>(id.expert)];
    if (b <= room) {
      room -= b;
    } else {
      t = Tier::nvme();
    }
  }
  p.cache_bytes = reserve + room;
}

PlacementPlan plan_from_ram_budget(const ModelIdentity& model, uint64_t budget_bytes, uint64_t non_expert_bytes,
                                   const std::vector<std::vector<uint64_t>>& usage, RamBudgetOptions opts) {
  check_identity(model);
  if (opts.non_expert.kind == Tier::Kind::Nvme) fail("plan_from_ram_budget: non-expert weights cannot live on nvme");
  check_usage_shape(model, usage, "plan_from_ram_budget");
  PlacementPlan p = empty_plan(model, Tier::dram());
  p.non_expert = opts.non_expert;
  p.cache_policy = opts.policy;
  // Non-expert weights count against the DRAM budget only when they live in DRAM.
  const uint64_t ne = opts.non_expert.kind == Tier::Kind::Dram ? non_expert_bytes : 0;
  fill_dram_then_nvme(p, fill_order(model, usage), budget_bytes, ne, opts.min_cache_experts);
  return p;
}

PlacementPlan plan_experts_on_nvme(const ModelIdentity& model, double fraction, uint64_t cache_bytes,
                                   PolicyKind policy, uint64_t min_cache_experts) {
  check_identity(model);
  if (!(fraction >= 0.0 && fraction <= 1.0))
    fail("plan_experts_on_nvme: fraction {} outside [0, 1]", fraction);
  PlacementPlan p = empty_plan(model, Tier::dram());
  p.cache_policy = policy;
  const std::vector<ExpertId> order = round_robin(model);
  const auto k = static_cast<size_t>(std::llround(fraction * static_cast<double>(order.size())));
  uint64_t streamed = 0, max_bytes = 0;
  for (size_t i = order.size() - k; i < order.size(); ++i) {
    const ExpertId id = order[i];
    p.experts[static_cast<size_t>(id.layer)][static_cast<size_t>(id.expert)] = Tier::nvme();
    const uint64_t b = model.expert_bytes[static_cast<size_t>(id.layer)];
    streamed += b;
    max_bytes = std::max(max_bytes, b);
  }
  if (k > 0 && cache_bytes == 0)
    cache_bytes = std::max(slot_bytes_for(max_bytes),
                           std::min(std::max<uint64_t>(min_cache_experts, 1) * slot_bytes_for(max_bytes),
                                    streamed + k * 2 * kRangesPerExpert * kIoAlignment));
  p.cache_bytes = cache_bytes;
  p.validate();
  return p;
}

}  // namespace moetier::offload
