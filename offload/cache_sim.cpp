// offload/cache_sim.cpp — trace-driven cache simulation (see cache_sim.hpp).
#include "offload/cache_sim.hpp"

#include <unordered_map>

#include "common/error.hpp"

namespace moetier::offload {
namespace {

constexpr uint32_t kNone = UINT32_MAX;
constexpr uint64_t kNever = UINT64_MAX;

// Requests mapped to dense expert indices, plus the pinned flag per dense index.
struct Dense {
  std::vector<uint32_t> req;      // per request: dense expert index
  std::vector<ExpertId> ids;      // dense index -> id
  std::vector<uint8_t> pinned;    // dense index -> pinned
};

Dense densify(std::span<const ExpertRequest> requests, std::span<const ExpertId> pinned) {
  Dense d;
  std::unordered_map<ExpertId, uint32_t, ExpertIdHash> index;
  auto get = [&](ExpertId id) {
    const auto [it, inserted] = index.emplace(id, static_cast<uint32_t>(d.ids.size()));
    if (inserted) d.ids.push_back(id);
    return it->second;
  };
  d.req.reserve(requests.size());
  for (const ExpertRequest& r : requests) d.req.push_back(get(r.id));
  d.pinned.assign(d.ids.size(), 0);
  for (ExpertId id : pinned) {
    const auto it = index.find(id);
    if (it != index.end()) d.pinned[it->second] = 1;  // never requested: takes no slot
  }
  return d;
}

// Shared slot bookkeeping of both replays.
struct Slots {
  std::vector<uint32_t> slot_of;   // dense expert -> slot
  std::vector<uint32_t> expert;    // slot -> dense expert
  std::vector<uint32_t> group;     // slot -> group of its last use
  std::vector<uint32_t> free;
  std::vector<uint8_t> evictable;  // scratch
  Slots(size_t n_experts, size_t n_slots)
      : slot_of(n_experts, kNone), expert(n_slots, kNone), group(n_slots, kNone), evictable(n_slots, 0) {
    for (size_t i = n_slots; i-- > 0;) free.push_back(static_cast<uint32_t>(i));
  }
  void mark_evictable(const Dense& d, uint32_t current_group) {
    for (size_t s = 0; s < expert.size(); ++s)
      evictable[s] = d.pinned[expert[s]] == 0 && group[s] != current_group;
  }
};

// For each request, the index of the next request of the same expert (kNever: none).
std::vector<uint64_t> next_uses(const Dense& d) {
  std::vector<uint64_t> next(d.req.size(), kNever);
  std::vector<uint64_t> seen(d.ids.size(), kNever);
  for (size_t t = d.req.size(); t-- > 0;) {
    next[t] = seen[d.req[t]];
    seen[d.req[t]] = t;
  }
  return next;
}

void check_slots(size_t n_slots) {
  if (n_slots == 0) fail("cache simulation: number of slots must be > 0");
}

}  // namespace

SimResult simulate(std::span<const ExpertRequest> requests, size_t n_slots, EvictionPolicy& policy,
                   std::span<const ExpertId> pinned) {
  check_slots(n_slots);
  const Dense d = densify(requests, pinned);
  Slots sl(d.ids.size(), n_slots);
  policy.reset(n_slots);
  SimResult res{std::string(policy.name()), n_slots, 0, 0};
  for (size_t t = 0; t < requests.size(); ++t) {
    const uint64_t tick = t + 1;
    const uint32_t e = d.req[t];
    const ExpertId id = d.ids[e];
    const uint32_t g = requests[t].group;
    uint32_t s = sl.slot_of[e];
    if (s != kNone) {
      ++res.hits;
      policy.on_hit(id, s, tick);
      sl.group[s] = g;
      continue;
    }
    ++res.misses;
    if (!sl.free.empty()) {
      s = sl.free.back();
      sl.free.pop_back();
    } else {
      sl.mark_evictable(d, g);
      s = policy.choose_victim(sl.evictable, tick);
      if (s == kNoSlot) continue;  // everything in use or pinned: served without caching
      policy.on_evict(d.ids[sl.expert[s]], s);
      sl.slot_of[sl.expert[s]] = kNone;
    }
    sl.slot_of[e] = s;
    sl.expert[s] = e;
    sl.group[s] = g;
    policy.on_insert(id, s, tick, true);
  }
  return res;
}

SimResult simulate_belady(std::span<const ExpertRequest> requests, size_t n_slots, std::span<const ExpertId> pinned) {
  check_slots(n_slots);
  const Dense d = densify(requests, pinned);
  const std::vector<uint64_t> next_use = next_uses(d);
  Slots sl(d.ids.size(), n_slots);
  std::vector<uint64_t> slot_next(n_slots, kNever);
  SimResult res{"belady", n_slots, 0, 0};
  for (size_t t = 0; t < requests.size(); ++t) {
    const uint32_t e = d.req[t];
    const uint32_t g = requests[t].group;
    uint32_t s = sl.slot_of[e];
    if (s != kNone) {
      ++res.hits;
      slot_next[s] = next_use[t];
      sl.group[s] = g;
      continue;
    }
    ++res.misses;
    if (!sl.free.empty()) {
      s = sl.free.back();
      sl.free.pop_back();
    } else {
      sl.mark_evictable(d, g);
      s = kNone;
      for (uint32_t i = 0; i < n_slots; ++i)
        if (sl.evictable[i] && (s == kNone || slot_next[i] > slot_next[s])) s = i;
      if (s == kNone) continue;
      sl.slot_of[sl.expert[s]] = kNone;
    }
    sl.slot_of[e] = s;
    sl.expert[s] = e;
    sl.group[s] = g;
    slot_next[s] = next_use[t];
  }
  return res;
}

std::vector<SimResult> simulate_all(std::span<const ExpertRequest> requests, std::span<const size_t> slot_counts,
                                    PolicyParams params, std::span<const ExpertId> pinned) {
  std::vector<SimResult> out;
  for (size_t n : slot_counts) {
    for (PolicyKind k : {PolicyKind::Lru, PolicyKind::Lfu, PolicyKind::FreqDecay}) {
      const auto p = make_policy(k, params);
      out.push_back(simulate(requests, n, *p, pinned));
    }
    out.push_back(simulate_belady(requests, n, pinned));
  }
  return out;
}

std::vector<ExpertRequest> ungrouped(std::span<const ExpertId> ids) {
  std::vector<ExpertRequest> out;
  out.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) out.push_back(ExpertRequest{ids[i], static_cast<uint32_t>(i)});
  return out;
}

}  // namespace moetier::offload
