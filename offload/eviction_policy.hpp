// offload/eviction_policy.hpp — which cached expert to drop when a slot is needed. One small interface
// shared by the expert cache (offload/expert_cache.hpp) and the trace simulator (offload/cache_sim.hpp),
// so a policy's simulated hit rate is the hit rate the cache gets. A policy only ranks slots: the caller
// decides which slots may be evicted at all (never pinned, leased or still being read) and passes that
// as a mask.
//
// Policies (ties always go to the least recently used, then the lowest slot):
//  - lru:        least recently used (Belady & Mattson's classic).
//  - lfu:        least frequently used, counting every demand request of the expert since reset, also
//                while it was not cached ("perfect LFU"; expert popularity in MoE routing is stable over a
//                run, so history matters more than the in-cache count).
//  - freq_decay: frequency with exponential decay: score = sum over past requests of 2^(-age/half_life),
//                age in requests (ticks). Adapts to a drifting distribution; use it with a pinned set of
//                hot experts (CacheOptions::pinned) chosen from a trace or a placement plan.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "offload/expert_id.hpp"

namespace moetier::offload {

/// "No slot" (choose_victim found nothing evictable).
inline constexpr uint32_t kNoSlot = UINT32_MAX;

enum class PolicyKind { Lru, Lfu, FreqDecay };

/// "lru", "lfu", "freq_decay".
std::string_view policy_name(PolicyKind kind);
/// Parses a policy name (as policy_name prints it). Throws moetier::Error naming the accepted names.
PolicyKind parse_policy(std::string_view name);

/// Tunables of the policies.
struct PolicyParams {
  double half_life_ticks = 1024.0;  ///< freq_decay: requests after which a request's weight halves
};

/// Ranks occupied slots for eviction. Ticks are the caller's request counter (strictly increasing over
/// calls). Calls never allocate except when an expert is seen for the first time (lfu, freq_decay).
class EvictionPolicy {
 public:
  virtual ~EvictionPolicy() = default;
  virtual std::string_view name() const = 0;
  /// Forgets all history; slots 0..n_slots-1 are empty.
  virtual void reset(size_t n_slots) = 0;
  /// `id`, cached in `slot`, was requested at `tick`.
  virtual void on_hit(ExpertId id, uint32_t slot, uint64_t tick) = 0;
  /// `id` is being loaded into (empty) `slot` at `tick`; `demand`: because it was requested (false: a
  /// prefetch, which does not count as a use).
  virtual void on_insert(ExpertId id, uint32_t slot, uint64_t tick, bool demand) = 0;
  /// `slot` (holding `id`) was emptied.
  virtual void on_evict(ExpertId id, uint32_t slot) = 0;
  /// The slot to evict among those with evictable[slot] != 0 (all of them occupied), or kNoSlot.
  virtual uint32_t choose_victim(std::span<const uint8_t> evictable, uint64_t tick) = 0;
};

/// Creates a policy of `kind`.
std::unique_ptr<EvictionPolicy> make_policy(PolicyKind kind, PolicyParams params = {});

}  // namespace moetier::offload
