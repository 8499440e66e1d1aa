#include "runtime/cli/tier_options.hpp"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>

#include "common/error.hpp"
#include "common/file_io.hpp"
#include "scheduler/backend_registry.hpp"
#include "offload/routing_trace.hpp"
#include "offload/vram_plan.hpp"
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
  auto* vram = sub.add_option("--vram-budget", o.vram_budget,
                              "Device memory per device, e.g. 20GiB: non-expert weights and KV cache, then the "
                              "most-routed experts; the rest as --ram-budget places them (or all in DRAM)")
                   ->check(parsed_by("--vram-budget", [](const std::string& v) { (void)parse_vram_budget(v); }));
  auto* sim = sub.add_option("--sim-device", o.sim_device,
                             "Simulated device sim:0 (computes with the CPU kernels; for CPU-only machines and tests): "
                             "CAPACITY[,RATE], e.g. 8GiB or 8GiB,24GB/s (host->device copy rate; default 24 GB/s, "
                             "0: unpaced); its capacity is the VRAM budget unless --vram-budget is smaller")
                  ->check(parsed_by("--sim-device", [](const std::string& v) { (void)parse_sim_device(v); }));
  auto* slots = sub.add_option("--device-slots", o.device_slots,
                               "Device memory for dynamic expert slots, e.g. 2GiB, taken from the VRAM budget: the most-"
                               "routed DRAM experts are copied there between steps")
                    ->check(parsed_by("--device-slots", [](const std::string& v) { (void)parse_bytes(v, "--device-slots"); }));
  plan->excludes(budget)->excludes(nvme)->excludes(vram)->excludes(slots);
  budget->excludes(nvme);
  nvme->excludes(vram)->excludes(sim);
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
  // Decimal numbers only: std::stod would also read hexadecimal ("0x10"), "inf" and "nan".
  const size_t first = text.find_first_not_of(" \t");
  if (first == std::string::npos || !(std::isdigit(static_cast<unsigned char>(text[first])) || text[first] == '.'))
    fail("{} \"{}\": expected a size such as 8GiB, 512MiB or 4096", what, text);
  if (text.find_first_of("xX") != std::string::npos)
    fail("{} \"{}\": expected a size such as 8GiB, 512MiB or 4096 (decimal)", what, text);
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

uint64_t parse_vram_budget(const std::string& text) {
  const uint64_t b = parse_bytes(text, "--vram-budget");
  if (b == 0) fail("--vram-budget \"{}\": expected a size above 0, such as 20GiB", text);
  return b;
}

SimDeviceArg parse_sim_device(const std::string& text) {
  const auto bad = [&] {
    fail("--sim-device \"{}\": expected CAPACITY[,RATE] such as 8GiB or 8GiB,24GB/s (capacity above 0; rate in "
         "GB/s from {} to 1e6, or 0: unpaced)",
         text, offload::kMinSimH2dGbps);
  };
  const size_t comma = text.find(',');
  SimDeviceArg a;
  a.h2d_gbps = kDefaultSimH2dGbps;
  try {
    a.capacity_bytes = parse_bytes(text.substr(0, comma), "--sim-device");
  } catch (const Error&) {
    bad();
  }
  if (a.capacity_bytes == 0) bad();
  if (comma == std::string::npos) return a;
  const std::string rate = text.substr(comma + 1);
  size_t pos = 0;
  double v = -1;
  try {
    v = std::stod(rate, &pos);
  } catch (...) {
    bad();
  }
  std::string unit;
  for (size_t i = pos; i < rate.size(); ++i)
    if (!std::isspace(static_cast<unsigned char>(rate[i]))) unit += rate[i];
  // Bytes per second: "GB/s" (any case but the B: "Gb/s" would be gigabits).
  const bool unit_ok = unit.empty() || (unit.size() == 4 && (unit[0] == 'G' || unit[0] == 'g') && unit[1] == 'B' &&
                                        unit[2] == '/' && (unit[3] == 's' || unit[3] == 'S'));
  if (!unit_ok || !std::isfinite(v) || v < 0 || (v > 0 && v < offload::kMinSimH2dGbps) || v > 1e6) bad();
  a.h2d_gbps = v;
  return a;
}

