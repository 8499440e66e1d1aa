// `moetier plan -m MODEL (--ram-budget SIZE | --vram-budget SIZE | --sim-device CAP[,RATE] |
// --experts-on-nvme all|FRACTION | --plan FILE) [--trace FILE] [-o PLAN]`: memory-budget tuning. Builds
// the placement plan `run` would use (non-expert weights, the KV cache for -c positions and experts over
// the device, DRAM and NVMe), prints where each byte goes (tier, what, bytes) and a predicted decode speed
// from a simple model: per token, the bytes read from each tier divided by that tier's rate, summed (the
// tiers are read one after another, no overlap):
//   - device (gpu:N): the non-expert FFNs (shared experts, dense layers) when the plan puts the non-expert
//     weights there (attention stays on the CPU until a device backend computes it) and the routed experts
//     homed there, at
//     --vram-gbps (default kAssumedGpuGbps, a stated GDDR6X/HBM rate); sim:N computes with the CPU
//     kernels on host memory, so its rate is the DRAM bandwidth;
//   - DRAM: the other non-expert weights (all of them without a device), the DRAM-homed experts and the
//     streamed experts' cache hits, at the DRAM read bandwidth (measured now, or --dram-gbps);
//   - NVMe: the streamed experts' cache misses at --nvme-gbps;
// where routing is taken from the trace (or uniform over experts), the cache hit rate from the share of
// streamed experts the cache holds, and the KV cache's reads are not counted. Host->device copies happen
// once at load (printed apart). The prediction is a bound for planning, not a measurement. The DRAM budget
// is the whole process: the memory table shows what the KV cache, scratch for a prompt of
// -b tokens, the I/O state, metadata + tokenizer and the fixed overhead take before the weights are placed;
// the host keeps every non-expert weight and the KV cache whatever the device holds.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <limits>
#include <memory>

#include "common/error.hpp"
#include "common/file_io.hpp"
#include "offload/routing_trace.hpp"
#include "offload/slot_layout.hpp"
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

/// GB/s the prediction assumes for a CUDA device's memory without --vram-gbps (an RTX 4090's GDDR6X is
/// ~1008 GB/s; an H100's HBM3 ~3350 GB/s): a stated round figure, not a measurement.
constexpr double kAssumedGpuGbps = 1000.0;
/// GB/s the load-time copy to a CUDA device assumes (PCIe 4.0 x16).
constexpr double kAssumedGpuH2dGbps = 24.0;

struct PlanArgs {
  std::string model, out;
  TierOptions tiers;
  double dram_gbps = 0;  // 0: measure
  double nvme_gbps = 1.5;
  double vram_gbps = 0;  // 0: kAssumedGpuGbps for gpu:N, the DRAM bandwidth for sim:N
  int64_t ctx = 0;     // -c (0: min(4096, training context), as run)
  int64_t batch = 512;  // -b: tokens of the largest prompt (capped at the context)
  bool json = false;
};

/// One row of the placement table.
struct PlacedBytes {
  std::string tier, what;
  uint64_t bytes = 0;
};

