// Tests of offload/expert_cache: contents, eviction per policy, pinned and leased experts never evicted,
// prefetch, statistics, read failures.
#include <doctest/doctest.h>

#include <cstring>

#include "offload/expert_cache.hpp"
#include "offload_test_util.hpp"

using namespace moetier::offload;
using moetier::test::TempDataFile;

namespace {

constexpr int32_t kLayers = 2;
constexpr int32_t kExperts = 6;

// Each expert: three unaligned ranges ("gate", "up", "down") of a few KB at distinct places.
ExpertCatalog make_catalog() {
  ExpertCatalog c;
  for (int32_t l = 0; l < kLayers; ++l)
    for (int32_t e = 0; e < kExperts; ++e) {
      const uint64_t base = static_cast<uint64_t>(l * kExperts + e) * 40000 + 37;
      c.add({l, e}, {{0, base, 5000}, {0, base + 5032, 7001}, {0, base + 12064, 3333}});
    }
  return c;
}

struct Fixture {
  TempDataFile file{static_cast<uint64_t>(kLayers * kExperts) * 40000 + 65536, 77};

  ExpertCache make(size_t n_slots, PolicyKind policy, std::vector<ExpertId> pinned = {}, PolicyParams params = {},
                   bool force_pread = false) {
    const ExpertCatalog cat = make_catalog();
    CacheOptions o;
    o.budget_bytes = n_slots * cat.max_slot_bytes() + 100;
    o.policy = policy;
    o.policy_params = params;
    o.pinned = std::move(pinned);
    o.reader.force_pread = force_pread;
    return ExpertCache({file.path()}, cat, o);
  }

  bool matches(const ExpertLease& lease, const ExpertCatalog& cat) const {
    const auto ranges = cat.ranges(lease.id());
    if (lease.n_ranges() != ranges.size()) return false;
    for (size_t i = 0; i < ranges.size(); ++i) {
      const auto d = lease.range(i);
      if (d.size() != ranges[i].length) return false;
      if (std::memcmp(d.data(), file.bytes().data() + ranges[i].offset, d.size()) != 0) return false;
    }
    return true;
  }

  // acquire + release, checking contents.
  void use(ExpertCache& c, ExpertId id) const {
    const ExpertLease l = c.acquire(id);
    REQUIRE(l);
    CHECK(matches(l, c.catalog()));
  }
};

}  // namespace

// ExpertCache is neither copyable nor movable: build it in place through a helper returning by value
// (guaranteed copy elision).

TEST_CASE("expert cache: slots from the budget, contents correct, both backends") {
  Fixture f;
  for (const bool force_pread : {false, true}) {
    ExpertCache c = f.make(4, PolicyKind::Lru, {}, {}, force_pread);
    CHECK(c.n_slots() == 4);
    CHECK(c.slot_bytes() % kIoAlignment == 0);
    CHECK(c.slot_bytes() >= c.catalog().max_slot_bytes());
    for (int32_t l = 0; l < kLayers; ++l)
      for (int32_t e = 0; e < kExperts; ++e) f.use(c, {l, e});
    CHECK(c.total_stats().misses == static_cast<uint64_t>(kLayers * kExperts));
  }
}

TEST_CASE("expert cache: configuration errors") {
  Fixture f;
  const ExpertCatalog cat = make_catalog();
  CacheOptions o;
  o.budget_bytes = cat.max_slot_bytes() - 1;
  CHECK_THROWS_WITH_AS(ExpertCache({f.file.path()}, cat, o), doctest::Contains("holds no slot"), moetier::Error);
  o.budget_bytes = 2 * cat.max_slot_bytes();
  o.slot_bytes = 4096;
  CHECK_THROWS_WITH_AS(ExpertCache({f.file.path()}, cat, o), doctest::Contains("smaller than the largest expert"),
                       moetier::Error);
  o.slot_bytes = 0;
  o.pinned = {{0, 0}, {0, 1}};
  CHECK_THROWS_WITH_AS(ExpertCache({f.file.path()}, cat, o), doctest::Contains("no evictable slot"), moetier::Error);
  o.pinned = {{5, 0}};
  CHECK_THROWS_WITH_AS(ExpertCache({f.file.path()}, cat, o), doctest::Contains("not in the catalog"), moetier::Error);
  o.pinned = {};
  ExpertCache c({f.file.path()}, cat, o);
  CHECK_THROWS_WITH_AS(c.acquire({0, 99}), doctest::Contains("unknown expert"), moetier::Error);
}

