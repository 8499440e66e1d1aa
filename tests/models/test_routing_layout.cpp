// TokenRouting -> ExpertBatches: every (token, slot) lands in exactly one expert group, groups ascend by
// expert, slots ascend within a group, and index_of finds exactly the routed experts.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <set>
#include <vector>

#include "scheduler/routing_layout.hpp"

using namespace moetier::sched;

TEST_CASE("ExpertBatches: expert-major regrouping of a token-major routing") {
  std::mt19937 rng(5);
  ExpertBatches b;
  for (int round = 0; round < 20; ++round) {
    const int64_t n_tokens = 1 + static_cast<int64_t>(rng() % 40), k = 1 + static_cast<int64_t>(rng() % 8);
    const int32_t n_expert = 8 + static_cast<int32_t>(rng() % 60);
    TokenRouting r;
    r.resize(n_tokens, k);
    for (int64_t t = 0; t < n_tokens; ++t) {  // k distinct experts per token, as a router picks
      std::vector<int32_t> all(static_cast<size_t>(n_expert));
      for (int32_t e = 0; e < n_expert; ++e) all[e] = e;
      std::shuffle(all.begin(), all.end(), rng);
      for (int64_t s = 0; s < k; ++s) r.ids[t * k + s] = all[s];
    }
    b.build(r);  // reused across rounds: storage is rebuilt, not appended to
    std::set<int32_t> routed(r.ids.begin(), r.ids.end());
    CHECK(std::vector<int32_t>(b.experts().begin(), b.experts().end()) == std::vector<int32_t>(routed.begin(), routed.end()));
    std::vector<int> seen(static_cast<size_t>(n_tokens * k), 0);
    for (size_t i = 0; i < b.experts().size(); ++i) {
      const auto slots = b.slots(i);
      REQUIRE(!slots.empty());
      CHECK(std::is_sorted(slots.begin(), slots.end()));
      for (int32_t s : slots) {
        CHECK(r.ids[s] == b.experts()[i]);
        CHECK(b.token_of(s) == s / k);
        ++seen[s];
      }
      CHECK(b.index_of(b.experts()[i]) == static_cast<int64_t>(i));
    }
    CHECK(std::all_of(seen.begin(), seen.end(), [](int c) { return c == 1; }));
    for (int32_t e = 0; e < n_expert; ++e)
      if (!routed.count(e)) CHECK(b.index_of(e) == -1);
  }
}
