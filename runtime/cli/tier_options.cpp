#include "runtime/cli/tier_options.hpp"

#include <CLI/CLI.hpp>

#include <cctype>
#include <cmath>
#include <cstdio>

#include "common/error.hpp"
#include "common/file_io.hpp"
#include "offload/routing_trace.hpp"
#include "runtime/cli/option_checks.hpp"
#include "runtime/models/size_breakdown.hpp"
#include "scheduler/thread_pool.hpp"

namespace moetier::cli {

void add_tier_options(CLI::App& sub, TierOptions& o) {
  auto* plan = sub.add_option("--plan", o.plan, "Placement plan JSON (moetier.placement/1): each expert's tier")
                   ->check(non_empty());
  auto* budget = sub.add_option("--ram-budget", o.ram_budget,
                                "DRAM budget, e.g. 8GiB: non-expert weights, then the most-routed experts, then a cache")
                     ->check(parsed_by("--ram-budget", [](const std::string& v) { (void)parse_bytes(v, "--ram-budget"); }));
  auto* nvme = sub.add_option("--experts-on-nvme", o.experts_on_nvme, "Stream 'all' experts or a FRACTION of them from disk")
                   ->check(parsed_by("--experts-on-nvme", [](const std::string& v) { (void)parse_nvme_fraction(v); }));
  plan->excludes(budget)->excludes(nvme);
  budget->excludes(nvme);
  // The options below need one of the three above (check_tier_options, runtime/cli/option_checks.hpp).
  sub.add_option("--cache-size", o.cache_size,
                 "DRAM cache for streamed experts with --experts-on-nvme: a plain number counts experts (default 16), "
                 "a size with a unit (64MiB, 1.5GB, 4096B) is bytes")
      ->check(parsed_by("--cache-size", [](const std::string& v) { (void)parse_cache_size(v); }));
  sub.add_option("--cache-policy", o.cache_policy, "Eviction policy: lru, lfu, freq_decay")
      ->check(parsed_by("--cache-policy", [](const std::string& v) { (void)offload::parse_policy(v); }));
  sub.add_option("--trace", o.trace, "Routing trace (JSONL) whose expert counts order --ram-budget's resident experts")
      ->check(non_empty());
  sub.add_option("--save-plan", o.save_plan, "Write the plan in force to FILE")->check(non_empty());
  sub.add_option("--io-queue-depth", o.io_queue_depth, "Reads in flight for streamed experts (1..4096)")
      ->check(in_range(1, 4096));
  sub.add_flag("--no-prefetch", o.no_prefetch, "Do not predict and prefetch the next layer's experts");
  sub.add_flag("-v,--verbose", o.verbose, "Print the plan in force and per-layer cache statistics");
}

void check_tier_files(const TierOptions& o) {
  if (!o.save_plan.empty()) check_output_file(o.save_plan, "placement plan (--save-plan)");
  if (!o.plan.empty()) check_input_file(o.plan, "placement plan (--plan)");
  if (!o.trace.empty()) check_input_file(o.trace, "routing trace (--trace)");
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
    const double fraction = parse_nvme_fraction(o.experts_on_nvme);
    const CacheSize cache = o.cache_size.empty() ? CacheSize{} : parse_cache_size(o.cache_size);
    plan = offload::plan_experts_on_nvme(id, fraction, cache.bytes, policy, cache.experts ? cache.experts : 16);
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
  model.set_streamed_experts(tiers.get());
  return tiers;
}

}  // namespace moetier::cli
