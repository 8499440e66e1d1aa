// `moetier plan (-m MODEL | --preset NAME [--type T]) (--ram-budget SIZE | --vram-budget SIZE |
// --sim-device CAP[,RATE] | --experts-on-nvme all|FRACTION | --plan FILE) [--machine FILE] [--trace FILE]
// [--parallel N] [-p N] [-t N] [--search] [-o PLAN]`: memory-budget tuning. Builds the placement plan `run`
// would use (non-expert weights, the KV cache for -c positions per sequence and experts over the device,
// DRAM and NVMe), prints where each byte goes (tier, what, bytes), and predicts decode and prompt tokens/s
// from the machine profile `moetier calibrate` wrote (--machine, else the default profile when it exists,
// else the DRAM bandwidth measured now and --nvme-gbps, bandwidth only) with the throughput model of
// runtime/tuning/throughput_model.hpp: per step, the DRAM tier's bytes / its measured bandwidth against the
// kernels' measured rates (whichever is slower), the disk tier's cache misses / the disk rate at the
// model's expert read size, the KV-cache reads of the context and the dispatch overheads, and what binds.
// The cache hit rate comes from --trace replayed through the plan's cache policy (offload/cache_sim), else
// from the share of streamed experts the cache holds (uniform routing). A --preset is planned without
// writing or downloading the model: a sparse temporary file holds its header only (nothing is read from
// the data). --search tries the alternatives (experts on NVMe 0-100 % x cache sizes, cache policies with a
// trace, 1/2/4/8 sequences) within --ram-budget and prints a ranked table; -o writes the best one's plan.
// The DRAM budget is the whole process: the memory table shows what the KV cache, scratch for a prompt of
// -b tokens, the I/O state, metadata + tokenizer and the fixed overhead take before the weights are placed;
// the host keeps every non-expert weight and the KV cache whatever the device holds.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
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
#include "runtime/cli/plan_eval.hpp"
#include "runtime/synth/synth_model.hpp"
#include "runtime/tuning/machine_profile.hpp"

namespace moetier::cli {
namespace {

/// GB/s the load-time copy to a CUDA device assumes (PCIe 4.0 x16).
constexpr double kAssumedGpuH2dGbps = 24.0;

struct PlanArgs {
  std::string model, preset, type = "Q4_K", out, machine;
  TierOptions tiers;
  double dram_gbps = 0;  // 0: the profile's, else measure
  double nvme_gbps = 0;  // 0: the profile's, else kAssumedNvmeGbps
  double vram_gbps = 0;  // 0: kAssumedGpuGbps for gpu:N, the DRAM bandwidth for sim:N
  int64_t ctx = 0;     // -c (0: min(4096, training context), as run)
  int64_t batch = 512;  // -b: tokens of the largest prompt (capped at the context)
  int64_t prompt = 512;  // -p: prompt tokens of the prediction
  int64_t n_gen = 128;   // -n: generated tokens (the decode context is the prompt + half of them)
  int threads = 0;
  int parallel = 1;
  bool json = false, search = false;
};

/// Disk GB/s without a profile or --nvme-gbps: a stated round figure for a PCIe 3.0 NVMe drive's reads.
constexpr double kAssumedNvmeGbps = 1.5;

/// One row of the placement table.
struct PlacedBytes {
  std::string tier, what;
  uint64_t bytes = 0;
};

/// A synth preset's GGUF header in a sparse temporary file of the model's full size (no weight written),
/// removed on destruction: planning without writing or downloading the model.
class SparseSynthModel {
 public:
  SparseSynthModel(const std::string& preset, const std::string& type_name) {
    const auto type = ggml_type_from_name(type_name);
    if (!type) fail("plan: --type {}: unknown weight type", type_name);
    const synth::SynthModel m = synth::build_synth_model({preset, *type, "", 0});
    const auto writer = m.make_writer();
    // A private folder, so that the file can carry the name `synth -o` would give it (plans record it).
    dir_ = (std::filesystem::temp_directory_path() / "moetier-plan-XXXXXX").string();
    if (::mkdtemp(dir_.data()) == nullptr) fail("plan: cannot create a temporary folder {}: {}", dir_, std::strerror(errno));
    path_ = dir_ + "/" + preset + "-" + type_name + ".gguf";
    const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
      ::rmdir(dir_.c_str());
      fail("plan: cannot create a temporary file {}: {}", path_, std::strerror(errno));
    }
    const std::vector<std::byte> head = writer.header_bytes();
    const bool ok = ::write(fd, head.data(), head.size()) == static_cast<ssize_t>(head.size()) &&
                    ::ftruncate(fd, static_cast<off_t>(writer.file_size())) == 0;
    ::close(fd);
    if (!ok) {
      ::unlink(path_.c_str());
      ::rmdir(dir_.c_str());
      fail("plan: cannot write the sparse model file {}", path_);
    }
  }
  ~SparseSynthModel() {
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }
  const std::string& path() const { return path_; }

