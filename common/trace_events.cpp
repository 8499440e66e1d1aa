// common/trace_events.cpp — per-thread event buffers (see trace_events.hpp).
#include "common/trace_events.hpp"

#include <array>
#include <chrono>
#include <memory>
#include <mutex>
#include <new>

namespace moetier::trace {

namespace detail {
std::atomic<bool> g_enabled{false};
}

namespace {

constexpr size_t kChunkEvents = 4096;
constexpr size_t kMaxChunks = 4096;  // 16M events per thread at most; then events are dropped

struct Chunk {
  Event events[kChunkEvents];
};

/// One thread's events: chunks appended by the owner only; `count` is published with release so that
/// collect() (acquire) sees complete events.
struct Buffer {
  int32_t tid = 0;
  std::string name;  // guarded by g_mutex
  std::array<std::atomic<Chunk*>, kMaxChunks> chunks{};
  std::atomic<size_t> count{0};
  ~Buffer() {
    for (auto& c : chunks) delete c.load(std::memory_order_relaxed);
  }
};

std::mutex g_mutex;
std::vector<std::unique_ptr<Buffer>>& buffers() {
  static std::vector<std::unique_ptr<Buffer>> b;  // never shrinks while the process runs
  return b;
}
std::atomic<uint64_t> g_dropped{0};
thread_local Buffer* tls_buffer = nullptr;
thread_local std::string tls_name;  // set_thread_name before the thread's buffer exists

Buffer* this_thread_buffer() {
  if (tls_buffer) return tls_buffer;
  try {
    auto b = std::make_unique<Buffer>();
    std::lock_guard lock(g_mutex);
    b->tid = static_cast<int32_t>(buffers().size()) + 1;
    b->name = tls_name.empty() ? "thread " + std::to_string(b->tid) : tls_name;
    tls_buffer = b.get();
    buffers().push_back(std::move(b));
  } catch (...) {
    return nullptr;
  }
  return tls_buffer;
}

}  // namespace

void set_enabled(bool on) { detail::g_enabled.store(on, std::memory_order_relaxed); }

int64_t now_ns() {
  return static_cast<int64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

void record(const Event& e) {
  if (!enabled()) return;
  Buffer* b = this_thread_buffer();
  if (!b) {
    g_dropped.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  const size_t n = b->count.load(std::memory_order_relaxed);
  const size_t ci = n / kChunkEvents;
  if (ci >= kMaxChunks) {
    g_dropped.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  Chunk* c = b->chunks[ci].load(std::memory_order_relaxed);
  if (!c) {
    c = new (std::nothrow) Chunk;
    if (!c) {
      g_dropped.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    b->chunks[ci].store(c, std::memory_order_release);
  }
  Event& out = c->events[n % kChunkEvents];
  out = e;
  if (out.track == kThisThread) out.track = b->tid;
  b->count.store(n + 1, std::memory_order_release);
}

void set_thread_name(const std::string& name) {
  try {
    if (!tls_buffer) {  // the buffer is made (and named) when the thread first records
      tls_name = name;
      return;
    }
    std::lock_guard lock(g_mutex);
    tls_buffer->name = name;
  } catch (...) {
  }
}

std::vector<ThreadEvents> collect() {
  std::lock_guard lock(g_mutex);
  std::vector<ThreadEvents> out;
  for (const auto& b : buffers()) {
    ThreadEvents t;
    t.tid = b->tid;
    t.name = b->name;
    const size_t n = b->count.load(std::memory_order_acquire);
    t.events.reserve(n);
    for (size_t i = 0; i < n; ++i)
      t.events.push_back(b->chunks[i / kChunkEvents].load(std::memory_order_acquire)->events[i % kChunkEvents]);
    out.push_back(std::move(t));
  }
  return out;
}

void clear() {
  std::lock_guard lock(g_mutex);
  for (const auto& b : buffers()) b->count.store(0, std::memory_order_release);  // chunks are reused
  g_dropped.store(0, std::memory_order_relaxed);
}

uint64_t dropped() { return g_dropped.load(std::memory_order_relaxed); }

}  // namespace moetier::trace
