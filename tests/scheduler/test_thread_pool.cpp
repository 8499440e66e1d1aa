// Tests of the thread pool: static partition, coverage, determinism, exceptions, nesting, pinning.
#include <doctest/doctest.h>

#include "common/error.hpp"
#include "scheduler/thread_pool.hpp"

#include <sched.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <set>
#include <random>
#include <stdexcept>
#include <thread>

using namespace moetier;
using namespace moetier::sched;

// Counts heap allocations of this test binary (to check that parallel_for allocates nothing).
namespace {
std::atomic<int64_t> g_n_allocations{0};
}
void* operator new(size_t size) {
  g_n_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size ? size : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t size) { return operator new(size); }
void* operator new(size_t size, const std::nothrow_t&) noexcept {
  g_n_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(size ? size : 1);
}
void* operator new[](size_t size, const std::nothrow_t& tag) noexcept { return operator new(size, tag); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }

namespace {

const int64_t kSizes[] = {0, 1, 2, 3, 5, 7, 13, 16, 17, 31, 64, 97, 1000, 4099, 65537};
const int kWorkerCounts[] = {1, 2, 3, 4, 7};

std::vector<int> affinity_of_this_thread() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return {};
  std::vector<int> out;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set)) out.push_back(c);
  return out;
}

}  // namespace

TEST_CASE("static_partition: contiguous, aligned, covering, balanced") {
  for (int64_t n : kSizes)
    for (int w_count : {1, 2, 3, 4, 7, 8, 16})
      for (int64_t align : {1, 3, 16}) {
        int64_t next = 0;
        int64_t min_chunks = INT64_MAX, max_chunks = 0;
        for (int w = 0; w < w_count; ++w) {
          const ItemRange r = static_partition(n, w_count, w, align);
          CHECK(r.begin <= r.end);
          if (r.size() == 0) {
            CHECK(r.begin == std::min(next, n));
          } else {
            CHECK(r.begin == next);
            CHECK(r.begin % align == 0);
            CHECK((r.end % align == 0 || r.end == n));
            next = r.end;
          }
          const int64_t chunks = n_chunks(r.size(), align);
          min_chunks = std::min(min_chunks, chunks);
          max_chunks = std::max(max_chunks, chunks);
          CHECK(static_partition(n, w_count, w, align) == r);  // deterministic
        }
        CHECK(next == n);
        CHECK(max_chunks - min_chunks <= 1);
      }
}

TEST_CASE("parallel_for: every item exactly once, on the worker the partition names") {
  for (int n_threads : kWorkerCounts) {
    ThreadPool pool(n_threads);
    REQUIRE(pool.size() == n_threads);
    CHECK_FALSE(pool.pinned());
    for (int64_t n : kSizes)
      for (int64_t align : {1, 16}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        std::vector<std::atomic<int>> calls(static_cast<size_t>(n_threads));
        pool.parallel_for(n, align, [&](int64_t b, int64_t e, int w) {
          CHECK(ThreadPool::current_worker() == w);
          const ItemRange want = static_partition(n, n_threads, w, align);
          CHECK(b == want.begin);
          CHECK(e == want.end);
          calls[static_cast<size_t>(w)].fetch_add(1);
          for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
        });
        int bad = 0;
        for (auto& h : hits) bad += h.load() != 1;
        CHECK_MESSAGE(bad == 0, "n=" << n << " align=" << align << " threads=" << n_threads);
        for (auto& c : calls) CHECK(c.load() <= 1);
      }
    CHECK(ThreadPool::current_worker() == -1);
  }
}

TEST_CASE("parallel_for: large n and many repeated calls (spinning and sleeping paths)") {
  for (int spin_us : {0, 1000}) {
    ThreadPool pool(CpuTopology::detect(), ThreadPoolOptions{.n_threads = 3, .pin = false, .spin_us = spin_us});
    const int64_t n = 1'000'003;
    std::vector<uint8_t> hits(static_cast<size_t>(n), 0);
    pool.parallel_for(n, 64, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)] += 1;
    });
    CHECK(std::count(hits.begin(), hits.end(), 1) == n);

    std::vector<int64_t> per_worker(3 * 8, 0);  // a cache line each
    for (int call = 0; call < 1000; ++call)
      pool.parallel_for(3, [&](int64_t b, int64_t e, int w) { per_worker[static_cast<size_t>(w) * 8] += e - b; });
    for (int w = 0; w < 3; ++w) CHECK(per_worker[static_cast<size_t>(w) * 8] == 1000);
    pool.park();
    int64_t after_park = 0;
    std::atomic<int64_t> sum{0};
    pool.parallel_for(100, [&](int64_t b, int64_t e, int) { sum += e - b; });
    after_park = sum.load();
    CHECK(after_park == 100);
  }
}

