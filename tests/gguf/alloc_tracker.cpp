// Replaces the global operator new / delete of the test executable to record the largest single
// allocation request, so tests can prove that a header claiming 2^60 elements is rejected before
// anything that large is allocated. Memory still comes from malloc (ASan keeps checking it).
#include <atomic>
#include <cstdlib>
#include <new>

#include "tests/gguf/gguf_test_util.hpp"

namespace {
std::atomic<size_t> g_max_alloc{0};

void* tracked_alloc(size_t n) {
  size_t cur = g_max_alloc.load(std::memory_order_relaxed);
  while (n > cur && !g_max_alloc.compare_exchange_weak(cur, n, std::memory_order_relaxed)) {
  }
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
}  // namespace

namespace moetier::test {
size_t max_alloc_since_reset() { return g_max_alloc.load(); }
void reset_max_alloc() { g_max_alloc.store(0); }
}  // namespace moetier::test

void* operator new(size_t n) { return tracked_alloc(n); }
void* operator new[](size_t n) { return tracked_alloc(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
