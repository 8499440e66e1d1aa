// `moetier bench -m MODEL -p 512 -n 128 -r 3 [-t N] [--json]`: llama-bench-style throughput table
// (pp<P> and tg<N> in tokens/s, mean ± std over -r repetitions), plus roofline ratios measured in the
// same run: decode tokens/s against (read bandwidth ÷ weight bytes one decode token reads), and prompt
// processing FLOP/s against oneDNN's GEMM peak on this machine (bf16 or f32, whichever is faster here).
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "common/aligned_buffer.hpp"
#include "common/error.hpp"
#include "cpu/onednn_matmul.hpp"
#include "runtime/cli/commands.hpp"
#include "runtime/cli/context_size.hpp"
#include "runtime/cli/option_checks.hpp"
#include "runtime/cli/weights_memory.hpp"
#include "runtime/gguf/gguf_model.hpp"
#include "runtime/models/model.hpp"
#include "runtime/models/size_breakdown.hpp"
#include "scheduler/bandwidth.hpp"
#include "scheduler/thread_pool.hpp"

namespace moetier::cli {
namespace {

struct BenchArgs {
  std::string model;
  int n_prompt = 512;
  int n_gen = 128;
  int reps = 3;
  int threads = 0;
  bool json = false;
  bool no_roofline = false;
  bool no_mmap = false;
  int64_t gemm_min_batch = 32;
  uint64_t bw_mib = 1024;
};

struct MeanStd {
  double mean = 0, std = 0;
};
MeanStd mean_std(const std::vector<double>& v) {
  MeanStd r;
  if (v.empty()) return r;
  for (double x : v) r.mean += x;
  r.mean /= static_cast<double>(v.size());
  if (v.size() > 1) {
    double s = 0;
    for (double x : v) s += (x - r.mean) * (x - r.mean);
    r.std = std::sqrt(s / static_cast<double>(v.size() - 1));
  }
  return r;
}

/// Shares of one decode repetition's wall time: the expert FFNs' compute (routed and shared experts, dense
/// FFNs: the executor's CPU groups), the attention blocks (projections included), and the rest (router,
/// norms, LM head, activation quantisation outside the FFNs, threads waiting).
struct DecodeSplit {
  double experts = 0, attention = 0, rest = 0;
};

uint64_t expert_compute_ns(const models::Model& m) {
  uint64_t ns = 0;
  for (const auto& l : m.executor().layer_stats()) ns += l.cpu_ns;
  return ns;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// GEMM peak of this machine through oneDNN (GFLOP/s) on a 512 x 4096 x 4096 problem, best of 3 after a
/// warm-up, for bf16 (X and W bf16) and for f32 (X and W f32, i.e. no conversion); the faster of the two is
/// the arithmetic ceiling for prompt processing. On CPUs without a bf16 matmul oneDNN widens bf16 per call
/// and the f32 figure is the ceiling. `label` receives "bf16" or "f32".
double onednn_peak_gflops(std::string& label) {
  cpu::OnednnMatmul mm;
  const int64_t m = 512, n = 4096, k = 4096;
  double best_of[2] = {0, 0};
  for (int f32 = 0; f32 < 2; ++f32) {
    const cpu::MatmulType t = f32 ? cpu::MatmulType::F32 : cpu::MatmulType::BF16;
    cpu::MatmulPlan& plan = mm.plan({m, n, k, t, t, false});
    const size_t es = cpu::type_size(t);
    AlignedBuffer x(static_cast<size_t>(m * k) * es), w(static_cast<size_t>(n * k) * es), y(static_cast<size_t>(m * n * 4));
    if (f32) {
      std::fill_n(x.as<float>(), m * k, 1.0f);
      std::fill_n(w.as<float>(), n * k, 0.0078125f);
    } else {
      std::fill_n(x.as<uint16_t>(), m * k, uint16_t{0x3f80});  // 1.0
      std::fill_n(w.as<uint16_t>(), n * k, uint16_t{0x3c00});  // 0.0078125
    }
    sched::global_pool().park();
    for (int r = 0; r < 4; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      mm.execute(plan, x.data(), w.data(), y.as<float>());
      const double s = seconds_since(t0);
      if (r > 0) best_of[f32] = std::max(best_of[f32], 2.0 * m * n * k / s / 1e9);
    }
  }
  label = best_of[0] >= best_of[1] ? "bf16" : "f32";
  return std::max(best_of[0], best_of[1]);
}

void bench(const BenchArgs& a) {
  if (a.n_prompt == 0 && a.n_gen == 0) fail("bench: -p 0 and -n 0 leave nothing to measure");
  if (!a.no_roofline) {  // the bandwidth buffer is allocated after the model: check it before opening it
    const uint64_t want = a.bw_mib << 20, avail = available_memory_bytes();
    if (want > avail / 2)
      fail("--bw-mib {}: the read-bandwidth buffer ({}) needs more than half of the {} of memory available; "
           "give a smaller --bw-mib or --no-roofline",
           a.bw_mib, models::format_bytes(want), models::format_bytes(avail));
  }
  sched::ThreadPoolOptions po;
  po.n_threads = a.threads;
  sched::ThreadPool& pool = sched::configure_global_pool(po);
  auto g = gguf::GgufModel::open(a.model);
  if (a.no_mmap) copy_weights_to_memory(g);
  auto model = models::load_model(g);
  model->set_gemm_min_tokens(a.gemm_min_batch);
  const auto& hp = model->hparams();
  const auto sizes = models::compute_size_breakdown(g.tensors());
  uint64_t n_params = 0;
  for (const auto& t : g.tensors()) n_params += static_cast<uint64_t>(t.n_elements());

  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(hp.n_vocab - 1));
  std::vector<double> pp, tg;
  std::vector<float> logits;
  const int64_t n_ctx = std::max(a.n_prompt, a.n_gen + 1);
  const std::string ctx_why = fmt::format("bench -p {} -n {}", a.n_prompt, a.n_gen);
  check_kv_cache_fits(hp, n_ctx, ctx_why);
  const auto new_cache = [&] { return allocate_kv_cache(hp, n_ctx, ctx_why, [&] { return model->new_cache(n_ctx); }); };
  const uint64_t decode_bytes = sizes.decode_bytes_per_token(hp.n_expert_used);
  // The read ceiling moves with other tenants of the machine: it is measured right after each counted
  // decode repetition, and each repetition gets its own roofline ratio.
  std::vector<double> rep_bw, rep_ratio;
  std::vector<DecodeSplit> rep_split;
  for (int r = 0; r < a.reps + 1; ++r) {  // the first repetition warms up and is not counted
    if (a.n_prompt > 0) {
      std::vector<int32_t> prompt(static_cast<size_t>(a.n_prompt));
      for (auto& t : prompt) t = tok(rng);
      auto cache = new_cache();
      auto t0 = std::chrono::steady_clock::now();
      model->forward(prompt, cache, logits);
      if (r > 0) pp.push_back(a.n_prompt / seconds_since(t0));
    }
    if (a.n_gen > 0) {
      auto cache = new_cache();
      int32_t t = tok(rng);
      const uint64_t attn0 = model->phase_times().attention_ns, exp0 = expert_compute_ns(*model);
      auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < a.n_gen; ++i) {
        model->forward(std::span<const int32_t>(&t, 1), cache, logits);
        t = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      }
      if (r > 0) {
        const double s = seconds_since(t0);
        tg.push_back(a.n_gen / s);
        DecodeSplit d;
        d.experts = static_cast<double>(expert_compute_ns(*model) - exp0) * 1e-9 / s;
        d.attention = static_cast<double>(model->phase_times().attention_ns - attn0) * 1e-9 / s;
        d.rest = 1.0 - d.experts - d.attention;
        rep_split.push_back(d);
        if (!a.no_roofline) {
          rep_bw.push_back(sched::measure_read_bandwidth_gbps(pool, a.bw_mib << 20, 3));
          rep_ratio.push_back(tg.back() / (rep_bw.back() * 1e9 / static_cast<double>(decode_bytes)));
        }
      }
    }
  }
  const MeanStd pps = mean_std(pp), tgs = mean_std(tg);

