// offload/expert_cache.hpp — the DRAM cache of streamed experts: a fixed number of slots (byte budget /
// slot size), each a 4096-aligned buffer large enough for any expert of the catalog (plus O_DIRECT
// alignment slack), filled by the UringReader and handed out as RAII leases. A slot that is being read,
// leased, or holds a pinned expert is never evicted; among the others the eviction policy
// (offload/eviction_policy.hpp) chooses, sparing protected experts (about to be used) unless nothing else
// can go. Statistics per layer: hits, misses, bytes read, stall time.
//
// Threading: one owner thread (the one driving the reader). Leases must be released on that thread and
// before the cache is destroyed.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/aligned_buffer.hpp"
#include "offload/eviction_policy.hpp"
#include "offload/expert_catalog.hpp"
#include "offload/uring_reader.hpp"

namespace moetier::offload {

class ExpertCache;

/// Cache configuration.
struct CacheOptions {
  uint64_t budget_bytes = 0;           ///< total bytes of all slots
  uint64_t slot_bytes = 0;             ///< bytes per slot; 0: the catalog's max_slot_bytes()
  PolicyKind policy = PolicyKind::Lru;
  PolicyParams policy_params;
  std::vector<ExpertId> pinned;        ///< never evicted once loaded (loaded on first use or prefetch)
  ReaderOptions reader;
};

/// Counters of one layer (or the total). Units: requests, bytes, nanoseconds.
struct LayerCacheStats {
  uint64_t hits = 0;           ///< acquire() found the expert ready
  uint64_t inflight_hits = 0;  ///< acquire() found it being read (e.g. prefetched) and waited for the rest
  uint64_t misses = 0;         ///< acquire() had to start the read
  uint64_t prefetches = 0;     ///< reads started by prefetch()
  uint64_t evictions = 0;
  uint64_t bytes_read = 0;     ///< bytes read from files, alignment padding included
  uint64_t stall_ns = 0;       ///< time acquire() blocked waiting for reads
  LayerCacheStats& operator+=(const LayerCacheStats& o);
};

/// A hold on a ready expert: its bytes stay valid and its slot is not evicted until the lease is
/// destroyed (or reset). Movable, not copyable.
class ExpertLease {
 public:
  ExpertLease() = default;
  ExpertLease(ExpertLease&& o) noexcept { *this = std::move(o); }
  ExpertLease& operator=(ExpertLease&& o) noexcept;
  ExpertLease(const ExpertLease&) = delete;
  ExpertLease& operator=(const ExpertLease&) = delete;
  ~ExpertLease() { reset(); }

  /// Releases the hold (no-op when empty).
  void reset();
  explicit operator bool() const { return cache_ != nullptr; }
  ExpertId id() const { return id_; }
  uint32_t slot() const { return slot_; }
  size_t n_ranges() const;
  /// Bytes of the expert's range `i` (same order as the catalog's ranges), read-only.
  std::span<const std::byte> range(size_t i) const;

 private:
  friend class ExpertCache;
  ExpertLease(ExpertCache* cache, uint32_t slot, ExpertId id) : cache_(cache), slot_(slot), id_(id) {}
  ExpertCache* cache_ = nullptr;
  uint32_t slot_ = 0;
  ExpertId id_;
};

/// The expert cache. Not copyable or movable (leases point to it).
class ExpertCache {
 public:
  /// Allocates floor(budget_bytes / slot_bytes) slots and opens `files` for the reader. Throws
  /// moetier::Error when the budget holds no slot, slot_bytes is smaller than the catalog's largest
  /// expert, a pinned expert is unknown, pinned experts leave no evictable slot, or a file cannot be
  /// opened.
  ExpertCache(std::vector<std::string> files, ExpertCatalog catalog, CacheOptions opts);
  ~ExpertCache();
  ExpertCache(const ExpertCache&) = delete;
  ExpertCache& operator=(const ExpertCache&) = delete;

  /// Returns a lease on expert `id`, reading it first if needed (blocks; the wait counts as stall).
  /// Throws moetier::Error when `id` is not in the catalog, its read failed (message names file, offset,
  /// length and expert; the slot is freed, a later acquire retries), or no slot can be freed (all
  /// leased, pinned or being read with nothing in flight).
  ExpertLease acquire(ExpertId id);

  /// Starts reading `id` unless it is cached or being read; never blocks on I/O. Returns false when no
  /// slot can be freed right now. Throws moetier::Error when `id` is unknown. `needed_now` only labels
  /// the read "demand" instead of "prefetch" in a trace (common/trace_events.hpp).
  bool prefetch(ExpertId id, bool needed_now = false);

  /// Drives reads in flight without blocking (call between computations to keep the queue full).
  void poll();

  /// Marks `id` as about to be used (e.g. by the layer being computed): prefetch() never evicts it,
  /// acquire() only when nothing else can be evicted (a re-read rather than an error). Cleared by
  /// unprotect(). Throws moetier::Error when `id` is not in the catalog.
  void protect(ExpertId id) { protected_[catalog_.index(id)] = 1; }
  void unprotect(ExpertId id) { protected_[catalog_.index(id)] = 0; }

  /// True when `id` is cached and ready.
  bool ready(ExpertId id) const;
  /// True when `id` is being read (e.g. prefetched) but not ready yet.
  bool in_flight(ExpertId id) const;
  size_t n_slots() const { return slots_.size(); }
  uint64_t slot_bytes() const { return slot_bytes_; }
  const ExpertCatalog& catalog() const { return catalog_; }
  const EvictionPolicy& policy() const { return *policy_; }
  UringReader& reader() { return *reader_; }

  /// Per-layer counters, indexed by layer (size catalog().n_layers()).
  std::span<const LayerCacheStats> stats() const { return stats_; }
  LayerCacheStats total_stats() const;
  void reset_stats();

 private:
  friend class ExpertLease;
  enum class State : uint8_t { Empty, Reading, Ready, Failed };
  struct Slot {
    State state = State::Empty;
    uint32_t expert = 0;  // catalog index
    uint32_t leases = 0;
    uint64_t read_bytes = 0;
    int64_t read_start_ns = 0;  // when the read started (trace events; 0: tracing was off)
    bool demand = false;        // the read was started by acquire() (else by prefetch())
    std::string error;
  };
  static constexpr uint32_t kNone = UINT32_MAX;

  uint32_t take_slot(bool may_block);
  void start_read(uint32_t slot, uint32_t expert, bool demand);
  void on_completion(const Completion& c);
  void free_slot(uint32_t slot);
  void release(uint32_t slot);
  std::span<const std::byte> range_bytes(uint32_t slot, size_t i) const { return reader_->data(slot, i); }

  ExpertCatalog catalog_;
  CacheOptions opts_;
  uint64_t slot_bytes_ = 0;
  std::vector<AlignedBuffer> buffers_;  // declared before reader_: outlives it
  std::vector<Slot> slots_;
  std::vector<uint32_t> slot_of_;      // catalog index -> slot or kNone
  std::vector<uint8_t> pinned_;        // catalog index -> pinned
  std::vector<uint8_t> protected_;     // catalog index -> protected (see protect())
  std::vector<uint32_t> free_;         // empty slots
  std::vector<uint8_t> evictable_;     // scratch mask
  std::vector<Completion> completions_;  // scratch
  std::vector<LayerCacheStats> stats_;
  std::unique_ptr<EvictionPolicy> policy_;
  std::unique_ptr<UringReader> reader_;
  uint64_t tick_ = 0;
};

}  // namespace moetier::offload
