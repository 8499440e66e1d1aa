// One candidate of `moetier plan` (see plan_eval.hpp).
#include "runtime/cli/plan_eval.hpp"

#include <algorithm>
#include <set>

#include "offload/cache_sim.hpp"
#include "offload/eviction_policy.hpp"
#include "offload/slot_layout.hpp"
#include "runtime/models/size_breakdown.hpp"

namespace moetier::cli {
namespace {

/// GB/s the prediction assumes for a CUDA device's memory without --vram-gbps (an RTX 4090's GDDR6X is
/// ~1008 GB/s; an H100's HBM3 ~3350 GB/s): a stated round figure, not a measurement.
constexpr double kAssumedGpuGbps = 1000.0;

/// Hit rate of the streamed experts' requests of `trace` replayed through `n_slots` slots of `policy`.
double replay_hit_rate(const offload::RoutingTrace& trace, const offload::PlacementPlan& p, size_t n_slots) {
  std::vector<offload::ExpertRequest> streamed;
  for (const offload::ExpertRequest& r : trace.decode_order())
    if (r.id.layer >= 0 && static_cast<size_t>(r.id.layer) < p.model.expert_bytes.size() &&
        p.tier(r.id).kind == offload::Tier::Kind::Nvme)
      streamed.push_back(r);
  if (streamed.empty()) return 1.0;
  if (n_slots == 0) return 0.0;
  auto policy = offload::make_policy(p.cache_policy);
  return offload::simulate(streamed, n_slots, *policy).hit_rate();
}

}  // namespace

PlanEval evaluate_plan(const PlanContext& c, const TierOptions& t, const tuning::MachineProfile& m, bool real_cache) {
  const models::Model& model = *c.model;
  const auto& hp = model.hparams();
  const int64_t P = std::max(1, c.shape.parallel);
  PlanEval e;
  e.pr = build_plan(model, t, RunShape{c.n_ctx * P, std::max(std::min(c.n_batch, c.n_ctx), P), c.metadata_bytes});
  const offload::PlacementPlan& p = e.pr.plan;
  const std::vector<offload::Tier> devs = p.used_devices();
  const bool streams = !p.experts_on(offload::Tier::Kind::Nvme).empty();
  e.slot_bytes = streams ? offload::planned_slot_bytes(p.model) : 0;
  if (devs.empty() && real_cache && streams) {
    // The cache `run` would make; plans with device tiers are not taken by TieredExperts yet.
    tiered::TieredOptions to;
    to.reader.queue_depth = t.io_queue_depth;
    tiered::TieredExperts tiers(model, p, to);
    e.slot_bytes = tiers.cache() ? tiers.cache()->slot_bytes() : 0;
  }
  e.mem = e.pr.parts;
  tiered::add_plan_parts(e.mem, p, e.slot_bytes);
  e.n_nvme_experts = p.experts_on(offload::Tier::Kind::Nvme).size();
  const double slots = static_cast<double>(e.mem.n_cache_slots);
  e.has_dev = e.pr.device.enabled || !devs.empty();
  e.dev = devs.empty() ? e.pr.device.tier() : devs[0];
  e.dev_is_sim = e.dev.kind == offload::Tier::Kind::Sim;

  // Routed-expert reads per token from each tier (before the cache): routing from the trace or uniform.
  std::vector<std::vector<uint64_t>> usage;
  if (c.trace) usage = c.trace->usage_counts(static_cast<int32_t>(hp.n_layer), static_cast<int32_t>(hp.n_expert));
  double dev_expert = 0, dram_expert = 0, nvme_expert = 0;
  for (int il = 0; il < hp.n_layer; ++il) {
    if (!hp.is_moe_layer(il)) continue;
    const double eb = static_cast<double>(p.model.expert_bytes[il]);
    double total = 0;
    for (int x = 0; x < hp.n_expert; ++x) total += usage.empty() ? 1.0 : static_cast<double>(usage[il][x]);
    for (int x = 0; x < hp.n_expert; ++x) {
      const double share = total > 0 ? (usage.empty() ? 1.0 : static_cast<double>(usage[il][x])) / total : 0.0;
      const double bytes = share * static_cast<double>(hp.n_expert_used) * eb;
      const offload::Tier tier = p.tier({il, x});
      (tier.is_device() ? dev_expert : tier.kind == offload::Tier::Kind::Nvme ? nvme_expert : dram_expert) += bytes;
    }
  }
  const double n_nvme = static_cast<double>(e.n_nvme_experts);
  e.hit_rate = n_nvme > 0 ? std::min(1.0, slots / n_nvme) : 1.0;
  if (c.trace && n_nvme > 0) {
    e.hit_rate = replay_hit_rate(*c.trace, p, e.mem.n_cache_slots);
    e.hit_rate_from_trace = true;
  }

  // The device tier: its FFNs (when it takes the non-expert weights) and its experts at its rate.
  const auto sizes = models::compute_size_breakdown(*c.tensors);
  const double non_expert_per_token = static_cast<double>(sizes.decode_bytes_per_token(0));
  e.ne_on_dev = p.non_expert.is_device();
  const double dev_ffn = e.ne_on_dev ? std::min(static_cast<double>(e.pr.device_non_expert_bytes), non_expert_per_token) : 0.0;
  e.dev_bytes = dev_ffn + dev_expert;
  const double dram_gbps = m.dram_gbps(c.shape.threads);
  e.dev_gbps = c.vram_gbps > 0 ? c.vram_gbps : e.dev_is_sim ? dram_gbps : kAssumedGpuGbps;

  tuning::ModelWork& w = e.work;
  tuning::fill_weight_mix(*c.tensors, hp.n_expert, w);
  if (dev_ffn > 0 && w.non_expert.bytes() > 0)  // the FFNs the device computes leave the CPU's mix
    w.non_expert = w.non_expert.scaled(std::max(0.0, 1.0 - dev_ffn / w.non_expert.bytes()));
  w.n_layer = hp.n_layer;
  w.n_expert_used = hp.n_expert_used;
  const double routed = dev_expert + dram_expert + nvme_expert;
  w.dram_share = routed > 0 ? dram_expert / routed : 1.0;
  w.nvme_share = routed > 0 ? nvme_expert / routed : 0.0;
  w.hit_rate = e.hit_rate;
  w.expert_read_bytes = p.model.expert_bytes.empty() ? 0 : *std::max_element(p.model.expert_bytes.begin(), p.model.expert_bytes.end());
  w.kv_bytes_per_position = e.pr.kv_cache_bytes > 0 ? static_cast<double>(e.pr.kv_cache_bytes) / static_cast<double>(c.n_ctx * P) : 0.0;
  w.device_seconds_per_token = e.dev_bytes > 0 ? e.dev_bytes / (e.dev_gbps * 1e9) : 0.0;
  // Per-token overheads' shapes: attention as the forward calls cpu::attention (MLA: the compressed cache).
  const double nh = static_cast<double>(hp.n_head);
  w.attn_elements = hp.kv_lora_rank > 0 ? nh * static_cast<double>(2 * hp.kv_lora_rank + hp.qk_rope_dim)
                                        : nh * static_cast<double>(hp.head_dim_k + hp.head_dim_v);
  w.router_elements = static_cast<double>(hp.n_expert) * static_cast<double>(hp.n_embd);
  w.norm_elements = static_cast<double>(hp.n_embd);
  w.n_norms = 2 * hp.n_layer + 1;
  e.pred = tuning::predict(w, m, c.shape);
  return e;
}

}  // namespace moetier::cli