offload::DeviceTiers DeviceOptions::tiers() const {
  return offload::DeviceTiers{std::max(sched::gpu_device_count(), 0), sim ? 1 : 0};
}

DeviceOptions device_options(const TierOptions& o) {
  DeviceOptions d;
  if (o.vram_budget.empty() && o.sim_device.empty()) {
    if (!o.device_slots.empty()) fail("--device-slots needs a device: --sim-device SIZE or --vram-budget SIZE");
    return d;
  }
  d.enabled = true;
  if (!o.sim_device.empty()) {
    const SimDeviceArg s = parse_sim_device(o.sim_device);
    d.sim = true;
    d.capacity_bytes = s.capacity_bytes;
    d.h2d_gbps = s.h2d_gbps;
    d.vram_budget_bytes = s.capacity_bytes;
  }
  if (!o.vram_budget.empty()) {
    d.vram_budget_bytes = parse_vram_budget(o.vram_budget);
    if (!d.sim && sched::gpu_device_count() <= 0)
      fail("--vram-budget: no CUDA device ({}); use --sim-device 8GiB to test the GPU tier with the simulated device "
           "sim:0",
           sched::gpu_compiled() ? "CUDA is built in, but no device was found" : "CUDA not in this build");
    if (d.sim && d.vram_budget_bytes > d.capacity_bytes)
      fail("--vram-budget {} is more than the simulated device holds (--sim-device {}: {} bytes)", o.vram_budget,
           o.sim_device, d.capacity_bytes);
  }
  if (!o.device_slots.empty()) {
    d.slot_bytes = parse_bytes(o.device_slots, "--device-slots");
    if (d.slot_bytes == 0 || d.slot_bytes >= d.vram_budget_bytes)
      fail("--device-slots {}: expected more than 0 and less than the VRAM budget ({} bytes)", o.device_slots,
           d.vram_budget_bytes);
    d.vram_budget_bytes -= d.slot_bytes;
  }
  return d;
}

DeviceOptions devices_for_plan(const DeviceOptions& o, const offload::PlacementPlan& plan, const std::string& source) {
  if (o.enabled) {
    const offload::DeviceBudget* b = plan.device_budget(o.tier());
    if (o.sim && b != nullptr && b->bytes > o.capacity_bytes)
      fail("{}: the plan gives sim:0 {} bytes, more than --sim-device's capacity of {} bytes", source, b->bytes,
           o.capacity_bytes);
    return o;
  }
  const std::vector<offload::Tier> used = plan.used_devices();
  if (used.empty()) return o;
  // One device for now: the plan's first. A plan on another index (gpu:1, sim:1) gets an option set for
  // index 0, which validate_for_backends then refuses naming the tier.
  const offload::Tier t = used[0];
  const offload::DeviceBudget* b = plan.device_budget(t);
  DeviceOptions d;
  d.enabled = true;
  d.sim = t.kind == offload::Tier::Kind::Sim;
  if (d.sim) {
    if (b == nullptr)
      fail("{}: the plan puts weights on {} but gives it no capacity (no \"devices\" entry for it); add "
           "--sim-device CAPACITY",
           source, offload::to_string(t));
    d.capacity_bytes = b->bytes;
    d.h2d_gbps = b->h2d_gbps.value_or(kDefaultSimH2dGbps);
  }
  d.vram_budget_bytes = b != nullptr ? b->bytes : 0;  // gpu:N without an entry: no budget stated
  return d;
}