  double bw_gbps = 0, peak_gflops = 0;
  // Active parameters per token ~ decode bytes in elements; FLOPs per token = 2 * active weights.
  const double active_params =
      static_cast<double>(decode_bytes) / static_cast<double>(g.total_tensor_bytes()) * static_cast<double>(n_params);
  // A prompt computes the output projection (LM head) for its last token only.
  double head_params = 0;
  for (const auto& t : g.tensors())
    if (t.name == "output.weight") head_params = static_cast<double>(t.n_elements());
  if (head_params == 0)
    for (const auto& t : g.tensors())
      if (t.name == "token_embd.weight") head_params = static_cast<double>(t.n_elements());
  std::string peak_label;
  if (!a.no_roofline) {
    bw_gbps = rep_bw.empty() ? sched::measure_read_bandwidth_gbps(pool, a.bw_mib << 20, 5) : mean_std(rep_bw).mean;
    if (a.n_prompt > 0) peak_gflops = onednn_peak_gflops(peak_label);
  }
  const double roofline_tps = bw_gbps > 0 ? bw_gbps * 1e9 / static_cast<double>(decode_bytes) : 0;
  const MeanStd ratio = mean_std(rep_ratio);
  const double prompt_params = std::max(0.0, active_params - head_params) + head_params / std::max(1, a.n_prompt);
  const double pp_gflops = pps.mean * 2.0 * prompt_params / 1e9;

