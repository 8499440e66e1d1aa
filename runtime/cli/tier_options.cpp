#include "runtime/cli/tier_options.hpp"

#include <CLI/CLI.hpp>

#include <cctype>
#include <cmath>
#include <cstdio>

#include "common/error.hpp"
#include "offload/routing_trace.hpp"
#include "runtime/models/size_breakdown.hpp"
#include "scheduler/thread_pool.hpp"

namespace moetier::cli {

void add_tier_options(CLI::App& sub, TierOptions& o) {
  auto* plan = sub.add_option("--plan", o.plan, "Placement plan JSON (moetier.placement/1): each expert's tier");
  auto* budget = sub.add_option("--ram-budget", o.ram_budget,
                                "DRAM budget, e.g. 8GiB: non-expert weights, then the most-routed experts, then a cache");
  auto* nvme = sub.add_option("--experts-on-nvme", o.experts_on_nvme, "Stream 'all' experts or a FRACTION of them from disk");
  plan->excludes(budget)->excludes(nvme);
  budget->excludes(nvme);
  sub.add_option("--cache-size", o.cache_size, "DRAM cache for streamed experts with --experts-on-nvme (default 16 experts)");
  sub.add_option("--cache-policy", o.cache_policy, "Eviction policy: lru, lfu, freq_decay");
  sub.add_option("--trace", o.trace, "Routing trace (JSONL) whose expert counts order --ram-budget's resident experts");
  sub.add_option("--save-plan", o.save_plan, "Write the plan in force to FILE");
  sub.add_option("--io-queue-depth", o.io_queue_depth, "Reads in flight for streamed experts");
  sub.add_flag("--no-prefetch", o.no_prefetch, "Do not predict and prefetch the next layer's experts");
  sub.add_flag("-v,--verbose", o.verbose, "Print the plan in force and per-layer cache statistics");
}

uint64_t parse_bytes(const std::string& text, const std::string& what) {
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(text, &pos);
  } catch (...) {
    fail("{} \"{}\": expected a size such as 8GiB, 512MiB or 4096", what, text);
  }
  std::string unit;
  for (size_t i = pos; i < text.size(); ++i)
    if (!std::isspace(static_cast<unsigned char>(text[i]))) unit += static_cast<char>(std::tolower(static_cast<unsigned char>(text[i])));
  double mul = 0;
  if (unit.empty() || unit == "b") mul = 1;
  else if (unit == "kib" || unit == "k") mul = 1024.0;
  else if (unit == "mib" || unit == "m") mul = 1024.0 * 1024;
  else if (unit == "gib" || unit == "g") mul = 1024.0 * 1024 * 1024;
  else if (unit == "tib" || unit == "t") mul = 1024.0 * 1024 * 1024 * 1024;
  else if (unit == "kb") mul = 1e3;
  else if (unit == "mb") mul = 1e6;
  else if (unit == "gb") mul = 1e9;
  else if (unit == "tb") mul = 1e12;
  if (mul == 0 || !(v >= 0) || v * mul > 1.8e19) fail("{} \"{}\": expected a size such as 8GiB, 512MiB or 4096", what, text);
  return static_cast<uint64_t>(std::llround(v * mul));
}

std::unique_ptr<tiered::TieredExperts> setup_tiers(models::Model& model, const TierOptions& o, const RunShape& shape,
                                                  tiered::MemoryParts* parts_out) {
  const offload::ModelIdentity id = tiered::model_identity(model);
  tiered::MemoryParts parts = tiered::process_parts(model, shape.n_ctx, shape.n_batch, sched::global_pool().size(),
                                                    o.io_queue_depth, shape.metadata_bytes);
  if (!o.any()) {
    tiered::add_all_resident(parts, id);
    if (o.verbose) std::fprintf(stderr, "moetier: memory:\n%s", tiered::memory_table(parts, 0).c_str());
    if (parts_out) *parts_out = parts;
    return nullptr;
  }
  if (model.hparams().n_expert == 0) fail("{}: the model has no routed experts to place", model.gguf().path());
  offload::PolicyKind policy = offload::PolicyKind::Lru;
  if (!o.cache_policy.empty()) policy = offload::parse_policy(o.cache_policy);
  offload::PlacementPlan plan;
  uint64_t budget = 0;
  if (!o.plan.empty()) {
    plan = offload::read_placement_plan(o.plan);
    if (!o.cache_policy.empty()) plan.cache_policy = policy;
  } else if (!o.ram_budget.empty()) {
    budget = parse_bytes(o.ram_budget, "--ram-budget");
    // The budget is the process: KV cache, scratch, I/O state, metadata and fixed overhead first.
    const uint64_t weights = tiered::weights_budget(model.gguf().path(), budget, parts, id);
    std::vector<std::vector<uint64_t>> usage;
    if (!o.trace.empty()) usage = offload::read_any_trace(o.trace).usage_counts(id.n_layers, id.n_experts);
    offload::RamBudgetOptions ro;
    ro.policy = policy;
    plan = offload::plan_from_ram_budget(id, weights, parts.non_expert, usage, ro);
  } else {
    double fraction = 1.0;
    if (o.experts_on_nvme != "all") {
      try {
        size_t pos = 0;
        fraction = std::stod(o.experts_on_nvme, &pos);
        if (pos != o.experts_on_nvme.size()) throw 0;
      } catch (...) {
        fail("--experts-on-nvme \"{}\": expected all or a fraction between 0 and 1", o.experts_on_nvme);
      }
    }
    const uint64_t cache = o.cache_size.empty() ? 0 : parse_bytes(o.cache_size, "--cache-size");
    plan = offload::plan_experts_on_nvme(id, fraction, cache, policy);
  }
  if (!o.save_plan.empty()) offload::write_placement_plan(o.save_plan, plan);
  tiered::TieredOptions to;
  to.reader.queue_depth = o.io_queue_depth;
  auto tiers = std::make_unique<tiered::TieredExperts>(model, plan, to);
  tiers->set_prefetch(!o.no_prefetch);
  tiered::add_plan_parts(parts, plan, tiers->cache() ? tiers->cache()->slot_bytes() : 0);
  if (o.verbose) {
    std::fprintf(stderr, "moetier: plan in force (%s):\n%s", o.plan.empty() ? "built from options" : o.plan.c_str(),
                 offload::plan_to_json(plan).c_str());
    std::fprintf(stderr, "\nmoetier: memory:\n%s", tiered::memory_table(parts, budget).c_str());
  }
  if (parts_out) *parts_out = parts;
  model.set_expert_provider(tiers.get());
  return tiers;
}

}  // namespace moetier::cli
