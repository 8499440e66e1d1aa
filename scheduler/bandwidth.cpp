// STREAM-like read bandwidth (see bandwidth.hpp). Idea from McCalpin's STREAM benchmark: time a simple
// streaming kernel over a buffer far larger than the caches; ours only reads (the decode roofline).
#include "scheduler/bandwidth.hpp"

#include "common/aligned_buffer.hpp"
#include "common/error.hpp"
#include "cpu/cpu_features.hpp"

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

namespace moetier::sched {
namespace {

constexpr size_t kLine = 64;
constexpr int64_t kLinesPerPage = 4096 / kLine;

__attribute__((target("avx512f"))) uint64_t sum_lines_avx512(const std::byte* p, int64_t n_lines) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 4 <= n_lines; i += 4) {
    a0 = _mm512_add_epi64(a0, _mm512_load_si512(p + (i + 0) * kLine));
    a1 = _mm512_add_epi64(a1, _mm512_load_si512(p + (i + 1) * kLine));
    a2 = _mm512_add_epi64(a2, _mm512_load_si512(p + (i + 2) * kLine));
    a3 = _mm512_add_epi64(a3, _mm512_load_si512(p + (i + 3) * kLine));
  }
  for (; i < n_lines; ++i) a0 = _mm512_add_epi64(a0, _mm512_load_si512(p + i * kLine));
  a0 = _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3));
  alignas(64) uint64_t lanes[8];
  _mm512_store_si512(lanes, a0);  // (_mm512_reduce_add_epi64 trips a GCC 12 -Wuninitialized false positive)
  uint64_t s = 0;
  for (uint64_t v : lanes) s += v;
  return s;
}

__attribute__((target("avx2"))) inline __m256i load(const std::byte* q) {
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(q));
}

__attribute__((target("avx2"))) uint64_t sum_lines_avx2(const std::byte* p, int64_t n_lines) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 2 <= n_lines; i += 2) {
    const std::byte* q = p + i * kLine;
    a0 = _mm256_add_epi64(a0, load(q));
    a1 = _mm256_add_epi64(a1, load(q + 32));
    a2 = _mm256_add_epi64(a2, load(q + 64));
    a3 = _mm256_add_epi64(a3, load(q + 96));
  }
  for (; i < n_lines; ++i) {
    a0 = _mm256_add_epi64(a0, load(p + i * kLine));
    a1 = _mm256_add_epi64(a1, load(p + i * kLine + 32));
  }
  a0 = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), a0);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

uint64_t sum_lines_portable(const std::byte* p, int64_t n_lines) {
  uint64_t acc[8] = {};
  for (int64_t i = 0; i < n_lines; ++i) {
    uint64_t v[8];
    std::memcpy(v, p + i * kLine, kLine);
    for (int j = 0; j < 8; ++j) acc[j] += v[j];
  }
  uint64_t s = 0;
  for (uint64_t a : acc) s += a;
  return s;
}

}  // namespace

double measure_read_bandwidth_gbps(ThreadPool& pool, size_t bytes, int n_reps) {
  if (bytes == 0) fail("measure_read_bandwidth_gbps: bytes must be > 0");
  n_reps = std::max(n_reps, 1);
  const int64_t n_lines = static_cast<int64_t>((bytes + 4095) / 4096) * kLinesPerPage;
  const size_t total = static_cast<size_t>(n_lines) * kLine;
  // Allocate without touching (AlignedBuffer zero-fills from this thread, which would place every page
  // on the caller's node): the workers first-touch their own ranges.
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  std::unique_ptr<std::byte, Free> buf(static_cast<std::byte*>(std::aligned_alloc(4096, total)));
  if (!buf) throw std::bad_alloc();
  std::byte* base = buf.get();
  pool.parallel_for(n_lines, kLinesPerPage, [&](int64_t b, int64_t e, int) {
    std::memset(base + b * kLine, 1, static_cast<size_t>(e - b) * kLine);
  });

  const auto& features = cpu::cpu_features();
  auto sum_lines = features.avx512 ? sum_lines_avx512 : features.avx2 ? sum_lines_avx2 : sum_lines_portable;
  std::vector<uint64_t> sinks(static_cast<size_t>(pool.size()) * 8, 0);  // one cache line per worker
  double best_s = 1e30;
  for (int rep = 0; rep < n_reps; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.parallel_for(n_lines, kLinesPerPage, [&](int64_t b, int64_t e, int w) {
      const std::byte* p = base + b * kLine;
      sinks[static_cast<size_t>(w) * 8] += sum_lines(p, e - b);
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best_s = std::min(best_s, s);
  }
  uint64_t check = 0;
  for (uint64_t v : sinks) check += v;
  // Every byte is 1, so each rep adds total/8 * 0x0101010101010101: a wrong sum means a wrong read.
  if (check != static_cast<uint64_t>(n_reps) * (total / 8) * 0x0101010101010101ull)
    fail("measure_read_bandwidth_gbps: checksum mismatch (buffer read incorrectly)");
  return static_cast<double>(total) / best_s / 1e9;
}

}  // namespace moetier::sched
