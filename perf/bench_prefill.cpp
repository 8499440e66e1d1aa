// bench_prefill: prefill GEMM throughput for expert matrices, against oneDNN on the same shape in the same
// run. For each weight type, expert shape (DeepSeek-V3, Qwen3-30B-A3B, Mixtral-8x7B gate/up and down) and
// token count it prints GFLOP/s (2 * tokens * n_out * n_in per second) of
//   gemm     moetier's prefill GEMM (cpu/prefill_gemm.hpp: dequantised f32 tiles x oneDNN per worker),
//            dequantisation included, the path `moetier run` takes for large per-expert batches;
//   vecdot   moetier's GEMV kernels in chunks of 8 tokens (activations quantised to Q8_*, integer dots),
//            the path of small batches and of llama.cpp's CPU backend;
//   dnnl-bf16  oneDNN matmul given the same weights in bf16 (X f32), all threads: the yardstick.
//            Where the CPU has no bf16 matmul, oneDNN widens W to f32 per call and runs f32 (its
//            implementation name is printed);
//   dnnl-f32   oneDNN f32 matmul on weights already in f32: the GEMM ceiling with no conversion at all;
// and the ratios gemm / dnnl-bf16 and gemm / dnnl-f32. Medians of --reps after one warm-up.
// Usage: bench_prefill [-t N] [--types Q4_K,Q8_0,BF16] [--tokens 64,512] [--reps 3] [--shapes all|qwen3]
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/aligned_buffer.hpp"
#include "perf/bench_shapes.hpp"
#include "common/error.hpp"
#include "common/half.hpp"
#include "cpu/dequant.hpp"
#include "cpu/kernel_registry.hpp"
#include "cpu/matmul.hpp"
#include "cpu/onednn_matmul.hpp"
#include "cpu/prefill_gemm.hpp"
#include "scheduler/thread_pool.hpp"

using namespace moetier;
using Clock = std::chrono::steady_clock;

