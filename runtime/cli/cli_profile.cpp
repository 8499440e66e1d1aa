// `moetier profile -m MODEL [run options, tier options] -o DIR [--machine FILE] [--baseline-runs N]`:
// runs the generation of `moetier run` with tracing on (common/trace_events.hpp) and writes into DIR
//   trace.json    Chrome trace-event JSON (Perfetto): one track per worker thread, the I/O ring's reads
//                 on lanes, the simulated device's stream; forward steps, attention, router, expert groups
//                 (tier, tokens, bytes), reads (bytes, latency, demand or prefetch), stalls, pool waits;
//   summary.json  per tier bytes per decode token, achieved GB/s and % of the ceiling (DRAM read
//                 bandwidth measured at the start with scheduler/bandwidth.hpp; the disk's from --machine
//                 when it gives one, else the reads' own rate while in flight), the decode time split
//                 (attention / experts / rest, as `bench` splits it), cache demands, prediction accuracy,
//                 and the tracing overhead (decode tokens/s of untraced runs of the same generation in
//                 this process against the traced one); the same as a table on stdout;
//   heatmap.svg   layers x experts routed counts, with cache hits / prefetched / misses of streamed ones;
//   routing.jsonl the routing trace (as `run --record-routing`), replayable by `plan --trace`.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <random>
#include <string>

#include "common/error.hpp"
#include "common/file_io.hpp"
#include "common/trace_events.hpp"
#include "offload/routing_trace.hpp"
#include "runtime/cli/commands.hpp"
#include "runtime/cli/context_size.hpp"
#include "runtime/cli/loaded_model.hpp"
#include "runtime/tuning/machine_profile.hpp"
#include "runtime/cli/option_checks.hpp"
#include "runtime/cli/profile_heatmap.hpp"
#include "runtime/cli/profile_summary.hpp"
#include "runtime/cli/profile_trace.hpp"
#include "runtime/cli/run_options.hpp"
#include "runtime/cli/weights_memory.hpp"
#include "runtime/gguf/gguf_model.hpp"
#include "runtime/models/model.hpp"
#include "runtime/models/size_breakdown.hpp"
#include "runtime/session/session.hpp"
#include "runtime/tiered/tiered_experts.hpp"
#include "runtime/tokenizer/tokenizer.hpp"
#include "scheduler/bandwidth.hpp"
#include "scheduler/thread_pool.hpp"

