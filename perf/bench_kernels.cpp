// bench_kernels: decode GEMV throughput of the CPU weight kernels (cpu/matmul.hpp) against the memory read
// bandwidth measured in the same run. For each weight type and expert shape it streams enough distinct
// copies of the matrix (default 512 MiB, >> LLC, like different experts per token) and prints the weight
// bytes/s and their ratio to the STREAM-like read bandwidth on 1 thread and on all pool threads.
// --cpu-time: time every measurement (the read ceiling included) in per-thread CPU time, rate = bytes / the
// slowest worker's CPU seconds: meaningful on a machine shared with other jobs, where wall time is not.
// Usage: bench_kernels [-t N] [--types Q4_K,Q8_0,...] [--tokens 1,8] [--mib M] [--reps R]
//                      [--isa scalar|avx2|avx512] [--cpu-time]
#include <fmt/format.h>
#include <immintrin.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/aligned_buffer.hpp"
#include "perf/bench_shapes.hpp"
#include "common/error.hpp"
#include "cpu/dequant.hpp"
#include "cpu/kernel_registry.hpp"
#include "cpu/matmul.hpp"
#include "scheduler/bandwidth.hpp"
#include "scheduler/thread_pool.hpp"

using namespace moetier;
using Clock = std::chrono::steady_clock;

namespace {

using perf::kShapes;
using perf::Shape;
using perf::split;
using perf::kPatternRows;
using perf::quantized_pattern;

// `n_copies` distinct copies of one W [n_out, n_in] (realistic values: quantised Gaussian rows, tiled).
struct Matrices {
  AlignedBuffer data;
  size_t matrix_bytes = 0;
  int64_t n_copies = 0;
  const std::byte* copy(int64_t c) const { return data.data() + static_cast<size_t>(c) * matrix_bytes; }
};

Matrices make_matrices(GgmlType type, const Shape& s, size_t total_bytes) {
  Matrices m;
  const size_t row_bytes = ggml_row_bytes(type, static_cast<uint64_t>(s.n_in));
  m.matrix_bytes = row_bytes * static_cast<size_t>(s.n_out);
  m.n_copies = std::max<int64_t>(2, static_cast<int64_t>((total_bytes + m.matrix_bytes - 1) / m.matrix_bytes));
  m.data = AlignedBuffer(m.matrix_bytes * static_cast<size_t>(m.n_copies), 4096);
  const std::vector<std::byte> pattern = quantized_pattern(type, s.n_in);
  for (int64_t c = 0; c < m.n_copies; ++c)
    for (int64_t r = 0; r < s.n_out; ++r)
      std::memcpy(m.data.data() + static_cast<size_t>(c) * m.matrix_bytes + static_cast<size_t>(r) * row_bytes,
                  pattern.data() + (r % kPatternRows) * row_bytes, row_bytes);
  return m;
}

double thread_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Runs body(worker) on every pool worker `reps` times after one warm-up; returns the best seconds of a rep:
// wall time, or (cpu_time) the largest per-worker thread CPU time of the rep.
template <typename Body>
double best_seconds(sched::ThreadPool& pool, int reps, bool cpu_time, Body&& body) {
  std::vector<double> cpu(static_cast<size_t>(pool.size()));
  auto rep = [&] {
    pool.parallel_for(pool.size(), [&](int64_t, int64_t, int w) {
      const double t0 = thread_cpu_seconds();
      body(w);
      cpu[static_cast<size_t>(w)] = thread_cpu_seconds() - t0;
    });
  };
  rep();  // warm-up (page faults, caches)
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    rep();
    const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::min(best, cpu_time ? *std::max_element(cpu.begin(), cpu.end()) : wall);
  }
  return best;
}