TEST_CASE("parallel_for: no heap allocation per call") {
  ThreadPool pool(3);
  std::vector<int64_t> per_worker(3 * 8, 0);
  auto body = [&](int64_t b, int64_t e, int w) { per_worker[static_cast<size_t>(w) * 8] += e - b; };
  pool.parallel_for(100, body);  // warm-up
  const int64_t before = g_n_allocations.load();
  for (int call = 0; call < 1000; ++call) pool.parallel_for(100 + call, 16, body);
  const int64_t after = g_n_allocations.load();
  CHECK(after == before);
  {  // the counter does count (the barrier keeps the compiler from eliding the allocation)
    auto probe = std::make_unique<int>(1);
    asm volatile("" : : "r"(probe.get()) : "memory");
  }
  CHECK(g_n_allocations.load() > after);
  int64_t total = 0;
  for (int w = 0; w < 3; ++w) total += per_worker[static_cast<size_t>(w) * 8];
  CHECK(total == 100 + 1000 * 100 + 999 * 1000 / 2);
}

TEST_CASE("parallel_for: exceptions are rethrown on the caller, lowest worker first; pool stays usable") {
  ThreadPool pool(4);
  auto throw_on = [&](std::set<int> throwers) {
    pool.parallel_for(4, [&](int64_t, int64_t, int w) {
      if (throwers.count(w)) throw std::runtime_error("worker " + std::to_string(w));
    });
  };
  CHECK_THROWS_WITH_AS(throw_on({2}), "worker 2", std::runtime_error);
  CHECK_THROWS_WITH_AS(throw_on({3, 1, 2}), "worker 1", std::runtime_error);
  CHECK_THROWS_WITH_AS(throw_on({0, 3}), "worker 0", std::runtime_error);
  CHECK_NOTHROW(throw_on({}));
  CHECK_THROWS_AS(pool.parallel_for(10, 0, [](int64_t, int64_t, int) {}), Error);
  std::atomic<int> n{0};
  pool.parallel_for(1000, [&](int64_t b, int64_t e, int) { n += static_cast<int>(e - b); });
  CHECK(n.load() == 1000);
}

TEST_CASE("parallel_for: a nested call runs inline on the calling worker") {
  ThreadPool pool(3);
  std::vector<std::atomic<int>> inner_hits(3 * 10);
  std::atomic<int> bad_worker{0};
  pool.parallel_for(3, [&](int64_t b, int64_t, int w) {
    pool.parallel_for(10, [&](int64_t ib, int64_t ie, int iw) {
      if (iw != w || ib != 0 || ie != 10) bad_worker++;
      for (int64_t i = ib; i < ie; ++i) inner_hits[static_cast<size_t>(b * 10 + i)]++;
    });
  });
  CHECK(bad_worker.load() == 0);
  for (auto& h : inner_hits) CHECK(h.load() == 1);
  // A nested exception reaches the outer caller.
  CHECK_THROWS_AS(pool.parallel_for(3, [&](int64_t, int64_t, int w) {
    pool.parallel_for(2, [&](int64_t, int64_t, int) {
      if (w == 1) throw Error("inner");
    });
  }),
                  Error);
}

TEST_CASE("parallel_for: calls from several outside threads are serialised") {
  ThreadPool pool(3);
  std::vector<std::atomic<int64_t>> totals(2);
  std::vector<std::thread> callers;
  for (int t = 0; t < 2; ++t)
    callers.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i)
        pool.parallel_for(37, [&](int64_t b, int64_t e, int) { totals[static_cast<size_t>(t)] += e - b; });
    });
  for (auto& c : callers) c.join();
  CHECK(totals[0].load() == 500 * 37);
  CHECK(totals[1].load() == 500 * 37);
}