namespace {

using perf::kShapes;
using perf::Shape;
using perf::split;

template <typename F>
double median_seconds(int reps, F&& f) {
  f();  // warm-up: page faults, plan creation, caches
  std::vector<double> s;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    f();
    s.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::sort(s.begin(), s.end());
  return s[s.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Prefill GEMM throughput of expert matrices vs oneDNN, measured in the same run"};
  int n_threads = 0, reps = 3;
  std::string types = "Q4_K,Q8_0,BF16", tokens = "64,512", shapes = "all";
  app.add_option("-t,--threads", n_threads, "Threads (0 = every allowed core)");
  app.add_option("--types", types, "Weight types, comma-separated");
  app.add_option("--tokens", tokens, "Tokens per expert batch, comma-separated");
  app.add_option("--reps", reps, "Timed repetitions (median)")->check(CLI::Range(1, 100));
  app.add_option("--shapes", shapes, "all, or a model name prefix (e.g. Qwen3)");
  std::string tile_arg = "auto";
  app.add_option("--tile", tile_arg, "Tile type of the prefill GEMM: auto (what run uses: MOETIER_PREFILL_TILE, default f32), f32, bf16")
      ->check(CLI::IsMember({"auto", "f32", "bf16"}));
  CLI11_PARSE(app, argc, argv);
  try {
    sched::ThreadPoolOptions po;
    po.n_threads = n_threads;
    po.configure_openmp = true;
    sched::ThreadPool& pool = sched::configure_global_pool(po);
    std::vector<std::unique_ptr<cpu::PrefillGemmWorker>> workers;
    for (int i = 0; i < pool.size(); ++i) workers.push_back(std::make_unique<cpu::PrefillGemmWorker>());
    cpu::OnednnMatmul dnnl;
    const cpu::MatmulType tile = tile_arg == "auto" ? cpu::prefill_tile_type()
                                 : tile_arg == "bf16" ? cpu::MatmulType::BF16 : cpu::MatmulType::F32;
    fmt::print("prefill GEMM tiles: {} ({})\n", cpu::to_string(tile), tile_arg);
    fmt::print("threads: {} | GFLOP/s = 2 * tokens * n_out * n_in / s, median of {}\n\n", pool.size(), reps);
    fmt::print("{:<5} {:>4} {:<14} {:<8} {:>11} {:>8} {:>8} {:>9} {:>8} {:>9} {:>8}  {}\n", "type", "tok", "model",
               "matrix", "n_out x n_in", "gemm", "vecdot", "dnnl-bf16", "dnnl-f32", "/dnnl-bf16", "/dnnl-f32",
               "oneDNN impl (bf16 | f32 | gemm tile)");
    for (const auto& tname : split(types)) {
      const auto type = ggml_type_from_name(tname);
      if (!type || !cpu::prefill_gemm_supports(*type)) fail("bench_prefill: no prefill GEMM for type '{}'", tname);
      for (const auto& tok_s : split(tokens)) {
        const int64_t m = std::atoll(tok_s.c_str());
        if (m <= 0) fail("bench_prefill: bad token count '{}'", tok_s);
        for (const Shape& s : kShapes) {
          if (shapes != "all" && std::string(s.model).rfind(shapes, 0) != 0) continue;
          const int64_t n = s.n_out, k = s.n_in;
          // Weights: Gaussian rows quantised to the type; the same values in bf16 and f32 for oneDNN.
          const size_t rb = ggml_row_bytes(*type, static_cast<uint64_t>(k));
          AlignedBuffer w(rb * static_cast<size_t>(n), 4096), wf(static_cast<size_t>(n * k) * 4, 4096),
              wb(static_cast<size_t>(n * k) * 2, 4096);
          std::mt19937 rng(7);
          std::normal_distribution<float> g(0.0f, 0.02f);
          std::vector<float> row(static_cast<size_t>(k));
          for (int64_t r = 0; r < n; ++r) {
            for (auto& v : row) v = g(rng);
            cpu::quantize_row_ref(*type, row.data(), w.data() + static_cast<size_t>(r) * rb, k);
            cpu::dequantize_row(*type, w.data() + static_cast<size_t>(r) * rb, wf.as<float>() + r * k, k);
            for (int64_t i = 0; i < k; ++i) wb.as<uint16_t>()[r * k + i] = f32_to_bf16(wf.as<float>()[r * k + i]);
          }
          std::vector<float> x(static_cast<size_t>(m * k)), y(static_cast<size_t>(m * n)), y2(y.size());
          std::normal_distribution<float> gx(0.0f, 1.0f);
          for (auto& v : x) v = gx(rng);
          // X as the prefill GEMM takes it: for Q4_1 / Q5_1 each row is followed by its 32-block sums (what
          // a Q8_1 block's s stands for; prefill_gemm_columns).
          const int64_t kx = cpu::prefill_gemm_columns(*type, k);
          std::vector<float> xg(static_cast<size_t>(m * kx));
          for (int64_t t = 0; t < m; ++t) {
            std::copy_n(x.data() + t * k, k, xg.data() + t * kx);
            for (int64_t b = 0; b < kx - k; ++b) {
              float sum = 0;
              for (int64_t i = 32 * b; i < 32 * b + 32; ++i) sum += x[static_cast<size_t>(t * k + i)];
              xg[static_cast<size_t>(t * kx + k + b)] = sum;
            }
          }
          const double flop = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);

          std::vector<uint16_t> xb(xg.size());
          const double t_gemm = median_seconds(reps, [&] {
            if (tile == cpu::MatmulType::BF16)  // X rounded once per call, as LinearExec::batch does
              pool.parallel_for(m, 1, [&](int64_t b, int64_t e, int) {
                for (int64_t i = b * kx; i < e * kx; ++i) xb[static_cast<size_t>(i)] = f32_to_bf16(xg[static_cast<size_t>(i)]);
              });
            const void* xin = tile == cpu::MatmulType::BF16 ? static_cast<const void*>(xb.data()) : xg.data();
            pool.parallel_for(n, cpu::kPrefillTileRows, [&](int64_t b, int64_t e, int wk) {
              workers[static_cast<size_t>(wk)]->rows(*type, w.data(), k, xin, tile, m, y.data(), n, b, e);
            });
          });
          cpu::ActivationBuffer act;
          const double t_vec = median_seconds(reps, [&] {
            for (int64_t t0 = 0; t0 < m; t0 += cpu::kMaxKernelTokens) {
              const int64_t mt = std::min<int64_t>(cpu::kMaxKernelTokens, m - t0);
              cpu::quantize_activations(*type, x.data() + t0 * k, mt, k, act, cpu::F32Path::kVecDot);
              pool.parallel_for(n, cpu::kGemmRowAlign, [&](int64_t b, int64_t e, int) {
                cpu::gemm_rows(*type, w.data(), k, act, y2.data() + t0 * n, n, b, e);
              });
            }
          });
          pool.park();
          cpu::MatmulPlan& pb = dnnl.plan({m, n, k, cpu::MatmulType::F32, cpu::MatmulType::BF16, false});
          const double t_bf16 = median_seconds(reps, [&] { dnnl.execute(pb, x.data(), wb.data(), y2.data()); });
          cpu::MatmulPlan& pf = dnnl.plan({m, n, k, cpu::MatmulType::F32, cpu::MatmulType::F32, false});
          const double t_f32 = median_seconds(reps, [&] { dnnl.execute(pf, x.data(), wf.data(), y2.data()); });
          // Sanity: the GEMM path against oneDNN f32 on the same dequantised weights.
          double max_rel = 0, scale = 0;
          for (size_t i = 0; i < y.size(); ++i) scale = std::max(scale, static_cast<double>(std::abs(y2[i])));
          for (size_t i = 0; i < y.size(); ++i) max_rel = std::max(max_rel, std::abs(static_cast<double>(y[i]) - y2[i]) / scale);
          if (max_rel > (tile == cpu::MatmulType::BF16 ? 2e-2 : 1e-4)) fail("bench_prefill: GEMM result differs from oneDNN f32 by {:.3g} (relative)", max_rel);

          const double gemm = flop / t_gemm / 1e9, vec = flop / t_vec / 1e9, bf = flop / t_bf16 / 1e9,
                       f32 = flop / t_f32 / 1e9;
          fmt::print("{:<5} {:>4} {:<14} {:<8} {:>11} {:>8.1f} {:>8.1f} {:>9.1f} {:>8.1f} {:>9.2f} {:>8.2f}  {} | {} | {}\n",
                     tname, m, s.model, s.what, fmt::format("{}x{}", n, k), gemm, vec, bf, f32, gemm / bf, gemm / f32,
                     pb.implementation(), pf.implementation(), workers[0]->implementation());
          std::fflush(stdout);
          dnnl.clear_plans();
        }
      }
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_prefill: {}\n", e.what());
    return 1;
  }
  return 0;
}
