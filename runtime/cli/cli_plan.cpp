// `moetier plan -m MODEL (--ram-budget SIZE [--trace FILE] | --experts-on-nvme all|FRACTION) [-o PLAN]`:
// memory-budget tuning. Builds the placement plan `run` would use, prints where the bytes go and a
// predicted decode speed from a simple model: per token, the weights read from DRAM at the DRAM read
// bandwidth plus the expected streamed-expert misses read from NVMe at the disk bandwidth, where routing
// is taken from the trace (or uniform over experts) and the cache hit rate from the share of streamed
// experts the cache holds. The prediction is a bound for planning, not a measurement. The budget is the
// whole process: the memory table shows what the KV cache for -c positions, scratch for a prompt of -b
// tokens, the I/O state, metadata + tokenizer and the fixed overhead take before the weights are placed.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <limits>
#include <memory>

#include "common/error.hpp"
#include "common/file_io.hpp"
#include "offload/routing_trace.hpp"
#include "runtime/cli/commands.hpp"
#include "runtime/cli/option_checks.hpp"
#include "runtime/cli/tier_options.hpp"
#include "runtime/gguf/gguf_model.hpp"
#include "runtime/models/size_breakdown.hpp"
#include "runtime/tokenizer/tokenizer.hpp"
#include "scheduler/bandwidth.hpp"
#include "scheduler/thread_pool.hpp"

