// Tests of offload/cache_sim: LRU and LFU against naive reference implementations and hand-worked
// sequences, Belady against exhaustive search, Belady >= every policy on random traces.
#include <doctest/doctest.h>

#include <algorithm>
#include <list>
#include <map>
#include <random>

#include "common/error.hpp"
#include "offload/cache_sim.hpp"

using namespace moetier::offload;

namespace {

std::vector<ExpertId> ids(std::initializer_list<int> experts) {
  std::vector<ExpertId> out;
  for (int e : experts) out.push_back(ExpertId{0, e});
  return out;
}

uint64_t hits_of(const std::vector<ExpertId>& seq, size_t n_slots, PolicyKind k, PolicyParams p = {}) {
  const auto policy = make_policy(k, p);
  return simulate(ungrouped(seq), n_slots, *policy).hits;
}

// Naive LRU: a list, most recent first.
uint64_t reference_lru(const std::vector<ExpertId>& seq, size_t n_slots) {
  std::list<ExpertId> cache;
  uint64_t hits = 0;
  for (ExpertId id : seq) {
    const auto it = std::find(cache.begin(), cache.end(), id);
    if (it != cache.end()) {
      ++hits;
      cache.erase(it);
    } else if (cache.size() == n_slots) {
      cache.pop_back();
    }
    cache.push_front(id);
  }
  return hits;
}

// Naive perfect LFU: counts over the whole history, ties to the least recently used.
uint64_t reference_lfu(const std::vector<ExpertId>& seq, size_t n_slots) {
  std::map<ExpertId, uint64_t> count, last;
  std::vector<ExpertId> cache;
  uint64_t hits = 0;
  for (size_t t = 0; t < seq.size(); ++t) {
    const ExpertId id = seq[t];
    if (std::find(cache.begin(), cache.end(), id) != cache.end()) {
      ++hits;
    } else {
      if (cache.size() == n_slots) {
        auto victim = std::min_element(cache.begin(), cache.end(), [&](ExpertId a, ExpertId b) {
          return std::pair(count[a], last[a]) < std::pair(count[b], last[b]);
        });
        cache.erase(victim);
      }
      cache.push_back(id);
    }
    ++count[id];
    last[id] = t + 1;
  }
  return hits;
}

// Exhaustive optimum (demand paging: every miss is inserted, any resident may be evicted).
uint64_t best_hits(const std::vector<ExpertId>& seq, size_t n_slots, size_t t, std::vector<ExpertId>& cache) {
  if (t == seq.size()) return 0;
  const ExpertId id = seq[t];
  if (std::find(cache.begin(), cache.end(), id) != cache.end()) return 1 + best_hits(seq, n_slots, t + 1, cache);
  if (cache.size() < n_slots) {
    cache.push_back(id);
    const uint64_t h = best_hits(seq, n_slots, t + 1, cache);
    cache.pop_back();
    return h;
  }
  uint64_t best = 0;
  for (size_t i = 0; i < cache.size(); ++i) {
    const ExpertId old = cache[i];
    cache[i] = id;
    best = std::max(best, best_hits(seq, n_slots, t + 1, cache));
    cache[i] = old;
  }
  return best;
}

std::vector<ExpertRequest> random_requests(std::mt19937_64& rng, size_t n_steps, int n_layers, int n_experts,
                                           int top_k, bool skewed) {
  std::vector<ExpertRequest> out;
  for (size_t step = 0; step < n_steps; ++step) {
    const int layer = static_cast<int>(step % static_cast<size_t>(n_layers));
    std::vector<int> chosen;
    while (static_cast<int>(chosen.size()) < top_k) {
      int e = static_cast<int>(rng() % static_cast<uint64_t>(n_experts));
      if (skewed && rng() % 2 == 0) e = static_cast<int>(rng() % 3);  // a few hot experts
      if (std::find(chosen.begin(), chosen.end(), e) == chosen.end()) chosen.push_back(e);
    }
    for (int e : chosen) out.push_back({{layer, e}, static_cast<uint32_t>(step)});
  }
  return out;
}

}  // namespace

TEST_CASE("cache sim: LRU on hand-worked sequences") {
  // 2 slots: A B A C B A -> A miss, B miss, A hit, C miss (evicts B), B miss (evicts A), A miss (evicts C).
  CHECK(hits_of(ids({0, 1, 0, 2, 1, 0}), 2, PolicyKind::Lru) == 1);
  // 3 slots, cyclic over 4 experts: LRU never hits.
  CHECK(hits_of(ids({0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3}), 3, PolicyKind::Lru) == 0);
  // Enough slots: only cold misses.
  CHECK(hits_of(ids({0, 1, 2, 3, 0, 1, 2, 3}), 4, PolicyKind::Lru) == 4);
}

TEST_CASE("cache sim: LFU on hand-worked sequences") {
  // 2 slots: A A B C B C. C evicts B (1 < 2); B (count 1 before, 2 after) evicts C (1); C evicts... the
  // tie A(2) vs B(2) goes to the least recent, A.
  CHECK(hits_of(ids({0, 0, 1, 2, 1, 2}), 2, PolicyKind::Lfu) == 1);
  // A popular expert survives a scan under LFU (5 hits), not under LRU (4).
  const auto scan = ids({0, 0, 0, 0, 0, 1, 2, 3, 1, 2, 3, 0});
  CHECK(hits_of(scan, 2, PolicyKind::Lfu) == 5);
  CHECK(hits_of(scan, 2, PolicyKind::Lru) == 4);
}