 private:
  std::string dir_, path_;
};

/// The machine profile of the prediction and where it came from.
tuning::MachineProfile machine_for(const PlanArgs& a, int threads, std::string& source) {
  tuning::MachineProfile m;
  const std::string def = tuning::default_machine_profile_path();
  const std::string file = !a.machine.empty() ? a.machine : (!def.empty() && std::filesystem::is_regular_file(def) ? def : "");
  if (!file.empty()) {
    m = tuning::read_machine_profile(file);
    source = fmt::format("{} (calibrated {})", file, m.created);
  } else {
    source = "no machine profile (moetier calibrate writes one): DRAM bandwidth measured now, no kernel rates";
  }
  if (a.dram_gbps > 0 || m.dram.empty()) {
    const double gbps = a.dram_gbps > 0 ? a.dram_gbps : sched::measure_read_bandwidth_gbps(sched::global_pool(), 512ull << 20, 3);
    m.dram = {{threads, gbps, {a.dram_gbps > 0 ? "--dram-gbps" : "STREAM-like read (plan)", 512ull << 20, threads, 3}}};
    if (a.dram_gbps > 0) source += "; DRAM rate from --dram-gbps";
  }
  if (a.nvme_gbps > 0 || m.disk.empty()) {
    m.disk = {{1, 1, a.nvme_gbps > 0 ? a.nvme_gbps : kAssumedNvmeGbps, {a.nvme_gbps > 0 ? "--nvme-gbps" : "assumed", 0, 1, 1}}};
    source += a.nvme_gbps > 0 ? "; disk rate from --nvme-gbps" : fmt::format("; disk rate assumed {} GB/s", kAssumedNvmeGbps);
  }
  return m;
}

std::string gb(double bytes) { return models::format_bytes(static_cast<uint64_t>(std::max(0.0, bytes))); }

void plan(PlanArgs& a) {
  if (!a.tiers.any())
    fail("plan: give --ram-budget SIZE, --vram-budget SIZE, --sim-device CAPACITY or --experts-on-nvme all|FRACTION "
         "(or --plan FILE to evaluate one)");
  if (a.ctx < 0) fail("-c {} (expected >= 0; 0: min(4096, training context))", a.ctx);
  if (a.batch < 1) fail("-b {} (expected >= 1)", a.batch);
  std::unique_ptr<SparseSynthModel> sparse;
  if (!a.preset.empty()) sparse = std::make_unique<SparseSynthModel>(a.preset, a.type);
  const std::string model_path = sparse ? sparse->path() : a.model;
  const std::string model_name = sparse ? fmt::format("{} {} (synth preset, not written)", a.preset, a.type) : a.model;
  sched::ThreadPoolOptions po;
  po.n_threads = a.threads;
  const int threads = sched::configure_global_pool(po).size();
  const uint64_t rss_before_model = tiered::current_rss_bytes();
  auto g = gguf::GgufModel::open(model_path);
  auto model = models::load_model(g);
  const auto tok = tokenizer::Tokenizer::from_gguf(g);  // held as `run` holds it: measured below
  const uint64_t metadata_bytes = std::max(tiered::current_rss_bytes(), rss_before_model) - rss_before_model;
  const auto& hp = model->hparams();
  // -c is the context of all sequences together, split evenly over --parallel of them as `serve -np`
  // splits it over its slots.
  const int64_t ctx_total = a.ctx > 0 ? a.ctx : std::min<int64_t>(4096, hp.n_ctx_train);
  const int64_t n_ctx = ctx_total / a.parallel;
  if (n_ctx < 1) fail("-c {} is less than one position per sequence (--parallel {})", ctx_total, a.parallel);
  std::string machine_source;
  const tuning::MachineProfile m = machine_for(a, threads, machine_source);
  std::unique_ptr<offload::RoutingTrace> trace;
  if (!a.tiers.trace.empty()) trace = std::make_unique<offload::RoutingTrace>(offload::read_any_trace(a.tiers.trace));
  PlanContext c;
  c.model = model.get();
  c.tensors = &g.tensors();
  c.n_ctx = n_ctx;
  c.n_batch = a.batch;
  c.metadata_bytes = metadata_bytes;
  c.vram_gbps = a.vram_gbps;
  c.trace = trace.get();
  c.shape.threads = threads;
  c.shape.parallel = a.parallel;
  c.shape.prompt_tokens = std::min(a.prompt, n_ctx);
  c.shape.n_batch = std::min(a.batch, n_ctx);
  c.shape.decode_context = std::min(n_ctx, a.prompt + a.n_gen / 2);
  const PlanEval e = evaluate_plan(c, a.tiers, m, true);
  if (a.search) return search_plans(c, a.tiers, m, e, a.out.empty() ? a.tiers.save_plan : a.out);
  const offload::PlacementPlan& p = e.pr.plan;
  const tiered::MemoryParts& mem = e.mem;
  const std::string save = a.out.empty() ? a.tiers.save_plan : a.out;
  if (!save.empty()) offload::write_placement_plan(save, p);
  const uint64_t budget = e.pr.ram_budget_bytes;
  const double slots = static_cast<double>(mem.n_cache_slots);
  if (a.tiers.verbose) {
    std::fprintf(stderr, "moetier: plan in force (%s):\n%s", a.tiers.plan.empty() ? "built from options" : a.tiers.plan.c_str(),
                 offload::plan_to_json(p).c_str());
    std::fprintf(stderr, "\nmoetier: memory:\n%s", tiered::memory_table(mem, budget).c_str());
  }
  const bool has_dev = e.has_dev, dev_is_sim = e.dev_is_sim, ne_on_dev = e.ne_on_dev;
  const offload::Tier dev = e.dev;
  const uint64_t vram_budget = p.device_budget(dev) ? p.device_budget(dev)->bytes : e.pr.device.vram_budget_bytes;
  const tuning::Prediction& pd = e.pred;
  const std::string dev_rate_why = a.vram_gbps > 0 ? "--vram-gbps"
                                   : dev_is_sim    ? "the DRAM bandwidth: the simulated device computes on the CPU"
                                                   : "assumed device memory rate; --vram-gbps sets it";

  // Where each byte goes.
  std::vector<PlacedBytes> rows;
  uint64_t dev_total = 0;
  if (has_dev) {
    const std::string t = offload::to_string(dev);
    if (ne_on_dev) rows.push_back({t, "non-expert FFNs (shared experts, dense)", e.pr.device_non_expert_bytes});
    if (e.pr.device_kv_cache_bytes > 0 && p.kv_cache.is_device())
      rows.push_back({t, fmt::format("KV cache (n_ctx {})", n_ctx), e.pr.device_kv_cache_bytes});
    rows.push_back({t, fmt::format("experts ({})", p.experts_on(dev).size()), p.bytes_on(dev)});
    for (const PlacedBytes& r : rows) dev_total += r.bytes;
    rows.push_back({t, vram_budget > 0 ? fmt::format("total, of a VRAM budget of {}", models::format_bytes(vram_budget))
                                       : std::string("total (the plan gives no VRAM budget)"),
                    dev_total});
  }
  // The host keeps every non-expert weight and the KV cache (attention runs on the CPU).
  rows.push_back({"dram", "non-expert weights", mem.non_expert});
  rows.push_back({"dram", a.parallel > 1 ? fmt::format("KV cache ({} sequences x n_ctx {}, -c split as serve -np)", a.parallel, n_ctx)
                                         : fmt::format("KV cache (n_ctx {})", n_ctx),
                  mem.kv_cache});
  rows.push_back({"dram", fmt::format("experts ({})", mem.n_resident_experts), mem.resident_experts});
  rows.push_back({"dram", fmt::format("expert cache ({} slots)", mem.n_cache_slots), mem.expert_cache});
  rows.push_back({"dram", "scratch, I/O, metadata, overhead", mem.scratch + mem.io + mem.metadata + mem.fixed});
  rows.push_back({"dram", budget > 0 ? fmt::format("total, of --ram-budget {}", models::format_bytes(budget))
                                     : std::string("total (no --ram-budget)"),
                  mem.total()});
  rows.push_back({"nvme", fmt::format("experts ({}, streamed)", e.n_nvme_experts), p.bytes_on(offload::Tier::Kind::Nvme)});
  // Host->device copies at load (not per token): what the device holds.
  const double h2d_gbps = dev_is_sim ? e.pr.device.h2d_gbps : kAssumedGpuH2dGbps;
  const double h2d_seconds = h2d_gbps > 0 ? static_cast<double>(dev_total) / (h2d_gbps * 1e9) : 0.0;
  const double P = static_cast<double>(a.parallel);

  if (a.json) {
    nlohmann::json j;
    j["schema"] = "moetier.plan-summary/1";
    j["non_expert_bytes"] = e.pr.non_expert_bytes;
    j["dram_expert_bytes"] = p.bytes_on(offload::Tier::Kind::Dram);
    j["nvme_expert_bytes"] = p.bytes_on(offload::Tier::Kind::Nvme);
    j["cache_bytes"] = p.cache_bytes;
    j["experts_dram"] = p.experts_on(offload::Tier::Kind::Dram).size();
    j["experts_nvme"] = e.n_nvme_experts;
    j["memory"] = {{"budget_bytes", budget},           {"total_bytes", mem.total()},
                   {"non_expert_bytes", mem.non_expert}, {"resident_expert_bytes", mem.resident_experts},
                   {"expert_cache_bytes", mem.expert_cache}, {"kv_cache_bytes", mem.kv_cache},
                   {"n_ctx", mem.n_ctx},                {"scratch_bytes", mem.scratch},
                   {"n_batch", mem.n_batch},            {"io_bytes", mem.io},
                   {"metadata_bytes", mem.metadata},    {"fixed_overhead_bytes", mem.fixed}};
    if (has_dev)
      j["device"] = {{"tier", offload::to_string(dev)},      {"vram_budget_bytes", vram_budget},
                     {"used_bytes", dev_total},              {"non_expert", ne_on_dev},
                     {"non_expert_bytes", ne_on_dev ? e.pr.device_non_expert_bytes : 0},
                     {"kv_cache", e.pr.device_kv_cache_bytes > 0 && p.kv_cache.is_device()},
                     {"kv_cache_bytes", e.pr.device_kv_cache_bytes},
                     {"experts", p.experts_on(dev).size()},  {"expert_bytes", p.bytes_on(dev)},
                     {"h2d_gbps", h2d_gbps},                 {"h2d_seconds", h2d_seconds}};
    j["placement"] = nlohmann::json::array();
    for (const PlacedBytes& r : rows) j["placement"].push_back({{"tier", r.tier}, {"what", r.what}, {"bytes", r.bytes}});
    j["notes"] = e.pr.notes;
    for (const std::string& n : pd.notes) j["notes"].push_back(n);
    j["machine"] = machine_source;
    j["predicted"] = {{"device_bytes_per_token", e.dev_bytes},     {"dram_bytes_per_token", pd.dram_bytes / P},
                      {"nvme_bytes_per_token", pd.disk_bytes / P}, {"kv_bytes_per_token", pd.kv_bytes / P},
                      {"cache_hit_rate", e.hit_rate},              {"hit_rate_from_trace", e.hit_rate_from_trace},
                      {"device_gbps", has_dev ? e.dev_gbps : 0.0}, {"dram_gbps", pd.dram_gbps},
                      {"nvme_gbps", pd.disk_gbps},                 {"threads", threads},
                      {"parallel", a.parallel},                    {"decode_tokens_per_s", pd.decode_tps},
                      {"prompt_tokens", c.shape.prompt_tokens},    {"prompt_tokens_per_s", pd.prompt_tps},
                      {"decode_binds", pd.binds},                  {"prompt_binds", pd.prompt_binds},
                      {"vram_capacity_binds", has_dev && !e.pr.notes.empty()},
                      {"step_seconds", {{"dram", pd.dram_s}, {"compute", pd.compute_s}, {"disk", pd.disk_s},
                                        {"kv_cache", pd.kv_s}, {"router", pd.router_s}, {"norms", pd.norm_s}, {"overhead", pd.overhead_s}, {"device", pd.device_s},
                                        {"total", pd.step_s}}}};
    std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return;
  }
  std::printf("model:            %s (%s, %lld layers, %lld experts, top-%lld)\n", model_name.c_str(), hp.arch_str.c_str(),
              static_cast<long long>(hp.n_layer), static_cast<long long>(hp.n_expert), static_cast<long long>(hp.n_expert_used));
  std::printf("machine:          %s\n", machine_source.c_str());
  if (has_dev)
    std::printf("device:           %s (%s), VRAM budget %s\n", offload::to_string(dev).c_str(),
                dev_is_sim ? "simulated: computes with the CPU kernels" : "CUDA",
                vram_budget > 0 ? models::format_bytes(vram_budget).c_str() : "not given");
  std::printf("non-expert:       %s (DRAM%s)\n", models::format_bytes(e.pr.non_expert_bytes).c_str(),
              ne_on_dev ? fmt::format("; its FFNs, {}, also on {}", models::format_bytes(e.pr.device_non_expert_bytes),
                                      offload::to_string(p.non_expert)).c_str()
                        : "");
  if (has_dev)
    std::printf("%-18s%zu (%s)\n", fmt::format("experts on {}:", offload::to_string(dev)).c_str(), p.experts_on(dev).size(),
                models::format_bytes(p.bytes_on(dev)).c_str());
  std::printf("experts in DRAM:  %zu (%s)\n", p.experts_on(offload::Tier::Kind::Dram).size(),
              models::format_bytes(p.bytes_on(offload::Tier::Kind::Dram)).c_str());
  std::printf("experts on NVMe:  %zu (%s), cache %s (%.0f slots, %s)\n", e.n_nvme_experts,
              models::format_bytes(p.bytes_on(offload::Tier::Kind::Nvme)).c_str(),
              models::format_bytes(p.cache_bytes).c_str(), slots, std::string(offload::policy_name(p.cache_policy)).c_str());
  for (const std::string& note : e.pr.notes) std::printf("note: %s\n", note.c_str());
  for (const std::string& note : pd.notes) std::printf("note: %s\n", note.c_str());
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
  std::printf("per decode token: %s%s from DRAM at %.1f GB/s, %s from NVMe at %.2f GB/s (cache hit rate ~%.0f%%%s), "
              "%s of KV cache\n",
              has_dev ? fmt::format("{} from {} at {:.1f} GB/s ({}), ", gb(e.dev_bytes), offload::to_string(dev), e.dev_gbps,
                                    dev_rate_why).c_str()
                      : "",
              gb(pd.dram_bytes / P).c_str(), pd.dram_gbps, gb(pd.disk_bytes / P).c_str(), pd.disk_gbps, 100 * e.hit_rate,
              e.hit_rate_from_trace ? ", routing from trace replayed through the cache policy"
              : trace              ? ", routing from trace"
                                   : ", uniform routing",
              gb(pd.kv_bytes / P).c_str());
  std::printf("per decode step (%d sequence(s), %d threads, context %lld): DRAM %.2f ms, CPU compute %.2f ms (overlapped: "
              "the larger counts), disk %.2f ms, %s %.2f ms, router %.2f ms, norms %.2f ms, dispatch %.2f ms%s = %.2f ms\n",
              a.parallel, threads, static_cast<long long>(c.shape.decode_context), 1e3 * pd.dram_s, 1e3 * pd.compute_s,
              1e3 * pd.disk_s, pd.attention_measured ? "attention" : "KV cache", 1e3 * pd.kv_s, 1e3 * pd.router_s,
              1e3 * pd.norm_s, 1e3 * pd.overhead_s,
              has_dev ? fmt::format(", {} {:.2f} ms", offload::to_string(dev), 1e3 * pd.device_s).c_str() : "", 1e3 * pd.step_s);
  // VRAM capacity binds the placement when the device planner left experts or FFNs off the device.
  const std::string vram_bound = has_dev && !e.pr.notes.empty() ? "; placement bound by VRAM capacity (see notes)" : "";
  std::printf("predicted decode: %.2f tokens/s (%s; bound by %s%s)\n", pd.decode_tps,
              a.parallel > 1 ? fmt::format("{} sequences together", a.parallel).c_str() : "one sequence", pd.binds.c_str(),
              vram_bound.c_str());
  std::printf("predicted prompt: %.2f tokens/s (%lld tokens in chunks of %lld; bound by %s)\n", pd.prompt_tps,
              static_cast<long long>(c.shape.prompt_tokens), static_cast<long long>(c.shape.n_batch), pd.prompt_binds.c_str());
  if (!save.empty()) std::printf("plan written to %s\n", save.c_str());
}

}  // namespace