namespace moetier::cli {
namespace {

struct PlanArgs {
  std::string model, out;
  TierOptions tiers;
  double dram_gbps = 0;  // 0: measure
  double nvme_gbps = 1.5;
  int64_t ctx = 0;     // -c (0: min(4096, training context), as run)
  int64_t batch = 512;  // -b: tokens of the largest prompt (capped at the context)
  bool json = false;
};

void plan(PlanArgs& a) {
  if (a.tiers.plan.empty() && a.tiers.ram_budget.empty() && a.tiers.experts_on_nvme.empty())
    fail("plan: give --ram-budget SIZE or --experts-on-nvme all|FRACTION (or --plan FILE to evaluate one)");
  if (a.ctx < 0) fail("-c {} (expected >= 0; 0: min(4096, training context))", a.ctx);
  if (a.batch < 1) fail("-b {} (expected >= 1)", a.batch);
  const uint64_t rss_before_model = tiered::current_rss_bytes();
  auto g = gguf::GgufModel::open(a.model);
  auto model = models::load_model(g);
  const auto tok = tokenizer::Tokenizer::from_gguf(g);  // held as `run` holds it: measured below
  const uint64_t metadata_bytes = std::max(tiered::current_rss_bytes(), rss_before_model) - rss_before_model;
  const auto& hp = model->hparams();
  const int64_t n_ctx = a.ctx > 0 ? a.ctx : std::min<int64_t>(4096, hp.n_ctx_train);
  if (!a.out.empty()) a.tiers.save_plan = a.out;
  tiered::MemoryParts mem;
  auto tiers = setup_tiers(*model, a.tiers, RunShape{n_ctx, std::min(a.batch, n_ctx), metadata_bytes}, &mem);
  const uint64_t budget = a.tiers.ram_budget.empty() ? 0 : parse_bytes(a.tiers.ram_budget, "--ram-budget");
  const offload::PlacementPlan& p = tiers->plan();
  const auto sizes = models::compute_size_breakdown(g.tensors());

  // Expected routed-expert bytes per token from DRAM and from NVMe (before the cache).
  std::vector<std::vector<uint64_t>> usage;
  if (!a.tiers.trace.empty())
    usage = offload::read_any_trace(a.tiers.trace).usage_counts(static_cast<int32_t>(hp.n_layer), static_cast<int32_t>(hp.n_expert));
  double dram_expert_bytes = 0, nvme_expert_bytes = 0;
  for (int il = 0; il < hp.n_layer; ++il) {
    if (!hp.is_moe_layer(il)) continue;
    const double eb = static_cast<double>(p.model.expert_bytes[il]);
    double total = 0;
    for (int e = 0; e < hp.n_expert; ++e) total += usage.empty() ? 1.0 : static_cast<double>(usage[il][e]);
    for (int e = 0; e < hp.n_expert; ++e) {
      const double share = total > 0 ? (usage.empty() ? 1.0 : static_cast<double>(usage[il][e])) / total : 0.0;
      const double bytes = share * static_cast<double>(hp.n_expert_used) * eb;
      (p.tier({il, e}).kind == offload::Tier::Kind::Nvme ? nvme_expert_bytes : dram_expert_bytes) += bytes;
    }
  }
  const double n_nvme = static_cast<double>(tiers->n_streamed());
  const double slots = tiers->cache() ? static_cast<double>(tiers->cache()->n_slots()) : 0.0;
  const double hit_rate = n_nvme > 0 ? std::min(1.0, slots / n_nvme) : 1.0;
  const double non_expert_per_token = static_cast<double>(sizes.decode_bytes_per_token(0));
  if (a.dram_gbps <= 0) a.dram_gbps = sched::measure_read_bandwidth_gbps(sched::global_pool(), 512ull << 20, 3);
  const double dram_bytes = non_expert_per_token + dram_expert_bytes + nvme_expert_bytes * hit_rate;
  const double disk_bytes = nvme_expert_bytes * (1.0 - hit_rate);
  const double seconds = dram_bytes / (a.dram_gbps * 1e9) + disk_bytes / (a.nvme_gbps * 1e9);
  const double tps = seconds > 0 ? 1.0 / seconds : 0.0;

  if (a.json) {
    nlohmann::json j;
    j["schema"] = "moetier.plan-summary/1";
    j["non_expert_bytes"] = tiered::non_expert_bytes(*model);
    j["dram_expert_bytes"] = p.bytes_on(offload::Tier::Kind::Dram);
    j["nvme_expert_bytes"] = p.bytes_on(offload::Tier::Kind::Nvme);
    j["cache_bytes"] = p.cache_bytes;
    j["experts_dram"] = p.experts_on(offload::Tier::Kind::Dram).size();
    j["experts_nvme"] = tiers->n_streamed();
    j["memory"] = {{"budget_bytes", budget},           {"total_bytes", mem.total()},
                   {"non_expert_bytes", mem.non_expert}, {"resident_expert_bytes", mem.resident_experts},
                   {"expert_cache_bytes", mem.expert_cache}, {"kv_cache_bytes", mem.kv_cache},
                   {"n_ctx", mem.n_ctx},                {"scratch_bytes", mem.scratch},
                   {"n_batch", mem.n_batch},            {"io_bytes", mem.io},
                   {"metadata_bytes", mem.metadata},    {"fixed_overhead_bytes", mem.fixed}};
    j["predicted"] = {{"dram_bytes_per_token", dram_bytes}, {"nvme_bytes_per_token", disk_bytes},
                      {"cache_hit_rate", hit_rate}, {"dram_gbps", a.dram_gbps}, {"nvme_gbps", a.nvme_gbps},
                      {"decode_tokens_per_s", tps}};
    std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return;
  }
  std::printf("model:            %s (%s, %lld layers, %lld experts, top-%lld)\n", a.model.c_str(), hp.arch_str.c_str(),
              static_cast<long long>(hp.n_layer), static_cast<long long>(hp.n_expert), static_cast<long long>(hp.n_expert_used));
  std::printf("non-expert:       %s (DRAM)\n", models::format_bytes(tiered::non_expert_bytes(*model)).c_str());
  std::printf("experts in DRAM:  %zu (%s)\n", p.experts_on(offload::Tier::Kind::Dram).size(),
              models::format_bytes(p.bytes_on(offload::Tier::Kind::Dram)).c_str());
  std::printf("experts on NVMe:  %zu (%s), cache %s (%.0f slots, %s)\n", tiers->n_streamed(),
              models::format_bytes(p.bytes_on(offload::Tier::Kind::Nvme)).c_str(),
              models::format_bytes(p.cache_bytes).c_str(), slots, std::string(offload::policy_name(p.cache_policy)).c_str());
  std::printf("memory:\n%s", tiered::memory_table(mem, budget).c_str());
  std::printf("per decode token: %s from DRAM at %.1f GB/s, %s from NVMe at %.2f GB/s (cache hit rate ~%.0f%%%s)\n",
              models::format_bytes(static_cast<uint64_t>(dram_bytes)).c_str(), a.dram_gbps,
              models::format_bytes(static_cast<uint64_t>(disk_bytes)).c_str(), a.nvme_gbps, 100 * hit_rate,
              usage.empty() ? ", uniform routing" : ", routing from trace");
  std::printf("predicted decode: %.2f tokens/s (bandwidth bound)\n", tps);
  if (!a.out.empty()) std::printf("plan written to %s\n", a.out.c_str());
}

}  // namespace

void register_plan(CLI::App& app) {
  auto a = std::make_shared<PlanArgs>();
  CLI::App* sub = app.add_subcommand("plan", "Place experts on tiers for a memory budget and predict decode speed");
  sub->add_option("-m,--model", a->model, "GGUF model file")->required();
  auto* out = sub->add_option("-o,--output", a->out, "Write the plan (JSON, moetier.placement/1)")->check(non_empty());
  sub->add_option("--dram-gbps", a->dram_gbps, "DRAM read bandwidth for the prediction (0: measure now)")
      ->check(in_range<double>(0, 1e6, "0: measure now"));
  sub->add_option("--nvme-gbps", a->nvme_gbps, "Disk read bandwidth for the prediction (GB/s)")->check(in_range<double>(0.001, 1e6));
  sub->add_option("-c,--ctx-size", a->ctx, "Context size the KV cache is sized for (0: min(4096, training context))")
      ->check(in_range(0, std::numeric_limits<int32_t>::max(), "0: min(4096, training context)"));
  sub->add_option("-b,--batch-size", a->batch, "Tokens of the longest prompt the scratch buffers are sized for")
      ->check(in_range(1, std::numeric_limits<int32_t>::max()));
  sub->add_flag("--json", a->json, "Print the summary as JSON");
  add_tier_options(*sub, a->tiers);
  out->excludes("--save-plan");
  sub->callback([a, sub] {
    check_tier_options(a->tiers, [sub](const std::string& name) { return sub->count(name) > 0; }, true);
    // Files before the model is opened: inputs regular files, outputs absent or regular files.
    if (!a->out.empty()) check_output_file(a->out, "placement plan (-o)");
    check_tier_files(a->tiers);
    std::vector<NamedFile> inputs;
    for (const auto& part : model_part_paths(a->model)) inputs.push_back({"-m", part});
    inputs.push_back({"--plan", a->tiers.plan});
    inputs.push_back({"--trace", a->tiers.trace});
    check_distinct_files(inputs, {{"-o", a->out}, {"--save-plan", a->tiers.save_plan}});
    plan(*a);
  });
}

}  // namespace moetier::cli
