// ThreadPool implementation (see thread_pool.hpp). Wake-up protocol: an epoch counter that workers spin
// on and then futex-wait on (Linux futex(2), FUTEX_WAIT_PRIVATE / FUTEX_WAKE_PRIVATE); the
// "sleepers" and "caller_sleeping" counters are checked with sequentially consistent operations on both
// sides (store-then-load), so a wake-up is never lost and the syscall is skipped when nobody sleeps.
#include "scheduler/thread_pool.hpp"

#include "common/error.hpp"
#include "common/trace_events.hpp"

#include <linux/futex.h>
#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>

namespace moetier::sched {
namespace {

static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) && std::atomic<uint32_t>::is_always_lock_free);

thread_local int tls_worker = -1;

void futex_wait(std::atomic<uint32_t>& word, uint32_t expected) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
}

void futex_wake_all(std::atomic<uint32_t>& word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}

// Spinning: pause; every 64 iterations check the deadline, and after the first ~1k iterations also
// sched_yield() then, so that an oversubscribed CPU (more runnable threads than PUs) runs the thread that
// has work instead of a spinner.
constexpr uint32_t kYieldAfter = 1024;

inline void spin_step(uint32_t iter) {
  if ((iter & 63) == 0 && iter >= kYieldAfter) sched_yield();
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// A dynamically sized cpu_set_t (glibc CPU_ALLOC), so PU indices beyond 1023 work.
class CpuSet {
 public:
  explicit CpuSet(int max_cpu) : n_cpus_(std::max(max_cpu + 1, CPU_SETSIZE)), set_(CPU_ALLOC(n_cpus_)) {
    if (!set_) throw std::bad_alloc();
    CPU_ZERO_S(bytes(), set_.get());
  }
  size_t bytes() const { return CPU_ALLOC_SIZE(n_cpus_); }
  cpu_set_t* get() { return set_.get(); }
  void set(int cpu) { CPU_SET_S(static_cast<size_t>(cpu), bytes(), set_.get()); }

 private:
  struct Free {
    void operator()(cpu_set_t* s) const { CPU_FREE(s); }
  };
  int n_cpus_;
  std::unique_ptr<cpu_set_t, Free> set_;
};

void pin_thread(pthread_t thread, std::span<const int> pus, const char* what) {
  if (pus.empty()) fail("pin {}: empty PU list", what);
  CpuSet set(*std::max_element(pus.begin(), pus.end()));
  for (int pu : pus) {
    if (pu < 0) fail("pin {}: negative PU index {}", what, pu);
    set.set(pu);
  }
  const int rc = pthread_setaffinity_np(thread, set.bytes(), set.get());
  if (rc != 0) fail("pin {} to PU {}: pthread_setaffinity_np failed: {}", what, pus.front(), std::strerror(rc));
}

}  // namespace

ItemRange static_partition(int64_t n_items, int n_workers, int worker, int64_t align) {
  const int64_t chunks = n_chunks(n_items, align);
  const int64_t base = chunks / n_workers;
  const int64_t rem = chunks % n_workers;
  const int64_t first = worker * base + std::min<int64_t>(worker, rem);
  const int64_t count = base + (worker < rem ? 1 : 0);
  return {std::min(n_items, first * align), std::min(n_items, (first + count) * align)};
}

void pin_current_thread(std::span<const int> pus) { pin_thread(pthread_self(), pus, "current thread"); }

ThreadPool::ThreadPool(int n_threads)
    : ThreadPool(CpuTopology::detect(), ThreadPoolOptions{.n_threads = n_threads, .pin = false}) {}

ThreadPool::ThreadPool(const CpuTopology& topology, const ThreadPoolOptions& options)
    : topology_(topology), options_(options) {
  if (options.n_threads < 0) fail("thread pool: thread count must be >= 0 (0 = default), got {}", options.n_threads);
  const int n = options.n_threads > 0 ? options.n_threads : topology_.default_n_workers();
  pinned_ = options.pin && topology_.is_this_system();
  placements_ = topology_.place_workers(n, /*allow_oversubscribe=*/!pinned_);
  node_workers_.resize(static_cast<size_t>(std::max(topology_.n_numa_nodes(), 1)));
  for (int w = 0; w < n; ++w) node_workers_[static_cast<size_t>(placements_[static_cast<size_t>(w)].numa_node)].push_back(w);
  if (!pinned_)
    for (auto& p : placements_) p.pu = -1;
  slots_ = std::make_unique<WorkerSlot[]>(static_cast<size_t>(n));
  caller_id_ = std::this_thread::get_id();

  if (pinned_) {
    cpu_set_t saved;
    CPU_ZERO(&saved);
    if (pthread_getaffinity_np(pthread_self(), sizeof(saved), &saved) == 0) {
      for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
        if (CPU_ISSET(cpu, &saved)) saved_caller_mask_.push_back(static_cast<unsigned long>(cpu));
    }
  }
  try {
    start_threads();
    if (options.configure_openmp) configure_openmp();
  } catch (...) {
    stop_threads();
    throw;
  }
}

