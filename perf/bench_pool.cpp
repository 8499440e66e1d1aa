// bench_pool: dispatch latency of ThreadPool::parallel_for (µs per empty call) against launching
// std::threads per call, and STREAM-like read bandwidth of a buffer on 1 and N pool threads.
// Usage: bench_pool [-t N] [--bytes B] [--calls C]
#include "scheduler/bandwidth.hpp"
#include "scheduler/thread_pool.hpp"

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

using namespace moetier::sched;
using Clock = std::chrono::steady_clock;

namespace {

double us_per_call(int n_calls, auto&& body) {
  body();  // warm up
  const auto t0 = Clock::now();
  for (int i = 0; i < n_calls; ++i) body();
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / n_calls;
}

}  // namespace

int main(int argc, char** argv) {
  int n_threads = 0;
  size_t bytes = size_t{1} << 30;
  int n_calls = 20000;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-t" && i + 1 < argc) n_threads = std::atoi(argv[++i]);
    else if (a == "--bytes" && i + 1 < argc) bytes = std::strtoull(argv[++i], nullptr, 10);
    else if (a == "--calls" && i + 1 < argc) n_calls = std::atoi(argv[++i]);
    else {
      fmt::print(stderr, "usage: bench_pool [-t N] [--bytes B] [--calls C]\n");
      return 2;
    }
  }
  try {
    const CpuTopology topo = CpuTopology::detect();
    ThreadPool& pool = configure_global_pool(ThreadPoolOptions{.n_threads = n_threads});
    fmt::print("topology: {}\npool: {} workers, pinned={}\n", topo.summary(), pool.size(), pool.pinned());

    std::atomic<int64_t> sink{0};
    const double pool_us = us_per_call(n_calls, [&] {
      pool.parallel_for(pool.size(), [&](int64_t b, int64_t e, int) { sink.fetch_add(e - b, std::memory_order_relaxed); });
    });
    const double thread_us = us_per_call(std::max(n_calls / 20, 1), [&] {
      std::vector<std::thread> ts;
      for (int w = 1; w < pool.size(); ++w) ts.emplace_back([&] { sink.fetch_add(1, std::memory_order_relaxed); });
      sink.fetch_add(1, std::memory_order_relaxed);
      for (auto& t : ts) t.join();
    });
    fmt::print("dispatch: parallel_for {:.2f} us/call, std::thread launch+join {:.2f} us/call ({:.0f}x)\n", pool_us,
               thread_us, thread_us / pool_us);

    ThreadPool one(topo, ThreadPoolOptions{.n_threads = 1});
    const double bw1 = measure_read_bandwidth_gbps(one, bytes);
    const double bwn = measure_read_bandwidth_gbps(pool, bytes);
    fmt::print("read bandwidth ({:.2f} GiB): 1 thread {:.1f} GB/s, {} threads {:.1f} GB/s ({:.2f}x)\n",
               static_cast<double>(bytes) / (1u << 30), bw1, pool.size(), bwn, bwn / bw1);
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_pool: {}\n", e.what());
    return 1;
  }
  return 0;
}