PlannedRun build_plan(const models::Model& model, const TierOptions& o, const RunShape& shape) {
  const offload::ModelIdentity id = tiered::model_identity(model);
  const std::string& file = model.gguf().path();
  PlannedRun out;
  out.parts = tiered::process_parts(model, shape.n_ctx, shape.n_batch, sched::global_pool().size(), o.io_queue_depth,
                                    shape.metadata_bytes);
  out.non_expert_bytes = out.parts.non_expert;
  out.kv_cache_bytes = out.parts.kv_cache;
  out.device_non_expert_bytes = tiered::non_expert_ffn_bytes(model);
  out.device_kv_cache_bytes = 0;
  if (model.hparams().n_expert == 0) fail("{}: the model has no routed experts to place", file);
  offload::PolicyKind policy = offload::PolicyKind::Lru;
  if (!o.cache_policy.empty()) policy = offload::parse_policy(o.cache_policy);
  if (!o.ram_budget.empty()) out.ram_budget_bytes = parse_bytes(o.ram_budget, "--ram-budget");
  std::vector<std::vector<uint64_t>> usage;
  if (!o.trace.empty() && o.plan.empty() && o.experts_on_nvme.empty())
    usage = offload::read_any_trace(o.trace).usage_counts(id.n_layers, id.n_experts);
  const DeviceOptions dev = device_options(o);
  offload::PlacementPlan& plan = out.plan;
  if (!o.plan.empty()) {
    plan = offload::read_placement_plan(o.plan);
    plan.check_model(id);
    if (!o.cache_policy.empty()) plan.cache_policy = policy;
  } else if (dev.enabled) {
    // Device first: the FFNs every token reads (when they fit), then the hottest experts. The host keeps
    // every non-expert weight and the KV cache (see PlannedRun), so the DRAM budget counts them in full.
    offload::VramPlanRequest rq;
    rq.non_expert_bytes = o.device_non_expert ? out.device_non_expert_bytes : 0;
    rq.kv_cache_bytes = out.device_kv_cache_bytes;
    rq.dram_non_expert_bytes = out.parts.non_expert;
    rq.device = offload::DeviceBudget{dev.tier(), dev.vram_budget_bytes,
                                      dev.sim ? std::optional<double>(dev.h2d_gbps) : std::nullopt};
    if (out.ram_budget_bytes > 0) rq.dram_budget_bytes = tiered::weights_budget(file, out.ram_budget_bytes, out.parts, id);
    rq.usage = std::move(usage);
    rq.policy = policy;
    offload::VramPlan v = offload::plan_with_vram(id, rq);
    plan = std::move(v.plan);
    plan.kv_cache = offload::Tier::dram();  // host memory: attention runs on the CPU
    if (out.device_non_expert_bytes == 0 || !o.device_non_expert)
      plan.non_expert = offload::Tier::dram();  // no FFN the device would compute, or kept off it
    out.notes = std::move(v.notes);
  } else if (out.ram_budget_bytes > 0) {
    // The budget is the process: KV cache, scratch, I/O state, metadata and fixed overhead first.
    const uint64_t weights = tiered::weights_budget(file, out.ram_budget_bytes, out.parts, id);
    offload::RamBudgetOptions ro;
    ro.policy = policy;
    plan = offload::plan_from_ram_budget(id, weights, out.parts.non_expert, usage, ro);
  } else {
    const double fraction = parse_nvme_fraction(o.experts_on_nvme);
    const CacheSize cache = o.cache_size.empty() ? CacheSize{} : parse_cache_size(o.cache_size);
    plan = offload::plan_experts_on_nvme(id, fraction, cache.bytes, policy, cache.experts ? cache.experts : 16);
  }
  out.device = devices_for_plan(dev, plan, o.plan.empty() ? file : o.plan);
  if (!o.plan.empty() && dev.enabled && dev.sim)
    // --sim-device beside --plan: the run copies at the option's rate; the plan in force (-v, --save-plan) says so.
    for (offload::DeviceBudget& b : plan.devices)
      if (b.tier == dev.tier()) b.h2d_gbps = dev.h2d_gbps;
  plan.validate_for_backends(out.device.tiers());
  if (plan.kv_cache.is_device())
    out.notes.push_back(fmt::format("the plan puts the KV cache on {}, but it stays in host memory: no device backend "
                                    "computes attention yet", offload::to_string(plan.kv_cache)));
  plan.check_device_budgets(out.device_non_expert_bytes, out.device_kv_cache_bytes);
  if (out.device.sim && plan.device_budget(out.device.tier()) == nullptr) {
    // A plan without a budget for the simulated device must still fit its capacity.
    offload::PlacementPlan with_capacity = plan;
    with_capacity.devices.push_back(offload::DeviceBudget{out.device.tier(), out.device.capacity_bytes, std::nullopt});
    with_capacity.check_device_budgets(out.device_non_expert_bytes, out.device_kv_cache_bytes);
  }
  return out;
}