TEST_CASE("cache sim: LRU and LFU equal naive references on random sequences") {
  std::mt19937_64 rng(123);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<ExpertId> seq;
    const int n_distinct = 2 + static_cast<int>(rng() % 10);
    const size_t len = 1 + rng() % 200;
    for (size_t i = 0; i < len; ++i) seq.push_back({static_cast<int>(rng() % 2), static_cast<int>(rng() % n_distinct)});
    const size_t slots = 1 + rng() % 8;
    CAPTURE(trial);
    CHECK(hits_of(seq, slots, PolicyKind::Lru) == reference_lru(seq, slots));
    CHECK(hits_of(seq, slots, PolicyKind::Lfu) == reference_lfu(seq, slots));
  }
}

TEST_CASE("cache sim: Belady equals the exhaustive optimum on tiny sequences") {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 150; ++trial) {
    std::vector<ExpertId> seq;
    const size_t len = 1 + rng() % 11;
    for (size_t i = 0; i < len; ++i) seq.push_back({0, static_cast<int>(rng() % 5)});
    const size_t slots = 1 + rng() % 3;
    std::vector<ExpertId> cache;
    CAPTURE(trial);
    CHECK(simulate_belady(ungrouped(seq), slots).hits == best_hits(seq, slots, 0, cache));
  }
}

TEST_CASE("cache sim: Belady >= every policy on random traces (groups, pinned experts)") {
  std::mt19937_64 rng(99);
  for (int trial = 0; trial < 60; ++trial) {
    const int top_k = 1 + static_cast<int>(rng() % 3);
    const auto req = random_requests(rng, 50 + rng() % 400, 1 + static_cast<int>(rng() % 4),
                                     top_k + 1 + static_cast<int>(rng() % 12), top_k, trial % 2 == 0);
    std::vector<ExpertId> pinned;
    if (trial % 3 == 0) pinned.push_back(req[0].id);
    const size_t slots = static_cast<size_t>(top_k) + pinned.size() + rng() % 20;
    PolicyParams p;
    p.half_life_ticks = 1.0 + static_cast<double>(rng() % 100);
    const SimResult opt = simulate_belady(req, slots, pinned);
    CAPTURE(trial);
    CHECK(opt.hits + opt.misses == req.size());
    for (const PolicyKind k : {PolicyKind::Lru, PolicyKind::Lfu, PolicyKind::FreqDecay}) {
      const auto policy = make_policy(k, p);
      const SimResult r = simulate(req, slots, *policy, pinned);
      CAPTURE(policy_name(k));
      CHECK(r.hits + r.misses == req.size());
      CHECK(opt.hits >= r.hits);
    }
  }
}

TEST_CASE("cache sim: experts of the current step are never evicted for each other") {
  // 2 slots. X is requested three times (LFU count 3), then one step needs A and B together. Without
  // groups LFU loading B evicts A (count 1 < 3); with the step grouped it must evict X, so A then hits.
  const std::vector<ExpertId> x3{{0, 9}, {0, 9}, {0, 9}};
  std::vector<ExpertRequest> grouped = ungrouped(x3);
  grouped.push_back({{0, 1}, 3});
  grouped.push_back({{0, 2}, 3});
  grouped.push_back({{0, 1}, 4});
  std::vector<ExpertRequest> flat = grouped;
  flat[4].group = 5;  // A and B in different steps
  const auto lfu = make_policy(PolicyKind::Lfu);
  CHECK(simulate(grouped, 2, *lfu).hits == simulate(flat, 2, *lfu).hits + 1);
  // One slot for a step of two: the second is served uncached, not an error.
  const SimResult tiny = simulate(grouped, 1, *lfu);
  CHECK(tiny.hits + tiny.misses == grouped.size());
}

TEST_CASE("cache sim: pinned experts stay resident") {
  // One slot for the pinned expert, one for the rest: every request of the pinned one after the first
  // hits, whatever the policy.
  std::vector<ExpertId> seq;
  for (int i = 0; i < 30; ++i) {
    seq.push_back({0, 0});
    seq.push_back({1, i % 5});
  }
  const std::vector<ExpertId> pinned{{0, 0}};
  for (const PolicyKind k : {PolicyKind::Lru, PolicyKind::Lfu, PolicyKind::FreqDecay}) {
    const auto policy = make_policy(k);
    CHECK(simulate(ungrouped(seq), 2, *policy, pinned).hits == 29);
  }
  CHECK(simulate_belady(ungrouped(seq), 2, pinned).hits == 29);
}

TEST_CASE("cache sim: simulate_all layout and errors") {
  std::mt19937_64 rng(5);
  const auto req = random_requests(rng, 100, 4, 8, 2, true);
  const std::vector<size_t> counts{4, 8};
  const auto all = simulate_all(req, counts);
  REQUIRE(all.size() == 8);
  CHECK(all[0].policy == "lru");
  CHECK(all[1].policy == "lfu");
  CHECK(all[2].policy == "freq_decay");
  CHECK(all[3].policy == "belady");
  CHECK(all[4].n_slots == 8);
  CHECK(all[7].hits >= all[3].hits);  // more slots never hurt Belady
  const auto lru = make_policy(PolicyKind::Lru);
  CHECK_THROWS_AS(simulate(req, 0, *lru), moetier::Error);
}