namespace moetier::cli {
namespace {

namespace fs = std::filesystem;

struct ProfileArgs {
  RunOptions run;
  std::string out_dir;
  std::string machine;
  int baseline_runs = 2;
  uint64_t bw_mib = 256;
};

/// The output folder: created when absent (its parent must exist); Error when it names something else.
void prepare_out_dir(const std::string& dir) {
  std::error_code ec;
  const fs::file_status st = fs::status(dir, ec);
  if (fs::exists(st)) {
    if (!fs::is_directory(st)) fail("-o {}: exists and is not a folder (profile writes several files into a folder)", dir);
    return;
  }
  if (!fs::create_directory(dir, ec)) fail("-o {}: cannot create the folder: {}", dir, ec ? ec.message() : "unknown error");
}

/// The disk read rate of a machine profile (GB/s), 0 when the file gives none. The profile's schema
/// (moetier.machine/1, `moetier calibrate`) is read loosely: the largest number under a key that names
/// the disk ("disk" or "nvme" in its path) and ends in "gbps".
double machine_disk_gbps(const std::string& path) {
  if (path.empty()) return 0;
  const tuning::MachineProfile p = tuning::read_machine_profile(path);  // Error naming the file and key
  double best = 0;
  for (const auto& d : p.disk) best = std::max(best, d.gbps);
  return best;
}

/// What recording costs on this thread: ns per Scope with three args while tracing is on (two clock
/// reads and a copy into the buffer) and while it is off (the branch). Leaves tracing off and the buffers
/// empty (call after collect()).
struct RecordCost {
  double on_ns = 0, off_ns = 0;
};
RecordCost measure_record_cost() {
  constexpr int kN = 200000;
  const auto time_scopes = [] {
    const int64_t t0 = trace::now_ns();
    for (int i = 0; i < kN; ++i) {
      trace::Scope s("cost", "profile");
      s.arg("layer", i).arg("expert", i).arg("bytes", i);
    }
    return static_cast<double>(trace::now_ns() - t0) / kN;
  };
  RecordCost c;
  trace::clear();
  trace::set_enabled(true);
  c.on_ns = time_scopes();
  trace::set_enabled(false);
  trace::clear();
  c.off_ns = time_scopes();
  return c;
}

void profile(const ProfileArgs& a) {
  const RunOptions& o = a.run;
  if (o.ctx < 0) fail("-c {} (expected >= 0; 0: min(4096, training context))", o.ctx);
  if (!o.dump_logits.empty() || !o.record_routing.empty() || o.json)
    fail("profile writes its results into -o DIR (routing.jsonl, summary.json); --dump-logits, --record-routing and "
         "--json are `run` options");
  if (o.n_predict >= 0 && o.n_predict < 2)
    fail("-n {}: profile needs at least 2 generated tokens (the first comes from the prompt's step; the decode "
         "figures need a decode step)", o.n_predict);
  const double disk_ceiling_gbps = machine_disk_gbps(a.machine);  // (checked before the folder is made)
  prepare_out_dir(a.out_dir);
  const std::string trace_path = (fs::path(a.out_dir) / "trace.json").string();
  const std::string summary_path = (fs::path(a.out_dir) / "summary.json").string();
  const std::string heatmap_path = (fs::path(a.out_dir) / "heatmap.svg").string();
  const std::string routing_path = (fs::path(a.out_dir) / "routing.jsonl").string();
  for (const auto& p : {trace_path, summary_path, heatmap_path, routing_path}) check_output_file(p, "profile output");
  check_tier_files(o.tiers);

  GenerateParams gp = generate_params(o);
  // Every run generates the same tokens: one seed for all (a random one when -s is not given).
  if (o.seed < 0) gp.sampling.seed = std::random_device{}();
  std::string prompt = o.prompt;
  if (!o.prompt_file.empty()) prompt = read_input_file(o.prompt_file, "prompt file");

  sched::ThreadPoolOptions po;
  po.n_threads = o.threads;
  sched::ThreadPool& pool = sched::configure_global_pool(po);
  trace::set_thread_name("main (worker 0)");
  // The DRAM ceiling, measured before the model takes the memory (the buffer is freed right after).
  const uint64_t bw_bytes = std::min<uint64_t>(a.bw_mib << 20, std::max<uint64_t>(available_memory_bytes() / 4, 16u << 20));
  const double dram_gbps = sched::measure_read_bandwidth_gbps(pool, bw_bytes, 3);

  LoadOptions lo{o.threads, o.no_mmap, o.tiers.any(), o.gemm_min_batch};
  lo.configure_pool = false;
  LoadedModel lm(o.model, lo);
  auto& model = lm.model;
  const auto& tok = lm.tok;
  const uint64_t metadata_bytes = lm.metadata_bytes;
  const auto& hp = model->hparams();
  const int64_t n_ctx = resolve_context(hp, o.ctx);
  const std::vector<int32_t> tokens = tok.encode(prompt, true, true);
  if (o.repeat_last_n == -1) gp.sampling.repeat_last_n = static_cast<int32_t>(n_ctx);
  if (static_cast<int64_t>(tokens.size()) > n_ctx)
    fail("prompt is {} tokens, longer than the context of {} (-c {})", tokens.size(), n_ctx, n_ctx);
  auto tiers = setup_tiers(*model, o.tiers, RunShape{n_ctx, static_cast<int64_t>(tokens.size()), metadata_bytes});
  const offload::ExpertCache* cache = tiers.streamed ? tiers.streamed->cache() : nullptr;

  using RoutingFn = std::function<void(int64_t, const std::vector<models::RoutingRecord>&)>;
  const auto generate = [&](const RoutingFn& routing) {
    Session session = allocate_kv_cache(hp, n_ctx, o.ctx > 0 ? fmt::format("-c {}", n_ctx) : "the default context",
                                        [&] { return Session(*model, tok, n_ctx); });
    return session.generate(tokens, gp, [](const std::string&) {}, nullptr, routing);
  };

  std::vector<double> baseline_tps;  // decode tokens/s of the untraced runs
  const size_t k = static_cast<size_t>(hp.n_expert_used);
  std::vector<std::vector<ExpertHeat>> heat(static_cast<size_t>(hp.n_layer),
                                            std::vector<ExpertHeat>(static_cast<size_t>(std::max<int64_t>(hp.n_expert, 0))));
  offload::RoutingTraceWriter routing_writer(routing_path);
  bool record_routing = false;  // the untraced runs build the same records (same work) and drop them
  const RoutingFn record = [&](int64_t pos0, const std::vector<models::RoutingRecord>& layers) {
    for (size_t il = 0; il < layers.size(); ++il) {
      const auto& r = layers[il];
      if (r.ids.empty() || k == 0) continue;
      for (size_t t = 0; t < r.ids.size() / k; ++t) {
        offload::RoutingRecord rec;
        rec.layer = static_cast<int32_t>(il);
        rec.pos = static_cast<int32_t>(pos0 + r.first_token + static_cast<int64_t>(t));
        rec.experts.assign(r.ids.begin() + static_cast<long>(t * k), r.ids.begin() + static_cast<long>((t + 1) * k));
        rec.weights.assign(r.weights.begin() + static_cast<long>(t * k), r.weights.begin() + static_cast<long>((t + 1) * k));
        if (!record_routing) continue;
        for (const int32_t e : rec.experts)
          if (e >= 0 && static_cast<size_t>(e) < heat[il].size()) ++heat[il][static_cast<size_t>(e)].routed;
        routing_writer.write(rec);
      }
    }
  };

  // Untraced runs: half before the traced one (the first also warms the page cache and the expert
  // cache), the rest after, so that a drift of the machine's load shows in their spread.
  const int n_before = (a.baseline_runs + 1) / 2;
  for (int i = 0; i < n_before; ++i) baseline_tps.push_back(generate(record).gen_tps());
  record_routing = true;
  const Counters before = read_counters(*model, tiers.streamed.get(), tiers.device.get());
  trace::clear();
  trace::set_enabled(true);
  GenerateStats st;
  try {
    st = generate(record);
  } catch (...) {
    trace::set_enabled(false);
    throw;
  }
  trace::set_enabled(false);
  const Counters after = read_counters(*model, tiers.streamed.get(), tiers.device.get());
  routing_writer.close();
  record_routing = false;
  const std::vector<trace::ThreadEvents> events = trace::collect();
  for (int i = n_before; i < a.baseline_runs; ++i) baseline_tps.push_back(generate(record).gen_tps());
  const uint64_t dropped = trace::dropped();
  const RecordCost cost = measure_record_cost();

  ProfileInputs in;
  in.model = o.model;
  in.arch = hp.arch_str;
  in.threads = pool.size();
  in.n_prompt = st.n_prompt;
  in.n_generated = st.n_generated;
  in.traced_tps = st.gen_tps();
  in.baseline_tps = baseline_tps;
  in.dram_gbps = dram_gbps;
  in.disk_ceiling_gbps = disk_ceiling_gbps;
  in.machine_file = a.machine;
  const auto sizes = models::compute_size_breakdown(lm.g.tensors());
  in.non_ffn_bytes_per_token = sizes.decode_bytes_per_token(0) - sizes.shared_experts - sizes.dense_ffn;
  in.device_name = tiers.device ? tiers.device->device().name() : "";
  in.streamed = cache != nullptr;
  in.cache_slots = cache ? cache->n_slots() : 0;
  in.cache_slot_bytes = cache ? cache->slot_bytes() : 0;
  in.whole_run = diff(after, before);
  in.dropped_events = dropped;
  in.ns_per_event_on = cost.on_ns;
  in.ns_per_scope_off = cost.off_ns;
  const ProfileSummary sum = summarize(in, events);

  const std::string trace_json = chrome_trace_json(events, fmt::format("moetier profile {}", o.model));
  write_output_file(trace_path, trace_json, "trace (profile)");
  write_output_file(summary_path, summary_json(sum).dump(2) + "\n", "summary (profile)");
  for (const auto& ev : events)
    for (const auto& e : ev.events) {
      if (e.name == nullptr || std::string_view(e.name) != "demand" || e.n_args < 2 || !e.str_value) continue;
      const auto il = static_cast<size_t>(e.args[0].value), ex = static_cast<size_t>(e.args[1].value);
      if (il >= heat.size() || ex >= heat[il].size()) continue;
      const std::string_view r = e.str_value;
      ExpertHeat& h = heat[il][ex];
      (r == "hit" ? h.hits : r == "prefetched" ? h.prefetched : h.misses) += 1;
    }
  std::vector<bool> dense(heat.size());
  for (size_t il = 0; il < heat.size(); ++il) dense[il] = !hp.is_moe_layer(static_cast<int>(il));
  write_output_file(heatmap_path,
                    expert_heatmap_svg(heat, dense, fmt::format("{} ({}): experts routed, {} prompt + {} generated tokens",
                                                                fs::path(o.model).filename().string(), hp.arch_str,
                                                                st.n_prompt, st.n_generated)),
                    "heat map (profile)");
  std::fputs(summary_table(sum).c_str(), stdout);
  std::printf("files: %s, %s, %s, %s\n", trace_path.c_str(), summary_path.c_str(), heatmap_path.c_str(),
              routing_path.c_str());
}

}  // namespace

void register_profile(CLI::App& app) {
  auto a = std::make_shared<ProfileArgs>();
  CLI::App* sub = app.add_subcommand("profile", "Run a generation traced: Perfetto trace, summary per tier, expert heat map");
  add_run_options(*sub, a->run);
  sub->add_option("-o,--out-dir", a->out_dir, "Folder for trace.json, summary.json, heatmap.svg, routing.jsonl "
                                              "(created when absent)")
      ->required()
      ->check(non_empty());
  sub->add_option("--machine", a->machine, "Machine profile JSON (`moetier calibrate`): its disk read rate is the "
                                           "NVMe ceiling (default: the reads' own rate)");
  sub->add_option("--baseline-runs", a->baseline_runs,
                  "Untraced runs of the same generation for the tracing overhead (half before the traced run, half after)")
      ->check(in_range(0, 20));
  sub->add_option("--bw-mib", a->bw_mib, "Buffer of the DRAM read-bandwidth measurement, MiB")->check(in_range(16, 65536));
  sub->callback([a, sub] {
    check_tier_options(a->run.tiers, [sub](const std::string& name) { return sub->count(name) > 0; }, false);
    profile(*a);
  });
}

}  // namespace moetier::cli
