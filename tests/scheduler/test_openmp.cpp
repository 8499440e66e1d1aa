// Tests that configuring a pool makes OpenMP (and so oneDNN) use the pool's count and PUs.
#include <doctest/doctest.h>

#include "scheduler/thread_pool.hpp"

#include <omp.h>
#include <sched.h>

#include <set>
#include <vector>

using namespace moetier::sched;

namespace {

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

TEST_CASE("openmp: after configuring, OpenMP threads == pool size, each bound to its worker's PU") {
  ThreadPool pool(CpuTopology::detect(), ThreadPoolOptions{.configure_openmp = true});
  REQUIRE(pool.pinned());
  const int n = pool.size();
  CHECK(omp_get_max_threads() == n);
  CHECK(omp_get_dynamic() == 0);
  for (int round = 0; round < 3; ++round) {  // the binding persists across parallel regions
    std::vector<std::vector<int>> bound(static_cast<size_t>(n));
    int team = 0;
#pragma omp parallel
    {
#pragma omp single
      team = omp_get_num_threads();
      const int i = omp_get_thread_num();
      if (i < n) bound[static_cast<size_t>(i)] = affinity_of_this_thread();
    }
    CHECK(team == n);
    std::set<int> distinct;
    for (int i = 0; i < n; ++i) {
      CHECK(bound[static_cast<size_t>(i)] == std::vector<int>{pool.placements()[static_cast<size_t>(i)].pu});
      if (bound[static_cast<size_t>(i)].size() == 1) distinct.insert(bound[static_cast<size_t>(i)][0]);
    }
    CHECK(distinct.size() == static_cast<size_t>(n));
  }
}

TEST_CASE("openmp: a smaller pool lowers the OpenMP thread count") {
  ThreadPool pool(CpuTopology::detect(), ThreadPoolOptions{.n_threads = 1, .configure_openmp = true});
  CHECK(omp_get_max_threads() == 1);
  int team = 0;
#pragma omp parallel
  {
#pragma omp single
    team = omp_get_num_threads();
  }
  CHECK(team == 1);
}

TEST_CASE("global pool: configured once, same object afterwards") {
  ThreadPool& p = configure_global_pool(ThreadPoolOptions{.n_threads = 1, .pin = false});
  CHECK(&global_pool() == &p);
  CHECK(global_pool().size() == 1);
  CHECK(omp_get_max_threads() == 1);
  int hits = 0;
  global_pool().parallel_for(5, [&](int64_t b, int64_t e, int) { hits += static_cast<int>(e - b); });
  CHECK(hits == 5);
}
