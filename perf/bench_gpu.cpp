// bench_gpu: expert GEMV throughput of the CUDA kernels (kernels/ffn_kernels.hpp) against the device's memory
// bandwidth measured in the same run (issue 10: target >= 0.85 of the copy bandwidth for 1 token).
// Ceilings, measured first:
//   - device copy: cudaMemcpy device -> device of --copy-mib MiB (default 1 GiB), bytes read + bytes
//     written per second: the DRAM traffic rate a copy achieves, the ceiling of a kernel that streams weights;
//   - host -> device from pinned memory (--h2d-mib MiB): what loading a CPU-resident expert costs.
// Then for each weight type and expert shape (perf/bench_shapes.hpp: DeepSeek-V3, Qwen3-30B-A3B, Mixtral)
// it uploads enough distinct copies of the matrix (--mib MiB in all, default 256 MiB >> the L2 cache: every
// call reads its weights from DRAM, like different experts per token), queues one gemv() per copy on one
// stream, times the whole sweep with CUDA events (best of --reps), and prints the weight bytes/s and their
// ratio to the copy bandwidth. The time includes each launch, as the executor pays it per expert.
// Weights: Gaussian rows quantised on the host by cpu::quantize_row_ref (valid blocks), 16 rows tiled.
// Without a CUDA device it prints one line "no CUDA device (...)" and exits 0.
// Usage: bench_gpu [--device N] [--types Q4_K,Q8_0,BF16,MXFP4] [--tokens 1,8] [--mib M] [--reps R]
//                  [--copy-mib M] [--h2d-mib M]
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/weight_view.hpp"
#include "cpu/dequant.hpp"
#include "kernels/cuda_runtime.hpp"
#include "kernels/ffn_kernels.hpp"
#include "kernels/gpu_backend.hpp"
#include "perf/bench_shapes.hpp"

using namespace moetier;

namespace {

using perf::kShapes;
using perf::Shape;
using perf::split;
using perf::kPatternRows;
using perf::quantized_pattern;

constexpr uint64_t kMiB = uint64_t{1} << 20;

/// Best-of-`reps` seconds of `body()` (which queues work on `s`), after one warm-up run; timed with events.
template <typename Body>
double best_seconds(const gpu::Stream& s, int reps, Body&& body) {
  gpu::Event t0, t1;
  body();  // warm-up (first launches, TLB)
  s.synchronize("warm-up");
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    t0.record(s);
    body();
    t1.record(s);
    t1.synchronize("timed run");
    best = std::min(best, static_cast<double>(t1.elapsed_ms_since(t0)) / 1e3);
  }
  return best;
}

/// Device copy bandwidth, GB/s of bytes read + bytes written, copying `bytes` device -> device.
double d2d_copy_gbps(gpu::DevicePool& pool, const gpu::Stream& s, uint64_t bytes, int reps) {
  gpu::DeviceBuffer src = pool.allocate(bytes, "the copy-bandwidth source");
  gpu::DeviceBuffer dst = pool.allocate(bytes, "the copy-bandwidth destination");
  {  // defined contents (the copy's speed does not depend on them, but nothing reads uninitialised memory)
    std::vector<std::byte> ones(std::min<uint64_t>(bytes, 64 * kMiB), std::byte{1});
    for (uint64_t off = 0; off < bytes; off += ones.size())
      gpu::copy_h2d_async(src.data() + off, ones.data(), std::min<uint64_t>(ones.size(), bytes - off), s,
                          "filling the copy source");
    s.synchronize("filling the copy source");
  }
  const double sec = best_seconds(s, reps, [&] {
    gpu::copy_d2d_async(dst.data(), src.data(), bytes, s, "device-to-device copy");
  });
  return 2.0 * static_cast<double>(bytes) / sec / 1e9;
}

/// Host -> device copy bandwidth from pinned memory, GB/s.
double h2d_pinned_gbps(gpu::DevicePool& pool, const gpu::Stream& s, uint64_t bytes, int reps) {
  gpu::PinnedBuffer host(bytes, "the host-to-device bandwidth source");
  std::memset(host.data(), 1, bytes);
  gpu::DeviceBuffer dst = pool.allocate(bytes, "the host-to-device bandwidth destination");
  const double sec = best_seconds(s, reps, [&] {
    gpu::copy_h2d_async(dst.data(), host.data(), bytes, s, "host-to-device copy");
  });
  return static_cast<double>(bytes) / sec / 1e9;
}

