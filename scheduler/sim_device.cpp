#include "scheduler/sim_device.hpp"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <exception>

#include "common/error.hpp"

namespace moetier::sched {

namespace {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The CPUs the process was started with (taskset / cgroup), read before main() runs: the pool pins the
// thread that creates it to one PU, and a stream thread created later would inherit that one PU and
// compete with worker 0 instead of running beside it.
struct StartAffinity {
  cpu_set_t set;
  bool known = false;
};
const StartAffinity g_start_affinity = [] {
  StartAffinity a;
  CPU_ZERO(&a.set);
  a.known = sched_getaffinity(0, sizeof(a.set), &a.set) == 0;
  return a;
}();

}  // namespace

// --- SimBuffer / SimMemory -------------------------------------------------------------------------------

SimBuffer& SimBuffer::operator=(SimBuffer&& o) noexcept {
  if (this != &o) {
    release();
    memory_ = std::exchange(o.memory_, nullptr);
    storage_ = std::move(o.storage_);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

void SimBuffer::release() {
  if (memory_) memory_->free_bytes(size_);
  memory_ = nullptr;
  storage_ = AlignedBuffer();
  size_ = 0;
}

SimMemory::SimMemory(std::string device, uint64_t capacity_bytes)
    : device_(std::move(device)), capacity_(capacity_bytes) {}

SimBuffer SimMemory::allocate(uint64_t bytes, std::string_view what) {
  {
    std::lock_guard lock(mutex_);
    if (bytes > capacity_ - used_)  // used_ <= capacity_ always, so no underflow
      fail("{}: out of device memory{}{}: {} bytes requested, {} in use, capacity {}", device_,
           what.empty() ? "" : " for ", what, bytes, used_, capacity_);
    used_ += bytes;
    peak_ = std::max(peak_, used_);
  }
  SimBuffer b;
  try {
    b.storage_ = AlignedBuffer(static_cast<size_t>(bytes), 64);
  } catch (...) {
    free_bytes(bytes);
    throw;
  }
  b.memory_ = this;
  b.size_ = bytes;
  return b;
}

uint64_t SimMemory::used_bytes() const {
  std::lock_guard lock(mutex_);
  return used_;
}

uint64_t SimMemory::peak_bytes() const {
  std::lock_guard lock(mutex_);
  return peak_;
}

void SimMemory::free_bytes(uint64_t bytes) {
  std::lock_guard lock(mutex_);
  used_ -= bytes;
}

// --- SimCopyEngine ---------------------------------------------------------------------------------------

SimCopyEngine::SimCopyEngine(double gbps) : gbps_(gbps) {
  if (!std::isfinite(gbps) || gbps < 0 || (gbps > 0 && gbps < 1e-3))
    fail("simulated device: copy rate must be 0 (unpaced) or at least 0.001 GB/s, got {}", gbps);
}

uint64_t SimCopyEngine::copy_h2d(SimBuffer& dst, uint64_t offset, const void* src, uint64_t bytes) {
  if (offset > dst.size() || bytes > dst.size() - offset)
    fail("simulated device: copy of {} bytes at offset {} does not fit a buffer of {} bytes", bytes, offset,
         dst.size());
  const auto start = std::chrono::steady_clock::now();
  if (bytes > 0) std::memcpy(dst.storage_.data() + offset, src, static_cast<size_t>(bytes));
  if (gbps_ > 0) {
    // 1 GB/s = 1 byte per ns.
    // bytes / (GB/s) = ns; at >= 1 MB/s and < 2^63 bytes this stays far below int64's range.
    const double ns = std::min(std::ceil(double(bytes) / gbps_), 9.0e18);
    const auto target = start + std::chrono::nanoseconds(static_cast<int64_t>(ns));
    std::this_thread::sleep_until(target);
  }
  const uint64_t ns = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count());
  bytes_ += bytes;
  ns_ += ns;
  return ns;
}

// --- SimStream -------------------------------------------------------------------------------------------

SimStream::SimStream(std::string device, size_t capacity, std::function<void(const SimWork&, uint64_t)> handler)
    : device_(std::move(device)), handler_(std::move(handler)) {
  if (capacity < 1) fail("{}: stream queue needs at least one slot", device_);
  ring_.resize(capacity);
  spans_.resize(kSpanHistory);
  errors_.reserve(8);
  thread_ = std::thread([this] { main_loop(); });
}

SimStream::~SimStream() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  work_cv_.notify_all();
  thread_.join();
}

uint64_t SimStream::submit(const SimWork& work) {
  uint64_t ticket;
  {
    std::unique_lock lock(mutex_);
    space_cv_.wait(lock, [&] { return submitted_ - completed_ < ring_.size(); });
    ticket = ++submitted_;
    ring_[(ticket - 1) % ring_.size()] = work;
  }
  work_cv_.notify_one();
  return ticket;
}

void SimStream::wait(uint64_t ticket) {
  std::unique_lock lock(mutex_);
  if (ticket > submitted_) fail("{}: wait for ticket {}, but only {} were issued", device_, ticket, submitted_);
  done_cv_.wait(lock, [&] { return completed_ >= ticket; });
  size_t n_failed = 0;
  while (n_failed < errors_.size() && errors_[n_failed].first <= ticket) ++n_failed;
  if (n_failed == 0) return;
  std::string msg = std::move(errors_.front().second);
  errors_.erase(errors_.begin(), errors_.begin() + static_cast<std::ptrdiff_t>(n_failed));
  lock.unlock();
  if (n_failed > 1) msg += fmt::format(" (and {} more failed groups)", n_failed - 1);
  throw Error(msg);
}

void SimStream::drain() {
  std::unique_lock lock(mutex_);
  done_cv_.wait(lock, [&] { return completed_ >= submitted_; });
}

bool SimStream::done(uint64_t ticket) const {
  std::lock_guard lock(mutex_);
  return completed_ >= ticket;
}

uint64_t SimStream::last_ticket() const {
  std::lock_guard lock(mutex_);
  return submitted_;
}

std::vector<SimSpan> SimStream::recent_spans() const {
  std::lock_guard lock(mutex_);
  const uint64_t first = completed_ > kSpanHistory ? completed_ - kSpanHistory + 1 : 1;
  std::vector<SimSpan> out;
  for (uint64_t t = first; t <= completed_; ++t) {
    const SimSpan& s = spans_[(t - 1) % kSpanHistory];
    if (s.ticket == t) out.push_back(s);  // dropped items (shutdown) have no span
  }
  return out;
}

void SimStream::main_loop() {
  if (g_start_affinity.known)  // best effort: stays on the creator's CPUs if the kernel refuses
    pthread_setaffinity_np(pthread_self(), sizeof(g_start_affinity.set), &g_start_affinity.set);
  std::unique_lock lock(mutex_);
  for (;;) {
    work_cv_.wait(lock, [&] { return stop_ || completed_ < submitted_; });
    if (stop_) return;  // queued items are dropped: their x / y may already be gone
    const uint64_t ticket = completed_ + 1;
    const SimWork& work = ring_[(ticket - 1) % ring_.size()];  // not reused until completed_ passes it
    lock.unlock();
    const int64_t start = now_ns();
    std::string error;
    bool failed = false;
    try {
      handler_(work, ticket);
    } catch (const std::exception& e) {
      failed = true;
      error = e.what();
    } catch (...) {
      failed = true;
      error = fmt::format("{}: unknown exception in a stream item", device_);
    }
    const int64_t end = now_ns();
    lock.lock();
    if (failed) errors_.emplace_back(ticket, std::move(error));
    spans_[(ticket - 1) % kSpanHistory] = SimSpan{ticket, work.group.key, start, end};
    completed_ = ticket;
    space_cv_.notify_one();
    done_cv_.notify_all();
  }
}

}  // namespace moetier::sched