TEST_CASE("expert cache: LRU evicts the least recently used") {
  Fixture f;
  ExpertCache c = f.make(3, PolicyKind::Lru);
  const ExpertId a{0, 0}, b{0, 1}, cc{0, 2}, d{1, 0};
  f.use(c, a);
  f.use(c, b);
  f.use(c, cc);
  f.use(c, a);  // hit; b is now least recent
  f.use(c, d);
  CHECK(c.ready(a));
  CHECK(!c.ready(b));
  CHECK(c.ready(cc));
  CHECK(c.ready(d));
  CHECK(c.stats()[0].evictions == 1);
}

TEST_CASE("expert cache: LFU evicts the least frequently used, ties by recency") {
  Fixture f;
  ExpertCache c = f.make(3, PolicyKind::Lfu);
  const ExpertId a{0, 0}, b{0, 1}, cc{0, 2}, d{1, 0}, e{1, 1};
  for (int i = 0; i < 3; ++i) f.use(c, a);
  f.use(c, b);
  f.use(c, cc);
  f.use(c, cc);
  f.use(c, d);  // evicts b (1 use; a has 3, c 2)
  CHECK(!c.ready(b));
  CHECK(c.ready(a));
  CHECK(c.ready(cc));
  f.use(c, e);  // d (1) vs c (2), a (3): evicts d
  CHECK(!c.ready(d));
  CHECK(c.ready(e));
  f.use(c, b);  // b now has 2 uses (history kept), e has 1: evicts e
  CHECK(!c.ready(e));
  CHECK(c.ready(b));
}

TEST_CASE("expert cache: freq_decay forgets old popularity, LFU does not") {
  Fixture f;
  const ExpertId a{0, 0}, b{0, 1}, cc{0, 2}, d{1, 0};
  PolicyParams p;
  p.half_life_ticks = 1.0;
  for (const PolicyKind k : {PolicyKind::FreqDecay, PolicyKind::Lfu}) {
    ExpertCache c = f.make(3, k, {}, p);
    for (int i = 0; i < 5; ++i) f.use(c, a);  // popular long ago
    f.use(c, b);
    f.use(c, cc);
    f.use(c, d);
    if (k == PolicyKind::FreqDecay) {
      CHECK(!c.ready(a));  // a's weight decayed below b's
      CHECK(c.ready(b));
    } else {
      CHECK(c.ready(a));
      CHECK(!c.ready(b));
    }
  }
}

TEST_CASE("expert cache: pinned experts are never evicted, whatever the policy") {
  Fixture f;
  for (const PolicyKind k : {PolicyKind::Lru, PolicyKind::Lfu, PolicyKind::FreqDecay}) {
    CAPTURE(policy_name(k));
    const ExpertId pin{1, 5};
    ExpertCache c = f.make(3, k, {pin});
    f.use(c, pin);
    for (int round = 0; round < 3; ++round)
      for (int32_t e = 0; e < kExperts; ++e) {
        f.use(c, {0, e});
        CHECK(c.ready(pin));
      }
    f.use(c, pin);
    CHECK(c.stats()[1].hits == 1);
    CHECK(c.stats()[1].misses == 1);
  }
}

TEST_CASE("expert cache: leased experts are never evicted; all leased -> clear error") {
  Fixture f;
  for (const PolicyKind k : {PolicyKind::Lru, PolicyKind::Lfu, PolicyKind::FreqDecay}) {
    CAPTURE(policy_name(k));
    ExpertCache c = f.make(3, k);
    ExpertLease held = c.acquire({0, 0});  // oldest and least used: every policy's first choice
    for (int32_t e = 1; e < kExperts; ++e) {
      f.use(c, {1, e});
      CHECK(c.ready({0, 0}));
    }
    CHECK(f.matches(held, c.catalog()));
    ExpertLease l1 = c.acquire({0, 1});
    ExpertLease l2 = c.acquire({0, 2});
    CHECK_THROWS_WITH_AS(c.acquire({0, 3}), doctest::Contains("no slot can be freed"), moetier::Error);
    ExpertLease again = c.acquire({0, 1});  // a second lease on a resident expert is fine
    CHECK(again.slot() == l1.slot());
    held.reset();
    f.use(c, {0, 3});  // now {0,0} can go
    CHECK(!c.ready({0, 0}));
    CHECK(f.matches(l1, c.catalog()));
    CHECK(f.matches(l2, c.catalog()));
  }
}