void register_plan(CLI::App& app) {
  auto a = std::make_shared<PlanArgs>();
  CLI::App* sub = app.add_subcommand("plan", "Place experts on tiers for a memory budget and predict decode speed");
  auto* model = sub->add_option("-m,--model", a->model, "GGUF model file")->check(non_empty());
  auto* preset = sub->add_option("--preset", a->preset, "Plan a synth preset instead (nothing is written or downloaded)")
                     ->check(non_empty());
  model->excludes(preset);
  sub->add_option("--type", a->type, "Weight type of --preset")->capture_default_str();
  sub->add_option("--machine", a->machine,
                  "Machine profile from `moetier calibrate` (default: $XDG_CACHE_HOME/moetier/machine.json when it exists)")
      ->check(non_empty());
  sub->add_option("-t,--threads", a->threads, "Threads of the run predicted (0: the default worker count)")
      ->check(in_range(0, 4096, "0: the default worker count"));
  sub->add_option("--parallel", a->parallel,
                  "Sequences decoding together, as serve -np: -c is split over them; one expert read per step")
      ->check(in_range(1, 256));
  sub->add_option("-p,--n-prompt", a->prompt, "Prompt tokens of the prompt-speed prediction")->check(in_range(1, 1 << 24));
  sub->add_option("-n,--n-gen", a->n_gen, "Generated tokens (the decode context is the prompt plus half of them)")
      ->check(in_range(0, 1 << 24));
  sub->add_flag("--search", a->search,
                "Try experts on NVMe x cache sizes, cache policies (with --trace) and 1/2/4/8 sequences; print a ranked "
                "table; -o writes the best plan");
  auto* out = sub->add_option("-o,--output", a->out, "Write the plan (JSON, moetier.placement/1)")->check(non_empty());
  sub->add_option("--dram-gbps", a->dram_gbps, "DRAM read bandwidth for the prediction (0: the profile's, else measure now)")
      ->check(in_range<double>(0, 1e6, "0: the machine profile's, else measure now"));
  sub->add_option("--nvme-gbps", a->nvme_gbps, "Disk read bandwidth for the prediction (GB/s; 0: the profile's, else 1.5)")
      ->check(in_range<double>(0, 1e6, "0: the machine profile's, else 1.5 assumed"));
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
    if (a->model.empty() == a->preset.empty()) fail("plan: give -m MODEL or --preset NAME");
    if (a->search && a->json) fail("plan: --search prints a table; --json is for one plan");
    if (!a->machine.empty()) check_input_file(a->machine, "machine profile (--machine)");
    check_tier_options(a->tiers, [sub](const std::string& name) { return sub->count(name) > 0; }, true);
    // Files before the model is opened: inputs regular files, outputs absent or regular files.
    if (!a->out.empty()) check_output_file(a->out, "placement plan (-o)");
    check_tier_files(a->tiers);
    std::vector<NamedFile> inputs;
    if (!a->model.empty())
      for (const auto& part : model_part_paths(a->model)) inputs.push_back({"-m", part});
    inputs.push_back({"--machine", a->machine});
    inputs.push_back({"--plan", a->tiers.plan});
    inputs.push_back({"--trace", a->tiers.trace});
    check_distinct_files(inputs, {{"-o", a->out}, {"--save-plan", a->tiers.save_plan}});
    plan(*a);
  });
}

}  // namespace moetier::cli