// STREAM-like read of [p, p + n): 256-bit loads when the CPU has AVX2.
__attribute__((target("avx2"))) uint64_t read_avx2(const std::byte* p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 128 <= n; i += 128) {
    a0 = _mm256_add_epi64(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  const __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  return static_cast<uint64_t>(_mm256_extract_epi64(s, 0) + _mm256_extract_epi64(s, 3));
}
uint64_t read_plain(const std::byte* p, size_t n) {
  uint64_t s[4] = {};
  for (size_t i = 0; i + 32 <= n; i += 32)
    for (int k = 0; k < 4; ++k) {
      uint64_t v;
      std::memcpy(&v, p + i + 8 * k, 8);
      s[k] += v;
    }
  return s[0] + s[1] + s[2] + s[3];
}

// Read bandwidth in CPU time (the ceiling of --cpu-time): each worker first-touches and reads its slice.
double read_gbps_cpu_time(sched::ThreadPool& pool, size_t bytes, int reps) {
  AlignedBuffer buf(bytes, 4096);
  pool.parallel_for(pool.size(), [&](int64_t, int64_t, int w) {
    const auto r = sched::static_partition(static_cast<int64_t>(bytes), pool.size(), w, 4096);
    std::memset(buf.data() + r.begin, w + 1, static_cast<size_t>(r.size()));
  });
  const bool avx2 = cpu::cpu_features().avx2;
  std::atomic<uint64_t> sink{0};
  const double s = best_seconds(pool, reps, true, [&](int w) {
    const auto r = sched::static_partition(static_cast<int64_t>(bytes), pool.size(), w, 4096);
    const std::byte* p = buf.data() + r.begin;
    sink += avx2 ? read_avx2(p, static_cast<size_t>(r.size())) : read_plain(p, static_cast<size_t>(r.size()));
  });
  return static_cast<double>(bytes) / s / 1e9;
}

// Best-of-reps GB/s of computing every copy's GEMV, rows split statically over the pool's workers in one
// dispatch (kernel throughput; each worker walks all copies).
double gemv_gbps(sched::ThreadPool& pool, cpu::Isa isa, GgmlType type, const Shape& s, const Matrices& m,
                 const cpu::ActivationBuffer& act, int reps, bool cpu_time) {
  std::vector<float> y(static_cast<size_t>(act.n_tokens() * s.n_out));
  const double sec = best_seconds(pool, reps, cpu_time, [&](int w) {
    const sched::ItemRange rows = sched::static_partition(s.n_out, pool.size(), w, cpu::kGemmRowAlign);
    for (int64_t c = 0; c < m.n_copies; ++c)  // workers write disjoint rows of y
      cpu::gemm_rows_isa(isa, type, m.copy(c), s.n_in, act, y.data(), s.n_out, rows.begin, rows.end);
  });
  return static_cast<double>(m.matrix_bytes) * static_cast<double>(m.n_copies) / sec / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  int n_threads = 0, reps = 3;
  size_t mib = 512;
  std::string types = "Q4_K,Q8_0,BF16,F32,Q5_K,Q6_K,Q4_0,F16,MXFP4", tokens = "1", isa_arg;
  bool cpu_time = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "-t") n_threads = std::atoi(next().c_str());
    else if (a == "--types") types = next();
    else if (a == "--tokens") tokens = next();
    else if (a == "--mib") mib = std::strtoull(next().c_str(), nullptr, 10);
    else if (a == "--reps") reps = std::atoi(next().c_str());
    else if (a == "--isa") isa_arg = next();
    else if (a == "--cpu-time") cpu_time = true;
    else {
      fmt::print(stderr, "usage: bench_kernels [-t N] [--types Q4_K,...] [--tokens 1,8] [--mib M] [--reps R] "
                         "[--isa scalar|avx2|avx512] [--cpu-time]\n");
      return 2;
    }
  }
  try {
    cpu::Isa isa = cpu::best_isa(cpu::cpu_features());
    if (isa_arg == "scalar") isa = cpu::Isa::kScalar;
    else if (isa_arg == "avx2") isa = std::min(isa, cpu::Isa::kAvx2);
    const sched::CpuTopology topo = sched::CpuTopology::detect();
    const int n_all = n_threads > 0 ? n_threads : topo.default_n_workers();
    fmt::print("cpu: {} | kernels up to {} | topology: {}\n", cpu::cpu_features().to_string(), cpu::isa_name(isa),
               topo.summary());
    std::vector<int> thread_counts{1};
    if (n_all > 1) thread_counts.push_back(n_all);

    // Read-bandwidth ceilings first, one pool per thread count.
    std::vector<double> read_gbps;
    for (int nt : thread_counts) {
      sched::ThreadPool pool(topo, sched::ThreadPoolOptions{.n_threads = nt});
      read_gbps.push_back(cpu_time ? read_gbps_cpu_time(pool, size_t{1} << 30, 5)
                                   : sched::measure_read_bandwidth_gbps(pool, size_t{1} << 30, 5));
      fmt::print("read bandwidth (1 GiB buffer, STREAM-like read{}): {} thread(s): {:.1f} GB/s\n",
                 cpu_time ? ", per CPU-second" : "", nt, read_gbps.back());
    }
    fmt::print("\n{:<6} {:<4} {:<14} {:<8} {:>12} {:>8} {:>6}", "type", "tok", "model", "matrix", "n_out x n_in",
               "MiB", "kernel");
    for (int nt : thread_counts) fmt::print(" {:>9} {:>6}", fmt::format("{}t GB/s", nt), "ratio");
    fmt::print("\n");

    for (const auto& tname : split(types)) {
      const auto type = ggml_type_from_name(tname);
      if (!type || !cpu::can_matmul(*type)) fail("bench_kernels: no CPU matmul for type '{}'", tname);
      for (const auto& tok_s : split(tokens)) {
        const int64_t n_tok = std::atoll(tok_s.c_str());
        for (const Shape& s : kShapes) {
          const Matrices m = make_matrices(*type, s, mib << 20);
          std::vector<float> x(static_cast<size_t>(n_tok * s.n_in));
          std::mt19937 rng(3);
          std::normal_distribution<float> g(0.0f, 1.0f);
          for (auto& v : x) v = g(rng);
          cpu::ActivationBuffer act;
          cpu::quantize_activations(*type, x.data(), n_tok, s.n_in, act);
          const auto* k = cpu::select_gemv(*type, static_cast<int>(std::min<int64_t>(n_tok, cpu::kMaxKernelTokens)), isa);
          fmt::print("{:<6} {:<4} {:<14} {:<8} {:>12} {:>8.1f} {:>6}", tname, n_tok, s.model, s.what,
                     fmt::format("{}x{}", s.n_out, s.n_in), static_cast<double>(m.matrix_bytes) / (1 << 20),
                     cpu::isa_name(k->isa));
          for (size_t i = 0; i < thread_counts.size(); ++i) {
            sched::ThreadPool pool(topo, sched::ThreadPoolOptions{.n_threads = thread_counts[i]});
            const double gbps = gemv_gbps(pool, isa, *type, s, m, act, reps, cpu_time);
            fmt::print(" {:>9.1f} {:>6.2f}", gbps, gbps / read_gbps[i]);
          }
          fmt::print("\n");
          std::fflush(stdout);
        }
      }
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_kernels: {}\n", e.what());
    return 1;
  }
  return 0;
}
