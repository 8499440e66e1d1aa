// `moetier calibrate [-m MODEL | --preset NAME [--type T]] [-t N] [--quick] [--disk-dir DIR] [-o FILE]`:
// measures this machine (runtime/tuning/calibrate.hpp) and writes the machine profile `plan` reads
// (default $XDG_CACHE_HOME/moetier/machine.json). With a model (or a synth preset, nothing written), the
// disk is measured at its expert read size and the kernels of its weight types at its expert shape; without
// one, at 1, 4 and 16 MiB and Q4_K, Q6_K, Q8_0 on a [768 x 2048] matrix. A progress line on stderr.
#include <CLI/CLI.hpp>

#include <unistd.h>

#include <cstdio>
#include <limits>
#include <memory>
#include <set>

#include "common/error.hpp"
#include "common/file_io.hpp"
#include "runtime/cli/commands.hpp"
#include "runtime/cli/option_checks.hpp"
#include "runtime/gguf/gguf_model.hpp"
#include "runtime/models/hparams.hpp"
#include "runtime/models/size_breakdown.hpp"
#include "runtime/models/tensor_roles.hpp"
#include "runtime/synth/synth_fill.hpp"
#include "runtime/synth/synth_model.hpp"
#include "runtime/tuning/calibrate.hpp"

