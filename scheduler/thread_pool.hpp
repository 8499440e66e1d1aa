// ThreadPool: the process's ONE set of pinned worker threads. The calling thread participates as worker
// 0; workers 1..n-1 are std::threads pinned (pthread affinity) to the PUs that CpuTopology::place_workers
// chose (one per allowed physical core by default), grouped by NUMA node. parallel_for splits
// [0, n_items) into a STATIC, deterministic partition of contiguous ranges aligned to `align` items
// (chunk boundaries depend only on n_items, align and the worker count, never on timing), so outputs
// of different workers never share a cache line when rows are aligned, and reductions that combine
// per-chunk partials in chunk order give bit-identical results for any worker count.
//
// Dispatch is low-latency and allocation-free: idle workers spin on an epoch counter for `spin_us`,
// then sleep on a futex; the caller spins, then sleeps, waiting for the last worker. Exceptions thrown
// by `fn` never cross threads unchecked: each worker captures its own, the caller waits for all workers
// and rethrows the one of the lowest worker index. A parallel_for called from inside a running
// parallel_for (any pool) runs inline as one range on the calling worker. Calls from several outside
// threads are serialised.
//
// OpenMP (oneDNN 2.6 as built by Debian uses OpenMP threading): with `configure_openmp` (always for the
// global pool) the constructor calls omp_set_dynamic(0) and omp_set_num_threads(size()) on the
// constructing thread and pins OpenMP thread i to worker i's PU, so oneDNN's threads are ours and never
// oversubscribe. Rules that follow: call oneDNN only from the pool's caller thread (the nthreads ICV is
// per thread), never from inside parallel_for (no nested parallelism), and call park() before a long
// oneDNN call so our idle workers stop spinning on the PUs the OpenMP threads need. libgomp also spins
// after each region (GOMP_SPINCOUNT); OMP_WAIT_POLICY=passive in the environment avoids that.
//
// Caveat: pinning the caller thread changes the affinity that threads it creates later inherit (one
// PU). Threads created for other purposes (I/O) should call pin_current_thread() with the PUs they need.
#pragma once

#include "scheduler/topology.hpp"

#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <type_traits>
#include <vector>

namespace moetier::sched {

/// Half-open item range [begin, end).
struct ItemRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
  bool operator==(const ItemRange&) const = default;
};

/// The static partition used by parallel_for: [0, n_items) is cut into ceil(n_items / align) chunks of
/// `align` items (the last one shorter), and worker w gets a contiguous run of chunks: the first
/// (n_chunks % n_workers) workers get one chunk more. Returns an empty range for workers without work.
/// Requires n_items >= 0, n_workers >= 1, 0 <= worker < n_workers, align >= 1 (unchecked: hot path).
ItemRange static_partition(int64_t n_items, int n_workers, int worker, int64_t align = 1);

/// Number of chunks static_partition cuts [0, n_items) into: ceil(n_items / align).
inline int64_t n_chunks(int64_t n_items, int64_t align = 1) { return (n_items + align - 1) / align; }

/// A non-owning reference to a callable void(int64_t begin, int64_t end, int worker); no allocation.
class RangeFn {
 public:
  RangeFn() = default;
  template <typename F>
    requires(!std::is_same_v<std::remove_cvref_t<F>, RangeFn>)
  RangeFn(F& f)  // NOLINT: implicit from any callable lvalue; the callable must outlive the call
      : obj_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
        call_([](void* o, int64_t b, int64_t e, int w) { (*static_cast<F*>(o))(b, e, w); }) {}
  void operator()(int64_t begin, int64_t end, int worker) const { call_(obj_, begin, end, worker); }

 private:
  void* obj_ = nullptr;
  void (*call_)(void*, int64_t, int64_t, int) = nullptr;
};

/// Pins the calling thread to the given PUs (OS indices). Throws moetier::Error if the kernel refuses
/// (a PU outside the allowed set) or `pus` is empty.
void pin_current_thread(std::span<const int> pus);

/// Options of a ThreadPool.
struct ThreadPoolOptions {
  int n_threads = 0;              ///< worker count including the caller; 0 = topology.default_n_workers()
  bool pin = true;                ///< pin workers to their PUs (forced off on synthetic topologies)
  bool configure_openmp = false;  ///< set the OpenMP thread count to size() and pin OpenMP threads likewise
  int spin_us = 50;               ///< how long idle workers (and the waiting caller) spin before sleeping
};