  const std::string name = fmt::format("{} {}", hp.arch_str, g.metadata().get_string("general.name").value_or(""));
  if (a.json) {
    nlohmann::json split_json = nlohmann::json::array();
    for (const auto& d : rep_split) split_json.push_back({{"experts", d.experts}, {"attention", d.attention}, {"rest", d.rest}});
    nlohmann::json j;
    j["schema"] = "moetier.bench/1";
    j["model"] = a.model;
    j["arch"] = hp.arch_str;
    j["size_bytes"] = g.total_tensor_bytes();
    j["n_params"] = n_params;
    j["threads"] = pool.size();
    j["weights_memory"] = g.copied() ? "anonymous" : "mmap";
    j["weights_huge_page_bytes"] = g.copied() ? anon_huge_page_bytes() : 0;
    j["tests"] = nlohmann::json::array();
    if (a.n_prompt > 0)
      j["tests"].push_back({{"test", fmt::format("pp{}", a.n_prompt)}, {"tokens_per_s", pps.mean}, {"std", pps.std},
                            {"samples", pp}, {"gflops", pp_gflops}, {"onednn_peak_gflops", peak_gflops}, {"onednn_peak_type", peak_label},
                            {"ratio_to_peak", peak_gflops > 0 ? pp_gflops / peak_gflops : 0}});
    if (a.n_gen > 0)
      j["tests"].push_back({{"test", fmt::format("tg{}", a.n_gen)}, {"tokens_per_s", tgs.mean}, {"std", tgs.std},
                            {"samples", tg}, {"decode_bytes_per_token", decode_bytes}, {"read_bandwidth_gbps", bw_gbps},
                            {"roofline_tokens_per_s", roofline_tps}, {"ratio_to_roofline", ratio.mean},
                            {"ratio_to_roofline_std", ratio.std}, {"ratio_to_roofline_per_rep", rep_ratio},
                            {"read_bandwidth_gbps_per_rep", rep_bw}, {"decode_time_split_per_rep", split_json}});
    std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return;
  }
  std::printf("| %-28s | %10s | %8s | %7s | %7s | %20s |\n", "model", "size", "params", "backend", "threads", "t/s");
  std::printf("| %s | %s | %s | %s | %s | %s |\n", std::string(28, '-').c_str(), std::string(10, '-').c_str(),
              std::string(8, '-').c_str(), std::string(7, '-').c_str(), std::string(7, '-').c_str(),
              std::string(20, '-').c_str());
  auto row = [&](const std::string& test, const MeanStd& ms) {
    std::printf("| %-28s | %10s | %7.2fM | %7s | %7d | %6s %6.2f ± %5.2f |\n", name.substr(0, 28).c_str(),
                models::format_bytes(g.total_tensor_bytes()).c_str(), static_cast<double>(n_params) / 1e6, "CPU",
                pool.size(), test.c_str(), ms.mean, ms.std);
  };
  if (a.n_prompt > 0) row(fmt::format("pp{}", a.n_prompt), pps);
  if (a.n_gen > 0) row(fmt::format("tg{}", a.n_gen), tgs);
  std::printf("\n%s\n", weights_memory_line(g).c_str());
  if (!rep_split.empty()) {
    std::printf("\ndecode time per repetition: expert FFNs (routed + shared) | attention blocks | rest (router, norms, "
                "LM head, waits)\n");
    for (size_t i = 0; i < rep_split.size(); ++i)
      std::printf("  rep %zu: %4.1f%% | %4.1f%% | %4.1f%%\n", i + 1, 100 * rep_split[i].experts,
                  100 * rep_split[i].attention, 100 * rep_split[i].rest);
  }
  if (!a.no_roofline) {
    std::printf("\nread bandwidth (same run, %d threads%s): %.1f GB/s\n", pool.size(),
                rep_bw.empty() ? "" : ", mean of the reads after each decode repetition", bw_gbps);
    if (a.n_gen > 0)
      std::printf("decode: %s read per token -> roofline %.1f tokens/s; measured %.1f tokens/s = %.2f ± %.2f of "
                  "roofline (each repetition against the bandwidth read right after it)\n",
                  models::format_bytes(decode_bytes).c_str(), roofline_tps, tgs.mean, ratio.mean, ratio.std);
    if (a.n_prompt > 0)
      std::printf("prompt: %.1f GFLOP/s (2 x %.3g weights per prompt token x tokens/s; LM head for the last token "
                  "only) vs oneDNN %s GEMM peak %.1f GFLOP/s = %.2f\n",
                  pp_gflops, prompt_params, peak_label.c_str(), peak_gflops, peak_gflops > 0 ? pp_gflops / peak_gflops : 0);
  }
}

}  // namespace