TEST_CASE("parallel_for: a reduction over partition chunks is bit-identical for any worker count") {
  const int64_t n = 100'003;
  const int64_t align = 16;
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> data(static_cast<size_t>(n));
  for (auto& v : data) v = dist(rng) * std::exp(dist(rng) * 8.0f);  // wide dynamic range
  auto reduce = [&](ThreadPool& pool) {
    std::vector<float> partial(static_cast<size_t>(n_chunks(n, align)));
    pool.parallel_for(n, align, [&](int64_t b, int64_t e, int) {
      for (int64_t c = b / align; c * align < e; ++c) {
        float s = 0;
        for (int64_t i = c * align; i < std::min(e, (c + 1) * align); ++i) s += data[static_cast<size_t>(i)];
        partial[static_cast<size_t>(c)] = s;
      }
    });
    float total = 0;
    for (float p : partial) total += p;
    return total;
  };
  ThreadPool one(1), two(2), five(5);
  ThreadPool pinned(CpuTopology::detect());
  const float r1 = reduce(one);
  const float r2 = reduce(two);
  CHECK(std::memcmp(&r1, &r2, sizeof(float)) == 0);
  const float r5 = reduce(five);
  CHECK(std::memcmp(&r1, &r5, sizeof(float)) == 0);
  const float rp = reduce(pinned);
  CHECK(std::memcmp(&r1, &rp, sizeof(float)) == 0);
}

TEST_CASE("thread pool: synthetic 2-socket topology groups workers by NUMA node (unpinned)") {
  TopologyOptions o;
  o.synthetic = "pack:2 numa:1 core:8 pu:2";
  const CpuTopology t = CpuTopology::detect(o);
  ThreadPool pool(t, ThreadPoolOptions{.n_threads = 6});
  CHECK_FALSE(pool.pinned());  // synthetic PUs cannot be pinned to
  REQUIRE(pool.size() == 6);
  REQUIRE(pool.n_numa_nodes() == 2);
  CHECK(std::vector<int>(pool.workers_of_node(0).begin(), pool.workers_of_node(0).end()) == std::vector<int>{0, 1, 2});
  CHECK(std::vector<int>(pool.workers_of_node(1).begin(), pool.workers_of_node(1).end()) == std::vector<int>{3, 4, 5});
  CHECK(pool.workers_of_node(2).empty());
  for (int w = 0; w < 6; ++w) CHECK(pool.placements()[static_cast<size_t>(w)].numa_node == w / 3);
  std::atomic<int> n{0};
  pool.parallel_for(6, [&](int64_t b, int64_t e, int) { n += static_cast<int>(e - b); });
  CHECK(n.load() == 6);

  ThreadPool all(t);
  CHECK(all.size() == 16);  // one per core by default
  CHECK(all.workers_of_node(1).size() == 8);
}

TEST_CASE("thread pool: pinned pool binds each worker to its own allowed PU and restores the caller") {
  const std::vector<int> before = affinity_of_this_thread();
  const CpuTopology t = CpuTopology::detect();
  {
    ThreadPool pool(t);
    CHECK(pool.pinned());
    CHECK(pool.size() == t.default_n_workers());
    std::vector<std::vector<int>> seen(static_cast<size_t>(pool.size()));
    pool.parallel_for(pool.size(), [&](int64_t, int64_t, int w) { seen[static_cast<size_t>(w)] = affinity_of_this_thread(); });
    std::set<int> distinct;
    for (int w = 0; w < pool.size(); ++w) {
      const int pu = pool.placements()[static_cast<size_t>(w)].pu;
      CHECK(seen[static_cast<size_t>(w)] == std::vector<int>{pu});
      CHECK(std::find(before.begin(), before.end(), pu) != before.end());
      distinct.insert(pu);
    }
    CHECK(distinct.size() == static_cast<size_t>(pool.size()));
    CHECK_THROWS_AS(ThreadPool(t, ThreadPoolOptions{.n_threads = t.n_pus() + 1}), Error);
  }
  CHECK(affinity_of_this_thread() == before);
}

TEST_CASE("thread pool: pin_current_thread rejects nonsense") {
  CHECK_THROWS_AS(pin_current_thread({}), Error);
  const int bogus = 100000;
  CHECK_THROWS_AS(pin_current_thread(std::span<const int>(&bogus, 1)), Error);
}