RunTiers setup_tiers(models::Model& model, const TierOptions& o, const RunShape& shape, tiered::MemoryParts* parts_out) {
  const offload::ModelIdentity id = tiered::model_identity(model);
  tiered::MemoryParts parts = tiered::process_parts(model, shape.n_ctx, shape.n_batch, sched::global_pool().size(),
                                                    o.io_queue_depth, shape.metadata_bytes);
  RunTiers rt;
  if (!o.any()) {
    tiered::add_all_resident(parts, id);
    if (o.verbose) std::fprintf(stderr, "moetier: memory:\n%s", tiered::memory_table(parts, 0).c_str());
    if (parts_out) *parts_out = parts;
    return rt;
  }
  PlannedRun pr = build_plan(model, o, shape);
  rt.plan = pr.plan;
  const offload::PlacementPlan& plan = rt.plan;
  const uint64_t budget = pr.ram_budget_bytes;
  parts = pr.parts;
  for (const std::string& note : pr.notes) std::fprintf(stderr, "moetier: plan: %s\n", note.c_str());
  if (!o.save_plan.empty()) offload::write_placement_plan(o.save_plan, plan);
  tiered::TieredOptions to;
  to.reader.queue_depth = o.io_queue_depth;
  to.devices = pr.device.tiers();
  rt.streamed = std::make_unique<tiered::TieredExperts>(model, plan, to);
  rt.streamed->set_prefetch(!o.no_prefetch);
  tiered::add_plan_parts(parts, plan, rt.streamed->cache() ? rt.streamed->cache()->slot_bytes() : 0);
  if (o.verbose) {
    std::fprintf(stderr, "moetier: plan in force (%s):\n%s", o.plan.empty() ? "built from options" : o.plan.c_str(),
                 offload::plan_to_json(plan).c_str());
    std::fprintf(stderr, "\nmoetier: memory:\n%s", tiered::memory_table(parts, budget).c_str());
  }
  if (parts_out) *parts_out = parts;
  if (rt.streamed->cache()) model.set_streamed_experts(rt.streamed.get());
  else rt.streamed.reset();  // nothing on NVMe
  // The device opens when the plan puts something there or dynamic slots are asked for.
  if (pr.device.enabled && (!plan.used_devices().empty() || pr.device.slot_bytes > 0)) {
    const DeviceOptions& d = pr.device;
    if (d.slot_bytes > 0) {
      uint64_t smallest = 0;
      for (const uint64_t b : id.expert_bytes)
        if (b > 0) smallest = smallest == 0 ? b : std::min(smallest, b);
      if (d.slot_bytes < smallest)
        fail("--device-slots {}: holds no expert of {} (the smallest is {} bytes)", o.device_slots,
             model.gguf().path(), smallest);
    }
    sched::DeviceSpec spec;
    spec.kind = d.sim ? "sim" : "gpu";
    spec.index = d.tier().device;
    // The simulated device has the memory --sim-device gives it; a GPU's budget is what we may use of it.
    spec.capacity_bytes = d.sim && d.capacity_bytes > 0 ? d.capacity_bytes : d.vram_budget_bytes + d.slot_bytes;
    spec.h2d_gbps = d.h2d_gbps;
    spec.gemm_min_tokens = model.gemm_min_tokens();
    rt.device = std::make_unique<tiered::DeviceTier>(model, plan, d.tier(), spec, d.slot_bytes);
  }
  return rt;
}

}  // namespace moetier::cli