namespace moetier::cli {
namespace {

struct CalibrateArgs {
  std::string model, preset, type = "Q4_K", out, disk_dir;
  int threads = 0;
  bool quick = false;
};

/// Read sizes, weight types and the expert shape of a model's tensors.
void shape_from_tensors(const std::vector<gguf::TensorInfo>& tensors, tuning::CalibrateOptions& o) {
  const auto sizes = models::compute_size_breakdown(tensors);
  std::set<uint64_t> reads;
  for (const auto& l : sizes.expert_layers)
    if (l.n_experts > 0) reads.insert(l.bytes / static_cast<uint64_t>(l.n_experts));
  o.read_sizes.assign(reads.begin(), reads.end());
  std::set<std::string> types;
  for (const auto& t : tensors) {
    const auto c = models::classify_tensor(t.name);
    if (t.shape.size() < 2 || c.role == models::TensorRole::Embedding || !synth::can_synthesize(t.type)) continue;
    types.insert(std::string(ggml_type_name(t.type)));
    if (c.role == models::TensorRole::RoutedExpert && c.part == models::FfnPart::Gate && t.shape.size() == 3) {
      o.n_ff = t.shape[1];
      o.n_embd = t.shape[2];
    }
  }
  o.types.assign(types.begin(), types.end());
}

/// The per-token overheads' shapes of a model: attention as its forward calls cpu::attention (MLA: one
/// KV head of the compressed width kv_lora_rank + qk_rope_dim, values kv_lora_rank), router and norms.
void shape_from_metadata(const gguf::Metadata& md, const std::string& file, tuning::CalibrateOptions& o) {
  const models::ModelHparams hp = models::load_hparams(md, file);
  if (hp.kv_lora_rank > 0) {
    o.n_head = hp.n_head, o.n_head_kv = 1, o.d_k = hp.kv_lora_rank + hp.qk_rope_dim, o.d_v = hp.kv_lora_rank;
  } else if (hp.n_head > 0 && hp.n_head_kv > 0 && hp.head_dim_k > 0 && hp.head_dim_v > 0) {
    o.n_head = hp.n_head, o.n_head_kv = hp.n_head_kv, o.d_k = hp.head_dim_k, o.d_v = hp.head_dim_v;
  }
  if (hp.n_expert > 0 && hp.n_expert_used > 0) o.n_expert = hp.n_expert, o.n_expert_used = hp.n_expert_used;
  if (hp.n_embd > 0) o.n_embd = hp.n_embd;
}

void calibrate(const CalibrateArgs& a) {
  tuning::CalibrateOptions o;
  o.max_threads = a.threads;
  o.quick = a.quick;
  o.disk_dir = a.disk_dir;
  const std::string out = a.out.empty() ? tuning::default_machine_profile_path() : a.out;
  if (out.empty()) fail("calibrate: neither XDG_CACHE_HOME nor HOME is set; give -o FILE");
  if (!a.model.empty()) {
    const auto g = gguf::GgufModel::open(a.model);
    shape_from_tensors(g.tensors(), o);
    shape_from_metadata(g.metadata(), a.model, o);
  } else if (!a.preset.empty()) {
    const auto type = ggml_type_from_name(a.type);
    if (!type) fail("calibrate: --type {}: unknown weight type", a.type);
    const auto sm = synth::build_synth_model({a.preset, *type, "", 0});
    shape_from_tensors(sm.tensor_infos(), o);
    shape_from_metadata(sm.metadata_map(), a.preset, o);
  }
  if (o.disk_dir.empty()) {
    const auto slash = out.find_last_of('/');
    o.disk_dir = slash == std::string::npos ? "." : out.substr(0, slash);
  }
  const bool tty = ::isatty(::fileno(stderr)) != 0;
  const tuning::MachineProfile p = tuning::calibrate(o, [tty](const std::string& what, int step, int n) {
    std::fprintf(stderr, tty ? "\rcalibrate: [%d/%d] %-60s" : "calibrate: [%d/%d] %s\n", step, n, what.c_str());
    std::fflush(stderr);
  });
  if (tty) std::fprintf(stderr, "\n");
  tuning::write_machine_profile(out, p);
  std::printf("DRAM read:");
  for (const auto& d : p.dram) std::printf(" %d thread(s) %.1f GB/s;", d.threads, d.gbps);
  std::printf("\ndisk read (%s, %s):", p.disk_backend.c_str(), p.disk_dir.c_str());
  for (const auto& d : p.disk)
    std::printf(" %s qd %d %.2f GB/s;", models::format_bytes(d.read_bytes).c_str(), d.queue_depth, d.gbps);
  std::printf("\nkernels (%d threads):", p.max_threads);
  for (const auto& k : p.kernels)
    if (k.tokens == 1) std::printf(" %s %.1f GB/s at 1 token;", k.type.c_str(), k.gbps);
    else std::printf(" %s %.1f GFLOP/s at %lld;", k.type.c_str(), k.gflops, static_cast<long long>(k.tokens));
  std::printf("\npool dispatch: %.2f us; per token:", p.overhead_us("pool_dispatch"));
  for (const auto& f : p.overheads)
    if (f.what == "attention") std::printf(" attention at %lld %.1f us/layer;", static_cast<long long>(f.context), f.microseconds);
    else if (f.what == "attention_prefill")
      std::printf(" prompt attention at %lld %.1f us/layer;", static_cast<long long>(f.context), f.microseconds);
  std::printf(" router %.2f us/layer; rms_norm %.3f us\nGPU: %s\nmachine profile written to %s\n", p.overhead_us("router"),
              p.overhead_us("rms_norm"), p.gpu.c_str(), out.c_str());
}

}  // namespace

void register_calibrate(CLI::App& app) {
  auto a = std::make_shared<CalibrateArgs>();
  CLI::App* sub = app.add_subcommand("calibrate", "Measure DRAM, disk and CPU kernel rates and write the machine profile");
  auto* m = sub->add_option("-m,--model", a->model, "GGUF model whose expert size and weight types to measure")->check(non_empty());
  auto* pr = sub->add_option("--preset", a->preset, "synth preset whose expert size and weight types to measure (nothing is written)")
                 ->check(non_empty());
  sub->add_option("--type", a->type, "Weight type of --preset")->capture_default_str();
  sub->add_option("-t,--threads", a->threads, "Largest thread count (0: the default worker count)")
      ->check(in_range(0, 4096, "0: the default worker count"));
  sub->add_flag("--quick", a->quick, "About 30 seconds: fewer thread counts, sizes and repetitions");
  sub->add_option("--disk-dir", a->disk_dir, "Folder of the temporary file the disk is measured on (default: the profile's folder)")
      ->check(non_empty());
  sub->add_option("-o,--output", a->out, "Profile file (default $XDG_CACHE_HOME/moetier/machine.json)")->check(non_empty());
  m->excludes(pr);
  sub->callback([a] {
    if (!a->out.empty()) check_output_file(a->out, "machine profile (-o)");
    if (!a->model.empty()) check_input_file(a->model, "model (-m)");
    calibrate(*a);
  });
}

}  // namespace moetier::cli