/// One W [n_out, n_in] of `type` on the host: Gaussian rows quantised by the CPU reference, 16 rows tiled.
std::vector<std::byte> host_matrix(GgmlType type, const Shape& sh) {
  const uint64_t rb = ggml_row_bytes(type, static_cast<uint64_t>(sh.n_in));
  const std::vector<std::byte> pattern = quantized_pattern(type, sh.n_in);
  std::vector<std::byte> m(rb * static_cast<uint64_t>(sh.n_out));
  for (int64_t r = 0; r < sh.n_out; ++r) std::memcpy(m.data() + r * rb, pattern.data() + (r % kPatternRows) * rb, rb);
  return m;
}

struct GemvResult {
  double gbps = 0;
  double us_per_call = 0;
};

/// Uploads ceil(total / matrix) (>= 2) copies of one matrix (256-byte aligned each) and times gemv() over
/// all of them for each token count in `tokens`.
std::vector<GemvResult> gemv_rates(gpu::DevicePool& pool, const gpu::Stream& s, GgmlType type, const Shape& sh,
                                   const std::vector<int64_t>& tokens, uint64_t total_bytes, int reps) {
  const std::vector<std::byte> host = host_matrix(type, sh);
  const uint64_t rb = ggml_row_bytes(type, static_cast<uint64_t>(sh.n_in));
  const uint64_t matrix_bytes = host.size();
  const uint64_t stride = (matrix_bytes + 255) / 256 * 256;
  const uint64_t n_copies = std::max<uint64_t>(2, (total_bytes + matrix_bytes - 1) / matrix_bytes);
  gpu::DeviceBuffer w = pool.allocate(stride * n_copies, "the benchmark weights");
  gpu::copy_h2d_async(w.data(), host.data(), matrix_bytes, s, "uploading the weights");
  for (uint64_t c = 1; c < n_copies; ++c)
    gpu::copy_d2d_async(w.data() + c * stride, w.data(), matrix_bytes, s, "replicating the weights");

  const int64_t max_tok = *std::max_element(tokens.begin(), tokens.end());
  std::vector<float> xh(static_cast<size_t>(max_tok * sh.n_in));
  std::mt19937 rng(3);
  std::normal_distribution<float> g(0.0f, 1.0f);
  for (auto& v : xh) v = g(rng);
  gpu::DeviceBuffer x = pool.allocate(xh.size() * sizeof(float), "the benchmark activations");
  gpu::DeviceBuffer y = pool.allocate(static_cast<uint64_t>(max_tok * sh.n_out) * sizeof(float), "the outputs");
  gpu::copy_h2d_async(x.data(), xh.data(), xh.size() * sizeof(float), s, "uploading the activations");
  s.synchronize("uploading the benchmark data");

  std::vector<GemvResult> out;
  for (int64_t n_tok : tokens) {
    const double sec = best_seconds(s, reps, [&] {
      for (uint64_t c = 0; c < n_copies; ++c) {
        const DeviceWeight dw{type, w.data() + c * stride, sh.n_out, sh.n_in, rb};
        gpu::gemv(dw, reinterpret_cast<const float*>(x.data()), n_tok, reinterpret_cast<float*>(y.data()), nullptr,
                  s.handle());
      }
    });
    out.push_back({static_cast<double>(matrix_bytes * n_copies) / sec / 1e9, sec / static_cast<double>(n_copies) * 1e6});
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_gpu: expert GEMV bytes/s of the CUDA kernels vs the device copy bandwidth of the same run"};
  int device = 0, reps = 5;
  uint64_t mib = 256, copy_mib = 1024, h2d_mib = 256;
  std::string types = "Q4_K,Q8_0,BF16,MXFP4", tokens_arg = "1,8";
  app.add_option("--device", device, "CUDA device index")->check(CLI::NonNegativeNumber);
  app.add_option("--types", types, "weight types, comma-separated");
  app.add_option("--tokens", tokens_arg, "token counts, comma-separated (1..8 is the GEMV's range)");
  app.add_option("--mib", mib, "MiB of distinct weight copies per matrix (>> L2)")->check(CLI::Range(1, 1 << 16));
  app.add_option("--reps", reps, "timed repetitions (best is printed)")->check(CLI::Range(1, 1000));
  app.add_option("--copy-mib", copy_mib, "MiB of the device-to-device copy")->check(CLI::Range(1, 1 << 16));
  app.add_option("--h2d-mib", h2d_mib, "MiB of the pinned host-to-device copy")->check(CLI::Range(1, 1 << 16));
  CLI11_PARSE(app, argc, argv);

  try {
    std::vector<GgmlType> type_list;
    for (const auto& t : split(types)) {
      const auto type = ggml_type_from_name(t);
      if (!type || !cpu::can_quantize(*type)) fail("--types: '{}' is not a type the host can quantise", t);
      type_list.push_back(*type);
    }
    std::vector<int64_t> tokens;
    for (const auto& t : split(tokens_arg)) {
      const long long n = std::atoll(t.c_str());
      if (n < 1 || n > 64) fail("--tokens: '{}' is not a token count in 1..64", t);
      tokens.push_back(n);
    }
    if (tokens.empty() || type_list.empty()) fail("--types and --tokens must name at least one each");
    for (const Shape& sh : kShapes)
      for (GgmlType t : type_list)
        if (auto why = gpu::gemv_declines(t, sh.n_in)) fail("{} {}: {}", sh.model, sh.what, *why);

    // Options are checked above on any machine; only what follows needs a device.
    const int n_dev = gpu::device_count();
    if (n_dev == 0) {
      fmt::print("bench_gpu: no CUDA device ({})\n", gpu::describe());
      return 0;
    }
    if (device >= n_dev) fail("--device {}: only {} CUDA device(s)", device, n_dev);

    gpu::set_device(device);
    const gpu::MemInfo mem = gpu::mem_info();
    gpu::DevicePool pool(fmt::format("gpu:{}", device), mem.free_bytes);
    const gpu::Stream stream;
    fmt::print("device: gpu:{} {} | {:.1f} GiB, {:.1f} GiB free\n", device, gpu::device_name(),
               static_cast<double>(mem.total_bytes) / (1 << 30), static_cast<double>(mem.free_bytes) / (1 << 30));

    const uint64_t copy_bytes = std::min(copy_mib * kMiB, mem.free_bytes / 4 / kMiB * kMiB);
    const double d2d = d2d_copy_gbps(pool, stream, copy_bytes, reps);
    fmt::print("device copy bandwidth ({} MiB device->device, read + write bytes): {:.1f} GB/s (read side {:.1f} GB/s)\n",
               copy_bytes / kMiB, d2d, d2d / 2);
    const double h2d = h2d_pinned_gbps(pool, stream, h2d_mib * kMiB, reps);
    fmt::print("host->device bandwidth ({} MiB from pinned memory): {:.1f} GB/s\n", h2d_mib, h2d);
    fmt::print("GEMV rate: weight bytes read / s over {} MiB of distinct copies per matrix, one launch per copy; "
               "ratio = GEMV rate / device copy bandwidth (target >= 0.85 for 1 token)\n\n", mib);

    fmt::print("{:<6} {:<4} {:<14} {:<8} {:>12} {:>8} {:>10} {:>9} {:>6}\n", "type", "tok", "model", "matrix",
               "n_out x n_in", "MiB", "us/call", "GB/s", "ratio");
    double worst_1tok = 1e30;
    for (GgmlType t : type_list)
      for (const Shape& sh : kShapes) {
        const auto res = gemv_rates(pool, stream, t, sh, tokens, mib * kMiB, reps);
        const double mat_mib = static_cast<double>(ggml_row_bytes(t, static_cast<uint64_t>(sh.n_in)) *
                                                   static_cast<uint64_t>(sh.n_out)) / kMiB;
        for (size_t i = 0; i < tokens.size(); ++i) {
          const double ratio = res[i].gbps / d2d;
          if (tokens[i] == 1) worst_1tok = std::min(worst_1tok, ratio);
          fmt::print("{:<6} {:<4} {:<14} {:<8} {:>12} {:>8.2f} {:>10.2f} {:>9.1f} {:>6.2f}\n", ggml_type_name(t),
                     tokens[i], sh.model, sh.what, fmt::format("{}x{}", sh.n_out, sh.n_in), mat_mib,
                     res[i].us_per_call, res[i].gbps, ratio);
        }
        std::fflush(stdout);
      }
    if (worst_1tok < 1e29)
      fmt::print("\nworst 1-token ratio: {:.2f} (target 0.85: {})\n", worst_1tok, worst_1tok >= 0.85 ? "met" : "NOT met");
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_gpu: {}\n", e.what());
    return 1;
  }
  return 0;
}