ThreadPool::~ThreadPool() { stop_threads(); }

void ThreadPool::start_threads() {
  const int n = size();
  threads_.reserve(static_cast<size_t>(n - 1));
  for (int w = 1; w < n; ++w) {
    threads_.emplace_back([this, w] { worker_main(w); });
    if (pinned_) {
      const int pu = placements_[static_cast<size_t>(w)].pu;
      pin_thread(threads_.back().native_handle(), std::span<const int>(&pu, 1), "worker thread");
    }
  }
  if (pinned_) {
    const int pu = placements_[0].pu;
    pin_thread(pthread_self(), std::span<const int>(&pu, 1), "caller thread (worker 0)");
  }
}

void ThreadPool::stop_threads() {
  stop_.store(true, std::memory_order_seq_cst);
  epoch_.fetch_add(1, std::memory_order_seq_cst);
  futex_wake_all(epoch_);
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
  if (!saved_caller_mask_.empty() && std::this_thread::get_id() == caller_id_) {
    std::vector<int> pus(saved_caller_mask_.begin(), saved_caller_mask_.end());
    try {
      pin_thread(pthread_self(), pus, "caller thread (restore)");
    } catch (const Error&) {
      // Best effort in a destructor: the affinity stays at worker 0's PU.
    }
    saved_caller_mask_.clear();
  }
}

void ThreadPool::configure_openmp() {
  const int n = size();
  omp_set_dynamic(0);
  omp_set_num_threads(n);
  if (!pinned_) return;
  std::vector<CpuSet> sets;  // built outside the parallel region: nothing in it may throw
  sets.reserve(static_cast<size_t>(n));
  for (const auto& p : placements_) {
    sets.emplace_back(p.pu);
    sets.back().set(p.pu);
  }
  std::atomic<int> failures{0};
  std::atomic<int> team_size{0};
#pragma omp parallel num_threads(n)
  {
    const int i = omp_get_thread_num();
    if (i == 0) team_size.store(omp_get_num_threads());
    CpuSet& set = sets[static_cast<size_t>(i % n)];
    if (pthread_setaffinity_np(pthread_self(), set.bytes(), set.get()) != 0) failures.fetch_add(1);
  }
  if (failures.load() != 0) fail("thread pool: pinning {} of {} OpenMP threads failed", failures.load(), n);
  if (team_size.load() != n) fail("thread pool: OpenMP started {} threads, expected {}", team_size.load(), n);
}

std::span<const int> ThreadPool::workers_of_node(int node) const {
  if (node < 0 || node >= n_numa_nodes()) return {};
  return node_workers_[static_cast<size_t>(node)];
}

int ThreadPool::current_worker() { return tls_worker; }

void ThreadPool::park() { park_epoch_.store(epoch_.load(std::memory_order_acquire), std::memory_order_release); }

void ThreadPool::run_part(int worker) {
  const ItemRange r = static_partition(job_items_, size(), worker, job_align_);
  if (r.begin >= r.end) return;
  const int saved = tls_worker;
  tls_worker = worker;
  trace::Scope span("task", "pool");
  span.arg("items", r.end - r.begin);
  try {
    job_fn_(r.begin, r.end, worker);
  } catch (...) {
    slots_[static_cast<size_t>(worker)].error = std::current_exception();
  }
  tls_worker = saved;
}

uint32_t ThreadPool::wait_for_epoch(uint32_t seen) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::microseconds(options_.spin_us);
  for (uint32_t iter = 1;; ++iter) {
    const uint32_t e = epoch_.load(std::memory_order_acquire);
    if (e != seen) return e;
    if (park_epoch_.load(std::memory_order_relaxed) == seen) break;
    if ((iter & 63) == 0 && Clock::now() >= deadline) break;
    spin_step(iter);
    cpu_relax();
  }
  sleepers_.fetch_add(1, std::memory_order_seq_cst);
  uint32_t e;
  while ((e = epoch_.load(std::memory_order_seq_cst)) == seen) futex_wait(epoch_, seen);
  sleepers_.fetch_sub(1, std::memory_order_relaxed);
  return e;
}