void plan(PlanArgs& a) {
  if (!a.tiers.any())
    fail("plan: give --ram-budget SIZE, --vram-budget SIZE, --sim-device CAPACITY or --experts-on-nvme all|FRACTION "
         "(or --plan FILE to evaluate one)");
  if (a.ctx < 0) fail("-c {} (expected >= 0; 0: min(4096, training context))", a.ctx);
  if (a.batch < 1) fail("-b {} (expected >= 1)", a.batch);
  const uint64_t rss_before_model = tiered::current_rss_bytes();
  auto g = gguf::GgufModel::open(a.model);
  auto model = models::load_model(g);
  const auto tok = tokenizer::Tokenizer::from_gguf(g);  // held as `run` holds it: measured below
  const uint64_t metadata_bytes = std::max(tiered::current_rss_bytes(), rss_before_model) - rss_before_model;
  const auto& hp = model->hparams();
  const int64_t n_ctx = a.ctx > 0 ? a.ctx : std::min<int64_t>(4096, hp.n_ctx_train);
  const PlannedRun pr = build_plan(*model, a.tiers, RunShape{n_ctx, std::min(a.batch, n_ctx), metadata_bytes});
  const offload::PlacementPlan& p = pr.plan;
  const std::string save = a.out.empty() ? a.tiers.save_plan : a.out;
  if (!save.empty()) offload::write_placement_plan(save, p);
  // The cache `run` would make; plans with device tiers are not taken by TieredExperts yet, so their slots
  // are counted at planned_slot_bytes (an upper bound of the slot size: at most one slot too few).
  std::unique_ptr<tiered::TieredExperts> tiers;
  const std::vector<offload::Tier> devs = p.used_devices();
  const bool streams = !p.experts_on(offload::Tier::Kind::Nvme).empty();
  uint64_t slot_bytes = streams ? offload::planned_slot_bytes(p.model) : 0;
  if (devs.empty()) {
    tiered::TieredOptions to;
    to.reader.queue_depth = a.tiers.io_queue_depth;
    tiers = std::make_unique<tiered::TieredExperts>(*model, p, to);
    slot_bytes = tiers->cache() ? tiers->cache()->slot_bytes() : 0;
  }
  tiered::MemoryParts mem = pr.parts;
  tiered::add_plan_parts(mem, p, slot_bytes);
  const uint64_t budget = pr.ram_budget_bytes;
  const size_t n_nvme_experts = p.experts_on(offload::Tier::Kind::Nvme).size();
  const double slots = static_cast<double>(mem.n_cache_slots);
  const auto sizes = models::compute_size_breakdown(g.tensors());
  if (a.tiers.verbose) {
    std::fprintf(stderr, "moetier: plan in force (%s):\n%s", a.tiers.plan.empty() ? "built from options" : a.tiers.plan.c_str(),
                 offload::plan_to_json(p).c_str());
    std::fprintf(stderr, "\nmoetier: memory:\n%s", tiered::memory_table(mem, budget).c_str());
  }

  // The device: the one the plan uses (one for now), else the one the options asked for.
  const bool has_dev = pr.device.enabled || !devs.empty();
  const offload::Tier dev = devs.empty() ? pr.device.tier() : devs[0];
  const bool dev_is_sim = dev.kind == offload::Tier::Kind::Sim;
  const uint64_t vram_budget = p.device_budget(dev) ? p.device_budget(dev)->bytes : pr.device.vram_budget_bytes;

  // Expected routed-expert bytes per token from each tier (before the cache).
  std::vector<std::vector<uint64_t>> usage;
  if (!a.tiers.trace.empty())
    usage = offload::read_any_trace(a.tiers.trace).usage_counts(static_cast<int32_t>(hp.n_layer), static_cast<int32_t>(hp.n_expert));
  double dev_expert_bytes = 0, dram_expert_bytes = 0, nvme_expert_bytes = 0;
  for (int il = 0; il < hp.n_layer; ++il) {
    if (!hp.is_moe_layer(il)) continue;
    const double eb = static_cast<double>(p.model.expert_bytes[il]);
    double total = 0;
    for (int e = 0; e < hp.n_expert; ++e) total += usage.empty() ? 1.0 : static_cast<double>(usage[il][e]);
    for (int e = 0; e < hp.n_expert; ++e) {
      const double share = total > 0 ? (usage.empty() ? 1.0 : static_cast<double>(usage[il][e])) / total : 0.0;
      const double bytes = share * static_cast<double>(hp.n_expert_used) * eb;
      const offload::Tier t = p.tier({il, e});
      (t.is_device() ? dev_expert_bytes : t.kind == offload::Tier::Kind::Nvme ? nvme_expert_bytes : dram_expert_bytes) += bytes;
    }
  }
  const double n_nvme = static_cast<double>(n_nvme_experts);
  const double hit_rate = n_nvme > 0 ? std::min(1.0, slots / n_nvme) : 1.0;
  const double non_expert_per_token = static_cast<double>(sizes.decode_bytes_per_token(0));
  if (a.dram_gbps <= 0) a.dram_gbps = sched::measure_read_bandwidth_gbps(sched::global_pool(), 512ull << 20, 3);
  const double dev_gbps = a.vram_gbps > 0 ? a.vram_gbps : dev_is_sim ? a.dram_gbps : kAssumedGpuGbps;
  const std::string dev_rate_why = a.vram_gbps > 0 ? "--vram-gbps"
                                   : dev_is_sim    ? "the DRAM bandwidth: the simulated device computes on the CPU"
                                                   : "assumed device memory rate; --vram-gbps sets it";
  // A device that takes the non-expert weights computes their FFNs (shared experts, dense layers): a token
  // reads those bytes there; attention, norms and embeddings stay on the CPU (no device backend computes
  // attention yet), read from DRAM.
  const bool ne_on_dev = p.non_expert.is_device();
  const double dev_ffn_per_token = ne_on_dev ? std::min(static_cast<double>(pr.device_non_expert_bytes), non_expert_per_token) : 0.0;
  const double dev_bytes = dev_ffn_per_token + dev_expert_bytes;
  const double dram_bytes = (non_expert_per_token - dev_ffn_per_token) + dram_expert_bytes + nvme_expert_bytes * hit_rate;
  const double disk_bytes = nvme_expert_bytes * (1.0 - hit_rate);
  const double seconds =
      (dev_bytes > 0 ? dev_bytes / (dev_gbps * 1e9) : 0.0) + dram_bytes / (a.dram_gbps * 1e9) + disk_bytes / (a.nvme_gbps * 1e9);
  const double tps = seconds > 0 ? 1.0 / seconds : 0.0;

  // Where each byte goes.
  std::vector<PlacedBytes> rows;
  uint64_t dev_total = 0;
  if (has_dev) {
    const std::string t = offload::to_string(dev);
    if (ne_on_dev) rows.push_back({t, "non-expert FFNs (shared experts, dense)", pr.device_non_expert_bytes});
    if (pr.device_kv_cache_bytes > 0 && p.kv_cache.is_device())
      rows.push_back({t, fmt::format("KV cache (n_ctx {})", n_ctx), pr.device_kv_cache_bytes});
    rows.push_back({t, fmt::format("experts ({})", p.experts_on(dev).size()), p.bytes_on(dev)});
    for (const PlacedBytes& r : rows) dev_total += r.bytes;
    rows.push_back({t, vram_budget > 0 ? fmt::format("total, of a VRAM budget of {}", models::format_bytes(vram_budget))
                                       : std::string("total (the plan gives no VRAM budget)"),
                    dev_total});
  }
  // The host keeps every non-expert weight and the KV cache (attention runs on the CPU).
  rows.push_back({"dram", "non-expert weights", mem.non_expert});
  rows.push_back({"dram", fmt::format("KV cache (n_ctx {})", n_ctx), mem.kv_cache});
  rows.push_back({"dram", fmt::format("experts ({})", mem.n_resident_experts), mem.resident_experts});
  rows.push_back({"dram", fmt::format("expert cache ({} slots)", mem.n_cache_slots), mem.expert_cache});
  rows.push_back({"dram", "scratch, I/O, metadata, overhead", mem.scratch + mem.io + mem.metadata + mem.fixed});
  rows.push_back({"dram", budget > 0 ? fmt::format("total, of --ram-budget {}", models::format_bytes(budget))
                                     : std::string("total (no --ram-budget)"),
                  mem.total()});
  rows.push_back({"nvme", fmt::format("experts ({}, streamed)", n_nvme_experts), p.bytes_on(offload::Tier::Kind::Nvme)});
  // Host->device copies at load (not per token): what the device holds.
  const double h2d_gbps = dev_is_sim ? pr.device.h2d_gbps : kAssumedGpuH2dGbps;
  const double h2d_seconds = h2d_gbps > 0 ? static_cast<double>(dev_total) / (h2d_gbps * 1e9) : 0.0;

  if (a.json) {
    nlohmann::json j;
    j["schema"] = "moetier.plan-summary/1";
    j["non_expert_bytes"] = pr.non_expert_bytes;
    j["dram_expert_bytes"] = p.bytes_on(offload::Tier::Kind::Dram);
    j["nvme_expert_bytes"] = p.bytes_on(offload::Tier::Kind::Nvme);
    j["cache_bytes"] = p.cache_bytes;
    j["experts_dram"] = p.experts_on(offload::Tier::Kind::Dram).size();
    j["experts_nvme"] = n_nvme_experts;
    j["memory"] = {{"budget_bytes", budget},           {"total_bytes", mem.total()},
                   {"non_expert_bytes", mem.non_expert}, {"resident_expert_bytes", mem.resident_experts},
                   {"expert_cache_bytes", mem.expert_cache}, {"kv_cache_bytes", mem.kv_cache},
                   {"n_ctx", mem.n_ctx},                {"scratch_bytes", mem.scratch},
                   {"n_batch", mem.n_batch},            {"io_bytes", mem.io},
                   {"metadata_bytes", mem.metadata},    {"fixed_overhead_bytes", mem.fixed}};
    if (has_dev)
      j["device"] = {{"tier", offload::to_string(dev)},      {"vram_budget_bytes", vram_budget},
                     {"used_bytes", dev_total},              {"non_expert", ne_on_dev},
                     {"non_expert_bytes", ne_on_dev ? pr.device_non_expert_bytes : 0},
                     {"kv_cache", pr.device_kv_cache_bytes > 0 && p.kv_cache.is_device()},
                     {"kv_cache_bytes", pr.device_kv_cache_bytes},
                     {"experts", p.experts_on(dev).size()},  {"expert_bytes", p.bytes_on(dev)},
                     {"h2d_gbps", h2d_gbps},                 {"h2d_seconds", h2d_seconds}};
    j["placement"] = nlohmann::json::array();
    for (const PlacedBytes& r : rows) j["placement"].push_back({{"tier", r.tier}, {"what", r.what}, {"bytes", r.bytes}});
    j["notes"] = pr.notes;
    j["predicted"] = {{"device_bytes_per_token", dev_bytes}, {"dram_bytes_per_token", dram_bytes},
                      {"nvme_bytes_per_token", disk_bytes}, {"cache_hit_rate", hit_rate},
                      {"device_gbps", has_dev ? dev_gbps : 0.0}, {"dram_gbps", a.dram_gbps},
                      {"nvme_gbps", a.nvme_gbps}, {"decode_tokens_per_s", tps}};
    std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return;
  }
  std::printf("model:            %s (%s, %lld layers, %lld experts, top-%lld)\n", a.model.c_str(), hp.arch_str.c_str(),
              static_cast<long long>(hp.n_layer), static_cast<long long>(hp.n_expert), static_cast<long long>(hp.n_expert_used));
  if (has_dev)
    std::printf("device:           %s (%s), VRAM budget %s\n", offload::to_string(dev).c_str(),
                dev_is_sim ? "simulated: computes with the CPU kernels" : "CUDA",
                vram_budget > 0 ? models::format_bytes(vram_budget).c_str() : "not given");
  std::printf("non-expert:       %s (DRAM%s)\n", models::format_bytes(pr.non_expert_bytes).c_str(),
              ne_on_dev ? fmt::format("; its FFNs, {}, also on {}", models::format_bytes(pr.device_non_expert_bytes),
                                      offload::to_string(p.non_expert)).c_str()
                        : "");
  if (has_dev)
    std::printf("%-18s%zu (%s)\n", fmt::format("experts on {}:", offload::to_string(dev)).c_str(), p.experts_on(dev).size(),
                models::format_bytes(p.bytes_on(dev)).c_str());
  std::printf("experts in DRAM:  %zu (%s)\n", p.experts_on(offload::Tier::Kind::Dram).size(),
              models::format_bytes(p.bytes_on(offload::Tier::Kind::Dram)).c_str());
  std::printf("experts on NVMe:  %zu (%s), cache %s (%.0f slots, %s)\n", n_nvme_experts,
              models::format_bytes(p.bytes_on(offload::Tier::Kind::Nvme)).c_str(),
              models::format_bytes(p.cache_bytes).c_str(), slots, std::string(offload::policy_name(p.cache_policy)).c_str());
  for (const std::string& note : pr.notes) std::printf("note: %s\n", note.c_str());
  std::printf("where each byte goes:\n  %-6s %-40s %16s\n", "tier", "what", "bytes");
  for (const PlacedBytes& r : rows)
    std::printf("  %-6s %-40s %16llu %10s\n", r.tier.c_str(), r.what.c_str(), static_cast<unsigned long long>(r.bytes),
                models::format_bytes(r.bytes).c_str());
  std::printf("memory:\n%s", tiered::memory_table(mem, budget).c_str());
  if (has_dev)
    std::printf("copy to %s at load: %s at %s\n", offload::to_string(dev).c_str(), models::format_bytes(dev_total).c_str(),
                h2d_gbps > 0 ? fmt::format("{:.1f} GB/s (~{:.2f} s{})", h2d_gbps, h2d_seconds,
                                           dev_is_sim ? "" : ", assumed PCIe 4.0 x16").c_str()
                             : "no pacing (--sim-device RATE 0)");
  std::printf("per decode token: %s%s from DRAM at %.1f GB/s, %s from NVMe at %.2f GB/s (cache hit rate ~%.0f%%%s)\n",
              has_dev ? fmt::format("{} from {} at {:.1f} GB/s ({}), ", models::format_bytes(static_cast<uint64_t>(dev_bytes)),
                                    offload::to_string(dev), dev_gbps, dev_rate_why).c_str()
                      : "",
              models::format_bytes(static_cast<uint64_t>(dram_bytes)).c_str(), a.dram_gbps,
              models::format_bytes(static_cast<uint64_t>(disk_bytes)).c_str(), a.nvme_gbps, 100 * hit_rate,
              usage.empty() ? ", uniform routing" : ", routing from trace");
  std::printf("predicted decode: %.2f tokens/s (bandwidth bound: per token, the bytes of each tier / its rate, summed; "
              "KV-cache reads not counted)\n", tps);
  if (!save.empty()) std::printf("plan written to %s\n", save.c_str());
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
  sub->add_option("--vram-gbps", a->vram_gbps,
                  "Device memory bandwidth for the prediction (GB/s; 0: 1000 assumed for gpu:N, the DRAM bandwidth "
                  "for sim:N)")
      ->check(in_range<double>(0, 1e6, "0: 1000 for gpu:N, the DRAM bandwidth for sim:N"));
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