TEST_CASE("expert cache: prefetch and statistics per layer") {
  Fixture f;
  ExpertCache c = f.make(4, PolicyKind::Lru);
  const ExpertCatalog& cat = c.catalog();
  uint64_t expect_bytes0 = 0, expect_bytes1 = 0;
  auto extent = [&](ExpertId id) {
    uint64_t n = 0;
    for (const ByteRange& r : cat.ranges(id)) n += align_up(r.offset + r.length) - align_down(r.offset);
    return n;
  };
  f.use(c, {0, 0});
  expect_bytes0 += extent({0, 0});
  CHECK(c.stats()[0].misses == 1);
  CHECK(c.stats()[0].stall_ns > 0);
  const uint64_t stall_after_miss = c.stats()[0].stall_ns;
  f.use(c, {0, 0});
  CHECK(c.stats()[0].hits == 1);
  CHECK(c.stats()[0].stall_ns == stall_after_miss);  // hits do not stall

  CHECK(c.prefetch({1, 2}));
  CHECK(c.prefetch({1, 2}));  // already in flight or ready: no second read
  expect_bytes1 += extent({1, 2});
  CHECK(c.stats()[1].prefetches == 1);
  f.use(c, {1, 2});
  CHECK(c.stats()[1].misses == 0);
  CHECK(c.stats()[1].hits + c.stats()[1].inflight_hits == 1);
  f.use(c, {1, 3});
  expect_bytes1 += extent({1, 3});
  CHECK(c.stats()[0].bytes_read == expect_bytes0);
  CHECK(c.stats()[1].bytes_read == expect_bytes1);
  const LayerCacheStats t = c.total_stats();
  CHECK(t.bytes_read == expect_bytes0 + expect_bytes1);
  CHECK(t.misses == 2);
  c.reset_stats();
  CHECK(c.total_stats().misses == 0);
  CHECK(c.total_stats().bytes_read == 0);
}

TEST_CASE("expert cache: prefetch never evicts leased experts and reports no room") {
  Fixture f;
  ExpertCache c = f.make(2, PolicyKind::Lru);
  ExpertLease a = c.acquire({0, 0});
  ExpertLease b = c.acquire({0, 1});
  CHECK(!c.prefetch({0, 2}));
  b.reset();
  CHECK(c.prefetch({0, 2}));
  CHECK(c.ready({0, 0}));
}

TEST_CASE("expert cache: a failed read throws a clear error and leaves no slot ready") {
  for (const bool force_pread : {false, true}) {
    CAPTURE(force_pread);
    Fixture f;
    ExpertCache c = f.make(3, PolicyKind::Lru, {}, {}, force_pread);
    f.use(c, {0, 0});
    f.file.truncate(6 * 40000);  // experts of layer 1 are gone
    const ExpertId lost{1, 2};
    CHECK_THROWS_WITH_AS(c.acquire(lost), doctest::Contains("unexpected end of file"), moetier::Error);
    CHECK(!c.ready(lost));
    CHECK_THROWS_WITH_AS(c.acquire(lost), doctest::Contains("layer 1 expert 2"), moetier::Error);  // retried
    CHECK(c.prefetch({1, 3}));  // starts a read that will fail
    CHECK_THROWS_WITH_AS(c.acquire({1, 3}), doctest::Contains(f.file.path().c_str()), moetier::Error);
    CHECK(!c.ready({1, 3}));
    f.use(c, {0, 0});  // the rest still works
    f.use(c, {0, 4});
    for (size_t i = 0; i < 3; ++i) f.use(c, {0, static_cast<int32_t>(i)});
  }
}

TEST_CASE("eviction policy names parse") {
  for (const PolicyKind k : {PolicyKind::Lru, PolicyKind::Lfu, PolicyKind::FreqDecay})
    CHECK(parse_policy(policy_name(k)) == k);
  CHECK_THROWS_WITH_AS(parse_policy("mru"), doctest::Contains("unknown eviction policy"), moetier::Error);
}