/// The pool. Not copyable or movable. See the file comment for the threading contract.
class ThreadPool {
 public:
  /// Starts size()-1 threads placed by topology.place_workers(). Throws moetier::Error for a bad count
  /// (< 1, or more than the allowed PUs when pinning) or when pinning/OpenMP binding fails.
  explicit ThreadPool(const CpuTopology& topology, const ThreadPoolOptions& options = {});
  /// Unpinned pool of n_threads workers on the running machine's topology (tests); may exceed its PUs.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(placements_.size()); }
  bool pinned() const { return pinned_; }
  const CpuTopology& topology() const { return topology_; }
  /// Where each worker runs (pu = -1 when unpinned), index = worker index.
  const std::vector<WorkerPlacement>& placements() const { return placements_; }
  int n_numa_nodes() const { return static_cast<int>(node_workers_.size()); }
  /// Worker indices on NUMA node `node` (dense index, as in CpuTopology), ascending; empty when none.
  std::span<const int> workers_of_node(int node) const;

  /// Calls fn(begin, end, worker) once for each non-empty range of static_partition(n_items, size(), w,
  /// align), on worker w (w = 0 on the calling thread), and returns when all have finished. With
  /// n_items == size() and align 1, worker w gets exactly item w. n_items <= 0: nothing is called.
  /// Rethrows the exception of the lowest-index worker whose fn threw (after all have finished).
  /// Nested (called from inside fn): runs fn(0, n_items, current worker) inline. Throws
  /// moetier::Error if align < 1.
  template <typename Fn>
  void parallel_for(int64_t n_items, int64_t align, Fn&& fn) {
    static_assert(std::is_invocable_v<Fn&, int64_t, int64_t, int>, "fn(int64_t begin, int64_t end, int worker)");
    run(n_items, align, RangeFn(fn));
  }
  template <typename Fn>
  void parallel_for(int64_t n_items, Fn&& fn) {
    parallel_for(n_items, 1, std::forward<Fn>(fn));
  }

  /// Non-template entry of parallel_for.
  void run(int64_t n_items, int64_t align, RangeFn fn);

  /// Makes spinning idle workers sleep now (they wake on the next parallel_for). Call before handing
  /// the cores to OpenMP / oneDNN for a long call.
  void park();

  /// Index of the worker the calling thread is running a parallel_for range as, or -1 outside one.
  static int current_worker();

 private:
  struct alignas(64) WorkerSlot {
    std::exception_ptr error;
  };
  void start_threads();
  void stop_threads();
  void worker_main(int worker);
  uint32_t wait_for_epoch(uint32_t seen);
  void run_part(int worker);
  void configure_openmp();

  CpuTopology topology_;
  ThreadPoolOptions options_;
  bool pinned_ = false;
  std::vector<WorkerPlacement> placements_;
  std::vector<std::vector<int>> node_workers_;
  std::vector<std::thread> threads_;
  std::unique_ptr<WorkerSlot[]> slots_;
  std::mutex call_mutex_;  // one outside caller at a time
  std::vector<unsigned long> saved_caller_mask_;  // affinity of the constructing thread, restored on exit
  std::thread::id caller_id_;

  // Job description: written by the caller before the epoch release, read by workers after it.
  RangeFn job_fn_;
  int64_t job_items_ = 0;
  int64_t job_align_ = 1;

  alignas(64) std::atomic<uint32_t> epoch_{0};
  std::atomic<uint32_t> park_epoch_{~0u};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
  alignas(64) std::atomic<uint32_t> pending_{0};
  std::atomic<int> caller_sleeping_{0};
};

/// The process-wide pool. Created on first use with the default options (all allowed cores, pinned,
/// OpenMP configured) unless configure_global_pool() ran first. Cache the reference in hot code.
ThreadPool& global_pool();

/// (Re)creates the process-wide pool (the CLI calls this once at startup with `-t N`); `configure_openmp`
/// is forced on. Invalidates references to a previous global pool: call before any use. Throws as
/// ThreadPool's constructor and CpuTopology::detect.
ThreadPool& configure_global_pool(const ThreadPoolOptions& options, const TopologyOptions& topology_options = {});

}  // namespace moetier::sched
