// offload/cache_sim.hpp — replays a sequence of expert requests (a decode-ordered routing trace) against
// an expert cache of n slots under an eviction policy (the same EvictionPolicy objects the ExpertCache
// uses), or under Belady's optimal policy (evict the expert whose next use is furthest in the future;
// Belady 1966, "A study of replacement algorithms for a virtual-storage computer"). Returns hit rates.
//
// Model: one pool of slots for all layers; an expert is loaded on a miss (no prefetch); experts of the
// current step (same ExpertRequest::group) are in use together and are never evicted for each other
// (as leases would prevent); pinned experts, once loaded, are never evicted. When no slot can be freed
// the request is a miss served without caching. These constraints are the same for every policy, so
// Belady's hit rate bounds every policy's.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "offload/eviction_policy.hpp"
#include "offload/routing_trace.hpp"

namespace moetier::offload {

/// Outcome of one replay.
struct SimResult {
  std::string policy;  ///< policy name, or "belady"
  size_t n_slots = 0;
  uint64_t hits = 0;
  uint64_t misses = 0;
  double hit_rate() const { return hits + misses == 0 ? 0.0 : static_cast<double>(hits) / double(hits + misses); }
};

/// Replays `requests` with `n_slots` slots under `policy` (reset first). Throws moetier::Error when
/// n_slots is 0.
SimResult simulate(std::span<const ExpertRequest> requests, size_t n_slots, EvictionPolicy& policy,
                   std::span<const ExpertId> pinned = {});

/// Replays `requests` under Belady's optimal replacement (furthest next use; never-used-again first).
SimResult simulate_belady(std::span<const ExpertRequest> requests, size_t n_slots,
                          std::span<const ExpertId> pinned = {});

/// LRU, LFU, freq_decay and Belady for each slot count, in that order per slot count.
std::vector<SimResult> simulate_all(std::span<const ExpertRequest> requests, std::span<const size_t> slot_counts,
                                    PolicyParams params = {}, std::span<const ExpertId> pinned = {});

/// Requests without grouping (each its own group), e.g. for hand-written sequences.
std::vector<ExpertRequest> ungrouped(std::span<const ExpertId> ids);

}  // namespace moetier::offload