void register_bench(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  CLI::App* sub = app.add_subcommand("bench", "Throughput table (pp/tg tokens/s) with roofline ratios");
  sub->add_option("-m,--model", a->model, "GGUF model file")->required();
  // Upper bounds keep max(-p, -n + 1) an int; the KV cache for it is checked against memory in bench().
  constexpr long double kMaxBwMib = 65536;  // 64 GiB: far beyond any last-level cache
  constexpr long double kMaxTokens = std::numeric_limits<int32_t>::max() - 1;
  sub->add_option("-p,--n-prompt", a->n_prompt, "Prompt tokens per pp test (0: skip)")->check(in_range(0, kMaxTokens, "0: skip"));
  sub->add_option("-n,--n-gen", a->n_gen, "Generated tokens per tg test (0: skip)")->check(in_range(0, kMaxTokens, "0: skip"));
  sub->add_option("-r,--repetitions", a->reps, "Repetitions (after one warm-up)")->check(in_range(1, 1000000));
  sub->add_option("-t,--threads", a->threads, "Worker threads (0: one per allowed physical core)")
      ->check(in_range(0, 65536, "0: one per allowed physical core"));
  sub->add_flag("--json", a->json, "Print JSON (schema moetier.bench/1)");
  sub->add_option("--gemm-min-batch", a->gemm_min_batch, "As in `moetier run` (0: never use the prefill GEMM)")
      ->check(in_range(0, std::numeric_limits<int32_t>::max(), "0: never"));
  sub->add_option("--bw-mib", a->bw_mib, "Buffer of the read-bandwidth measurement, MiB (>> last-level cache)")
      ->check(in_range(1, kMaxBwMib));
  sub->add_flag("--no-roofline", a->no_roofline, "Skip the bandwidth and peak measurements");
  sub->add_flag("--no-mmap", a->no_mmap,
                "Copy the weights into memory on 2 MiB pages instead of mapping the file (as llama.cpp's --no-mmap; "
                "the file's page cache is dropped behind the copy)");
  sub->callback([a] { bench(*a); });
}

}  // namespace moetier::cli