void ThreadPool::worker_main(int worker) {
  trace::set_thread_name("worker " + std::to_string(worker));
  uint32_t seen = 0;
  for (;;) {
    const int64_t wait0 = trace::enabled() ? trace::now_ns() : 0;
    seen = wait_for_epoch(seen);
    if (wait0 != 0 && trace::enabled()) {  // idle: from the end of the last range to the next job
      trace::Event e;
      e.name = "wait";
      e.cat = "pool";
      e.begin_ns = wait0;
      e.dur_ns = trace::now_ns() - wait0;
      trace::record(e);
    }
    if (stop_.load(std::memory_order_acquire)) return;
    run_part(worker);
    if (pending_.fetch_sub(1, std::memory_order_seq_cst) == 1 && caller_sleeping_.load(std::memory_order_seq_cst) != 0)
      futex_wake_all(pending_);
  }
}

void ThreadPool::run(int64_t n_items, int64_t align, RangeFn fn) {
  if (align < 1) fail("parallel_for: align must be >= 1, got {}", align);
  if (n_items <= 0) return;
  if (tls_worker >= 0) {  // nested: inline on the calling worker
    fn(0, n_items, tls_worker);
    return;
  }
  std::lock_guard lock(call_mutex_);
  const int n = size();
  if (n == 1 || n_chunks(n_items, align) == 1) {
    tls_worker = 0;
    struct Reset {
      ~Reset() { tls_worker = -1; }
    } reset;
    fn(0, n_items, 0);
    return;
  }
  job_fn_ = fn;
  job_items_ = n_items;
  job_align_ = align;
  pending_.store(static_cast<uint32_t>(n - 1), std::memory_order_relaxed);
  epoch_.fetch_add(1, std::memory_order_seq_cst);  // publishes the job (release) to the workers
  if (sleepers_.load(std::memory_order_seq_cst) > 0) futex_wake_all(epoch_);

  run_part(0);

  // Wait for the other workers: spin, then sleep on pending_.
  trace::Scope join("join", "pool");
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::microseconds(options_.spin_us);
  for (uint32_t iter = 1; pending_.load(std::memory_order_acquire) != 0; ++iter) {
    if ((iter & 63) == 0 && Clock::now() >= deadline) {
      caller_sleeping_.store(1, std::memory_order_seq_cst);
      uint32_t p;
      while ((p = pending_.load(std::memory_order_seq_cst)) != 0) futex_wait(pending_, p);
      caller_sleeping_.store(0, std::memory_order_relaxed);
      break;
    }
    spin_step(iter);
    cpu_relax();
  }

  for (int w = 0; w < n; ++w) {
    auto& slot = slots_[static_cast<size_t>(w)];
    if (slot.error) {
      std::exception_ptr first = std::move(slot.error);
      slot.error = nullptr;
      for (int v = w + 1; v < n; ++v) slots_[static_cast<size_t>(v)].error = nullptr;
      std::rethrow_exception(first);
    }
  }
}

namespace {
std::mutex g_pool_mutex;
std::unique_ptr<ThreadPool> g_pool;
std::atomic<ThreadPool*> g_pool_ptr{nullptr};
}  // namespace

ThreadPool& configure_global_pool(const ThreadPoolOptions& options, const TopologyOptions& topology_options) {
  std::lock_guard lock(g_pool_mutex);
  g_pool_ptr.store(nullptr, std::memory_order_release);
  g_pool.reset();
  ThreadPoolOptions opts = options;
  opts.configure_openmp = true;
  g_pool = std::make_unique<ThreadPool>(CpuTopology::detect(topology_options), opts);
  g_pool_ptr.store(g_pool.get(), std::memory_order_release);
  return *g_pool;
}

ThreadPool& global_pool() {
  if (ThreadPool* p = g_pool_ptr.load(std::memory_order_acquire)) return *p;
  std::lock_guard lock(g_pool_mutex);
  if (!g_pool) {
    ThreadPoolOptions opts;
    opts.configure_openmp = true;
    g_pool = std::make_unique<ThreadPool>(CpuTopology::detect(), opts);
    g_pool_ptr.store(g_pool.get(), std::memory_order_release);
  }
  return *g_pool;
}

}  // namespace moetier::sched
