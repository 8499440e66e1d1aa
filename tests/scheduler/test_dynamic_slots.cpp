// Tests of scheduler/dynamic_slots: budget, static experts, hot experts placed, hysteresis, lookups that
// decline, copy limit, and a replay of the Mixtral routing trace against fixed random placements.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "../shared_data.hpp"
#include "common/error.hpp"
#include "offload/routing_trace.hpp"
#include "scheduler/dynamic_slots.hpp"

using namespace moetier;
using namespace moetier::sched;

namespace {

// A DeviceBackend with a capacity that only does the bookkeeping (no bytes are copied); allocations are
// rounded up to `align` bytes like a real allocator's.
class FakeDevice final : public DeviceBackend {
 public:
  explicit FakeDevice(uint64_t capacity, uint64_t align = 1) : capacity_(capacity), align_(align) {}
  std::string name() const override { return "fake:0"; }
  MemoryKind memory_kind() const override { return MemoryKind::Device; }
  std::optional<std::string> supports(GgmlType, int64_t, MemoryKind) const override { return std::nullopt; }
  uint64_t run(const ExpertGroup&) override { return 0; }
  void wait(uint64_t) override {}
  BackendStats stats() const override { return stats_; }
  uint64_t capacity_bytes() const override { return capacity_; }
  uint64_t used_bytes() const override { return used_; }
  void place(FfnKey key, const HostFfn& w) override {
    if (holds(key)) fail("fake:0: layer {} expert {} is already held", key.layer, key.expert);
    const uint64_t bytes = (w.bytes() + align_ - 1) / align_ * align_;
    if (used_ + bytes > capacity_) fail("fake:0: {} bytes do not fit ({} of {} used)", bytes, used_, capacity_);
    held_[{key.layer, key.expert}] = bytes;
    used_ += bytes;
    max_used_ = std::max(max_used_, used_);
    stats_.h2d_bytes += w.bytes();
  }
  void evict(FfnKey key) override {
    auto it = held_.find({key.layer, key.expert});
    if (it == held_.end()) return;
    used_ -= it->second;
    held_.erase(it);
    evictions.push_back(key);
  }
  bool holds(FfnKey key) const override { return held_.count({key.layer, key.expert}) != 0; }
  uint64_t max_used() const { return max_used_; }
  std::vector<FfnKey> evictions;

 private:
  uint64_t capacity_, align_, used_ = 0, max_used_ = 0;
  std::map<std::pair<int32_t, int32_t>, uint64_t> held_;
  BackendStats stats_;
};

const std::byte kDummy[1] = {};

// A HostFfn of `bytes` bytes (gate only; the fake device never reads them).
HostFfn ffn_of(uint64_t bytes) {
  HostFfn f;
  f.gate = HostWeight{GgmlType::F32, kDummy, 1, static_cast<int64_t>(bytes / 4), bytes};
  return f;
}

// Every expert in host memory, `bytes` each.
HostLookup all_in_host(uint64_t bytes) {
  return [bytes](FfnKey) { return std::optional<HostFfn>(ffn_of(bytes)); };
}

DynamicSlotsOptions opts(int32_t n_layers, int32_t n_experts) {
  DynamicSlotsOptions o;
  o.n_layers = n_layers;
  o.n_experts = n_experts;
  return o;
}

void observe_one(DynamicSlots& ds, int32_t layer, std::initializer_list<int32_t> experts) {
  ds.observe(layer, std::span<const int32_t>(experts.begin(), experts.size()));
}

}  // namespace

TEST_CASE("dynamic slots: the hot experts are placed, hits and the hit rate are counted") {
  FakeDevice dev(10000);
  DynamicSlots ds(dev, 300, opts(2, 8));  // room for three experts of 100 bytes
  observe_one(ds, 0, {1, 2});
  observe_one(ds, 1, {5});
  CHECK(ds.stats().hits == 0);
  CHECK(ds.stats().lookups == 3);
  const RefreshResult r = ds.refresh(all_in_host(100));
  REQUIRE(r.placed.size() == 3);
  CHECK(r.evicted.empty());
  CHECK(r.bytes_copied == 300);
  for (FfnKey k : {FfnKey{0, 1}, FfnKey{0, 2}, FfnKey{1, 5}}) {
    CHECK(dev.holds(k));
    CHECK(ds.holds_dynamic(k));
  }
  CHECK(ds.used_bytes() == 300);
  observe_one(ds, 0, {1, 3});
  observe_one(ds, 1, {5, 6});
  CHECK(ds.stats().hits == 2);
  CHECK(ds.stats().lookups == 7);
  CHECK(ds.stats().hit_rate() == doctest::Approx(2.0 / 7.0));
  CHECK(ds.stats().bytes_copied == 300);
  CHECK(dev.stats().h2d_bytes == 300);
  CHECK(ds.stats().refreshes == 1);
}

TEST_CASE("dynamic slots: options out of range are refused") {
  FakeDevice dev(100);
  struct Case {
    const char* what;
    DynamicSlotsOptions o;
  };
  DynamicSlotsOptions base = opts(2, 4);
  std::vector<Case> cases;
  cases.push_back({"no layers", opts(0, 4)});
  cases.push_back({"no experts", opts(2, 0)});
  DynamicSlotsOptions o = base;
  o.decay = 1.0;
  cases.push_back({"decay 1", o});
  o = base;
  o.decay = -0.1;
  cases.push_back({"decay < 0", o});
  o = base;
  o.swap_ratio = 0.9;
  cases.push_back({"swap_ratio < 1", o});
  o = base;
  o.swap_margin = -1;
  cases.push_back({"swap_margin < 0", o});
  for (const Case& c : cases) {
    CAPTURE(c.what);
    CHECK_THROWS_AS(DynamicSlots(dev, 100, c.o), Error);
  }
  CHECK_NOTHROW(DynamicSlots(dev, 100, base));
}

TEST_CASE("dynamic slots: the budget is never exceeded, the device's bytes agree") {
  struct Case {
    uint64_t budget;
    uint64_t align;
  };
  const Case cases[] = {{0, 1}, {99, 1}, {100, 1}, {250, 1}, {1000, 1}, {5000, 1}, {1000, 64}, {333, 64}};
  for (const Case& c : cases) {
    CAPTURE(c.budget);
    CAPTURE(c.align);
    FakeDevice dev(1 << 20, c.align);
    DynamicSlots ds(dev, c.budget, opts(4, 16));
    // Expert sizes differ per layer (mixed quantisation).
    const HostLookup lookup = [](FfnKey k) { return std::optional<HostFfn>(ffn_of(100 + 37 * k.layer)); };
    std::mt19937 rng(static_cast<uint32_t>(c.budget * 7 + c.align));
    for (int step = 0; step < 200; ++step) {
      for (int32_t l = 0; l < 4; ++l) {
        // Skewed routing that drifts: experts near (step / 20) are hot.
        const int32_t e0 = static_cast<int32_t>((rng() % 5 + step / 20) % 16);
        const int32_t e1 = static_cast<int32_t>(rng() % 16);
        observe_one(ds, l, {e0, e1});
      }
      const RefreshResult r = ds.refresh(lookup);
      REQUIRE(ds.used_bytes() <= c.budget);
      REQUIRE(dev.used_bytes() == ds.used_bytes());  // nothing static on this device
      uint64_t placed = 0;
      for (FfnKey k : r.placed) placed += dev.holds(k) ? 1 : 0;
      REQUIRE(placed == r.placed.size());
    }
    CHECK(dev.max_used() <= c.budget);
    if (c.budget >= 1000) CHECK(ds.stats().hits > 0);
    if (c.budget < 100) CHECK(ds.stats().placed == 0);
  }
}

TEST_CASE("dynamic slots: statically placed experts are never evicted") {
  FakeDevice dev(1000);
  // The plan put experts (0,0), (0,1) and (1,7) on the device before the slots existed.
  const FfnKey statics[] = {{0, 0}, {0, 1}, {1, 7}};
  for (FfnKey k : statics) dev.place(k, ffn_of(100));
  DynamicSlots ds(dev, 400, opts(2, 8));
  std::mt19937 rng(3);
  for (int step = 0; step < 300; ++step) {
    // Routing moves away from the static experts after step 50, and the dynamic set churns.
    for (int32_t l = 0; l < 2; ++l) {
      const int32_t a = step < 50 ? (l == 0 ? 0 : 7) : static_cast<int32_t>(2 + rng() % 5);
      const int32_t b = static_cast<int32_t>(rng() % 8);
      observe_one(ds, l, {a, b});
    }
    const RefreshResult r = ds.refresh(all_in_host(100));
    for (FfnKey k : statics) {
      REQUIRE(dev.holds(k));
      REQUIRE_FALSE(ds.holds_dynamic(k));
      for (FfnKey p : r.placed) REQUIRE_FALSE(p == k);
    }
    REQUIRE(ds.used_bytes() <= 400);
    REQUIRE(dev.used_bytes() == 300 + ds.used_bytes());
  }
  for (FfnKey e : dev.evictions)
    for (FfnKey k : statics) CHECK_FALSE(e == k);
  CHECK(ds.stats().static_hits >= 100);  // steps 0-49 routed to (0,0) and (1,7)
  CHECK(ds.stats().evicted > 0);         // the dynamic slots did churn
  CHECK(ds.stats().device_hit_rate() > ds.stats().hit_rate());
}

TEST_CASE("dynamic slots: a stable pattern is copied once; hysteresis keeps ties and alternation from thrashing") {
  SUBCASE("stable pattern") {
    FakeDevice dev(1 << 20);
    DynamicSlots ds(dev, 400, opts(4, 8));
    std::mt19937 rng(5);
    for (int step = 0; step < 100; ++step) {
      for (int32_t l = 0; l < 4; ++l) {
        observe_one(ds, l, {l, 4 + l});  // always the same two experts per layer: 8 hot, budget 4
        if (rng() % 4 == 0) observe_one(ds, l, {static_cast<int32_t>(rng() % 8)});  // rare noise
      }
      ds.refresh(all_in_host(100));
    }
    CHECK(ds.stats().placed == 4);
    CHECK(ds.stats().evicted == 0);
    CHECK(ds.stats().bytes_copied == 400);
  }
  SUBCASE("two experts alternate for one slot") {
    // With hysteresis the first one stays; without it every step swaps (the test can fail).
    struct Case {
      double swap_ratio, swap_margin;
      bool thrash;
    };
    for (const Case c : {Case{1.25, 0.5, false}, Case{1.0, 0.0, true}}) {
      CAPTURE(c.swap_ratio);
      FakeDevice dev(1 << 20);
      DynamicSlotsOptions o = opts(1, 4);
      o.swap_ratio = c.swap_ratio;
      o.swap_margin = c.swap_margin;
      DynamicSlots ds(dev, 100, o);
      for (int step = 0; step < 60; ++step) {
        observe_one(ds, 0, {step % 2 == 0 ? 1 : 2});
        ds.refresh(all_in_host(100));
      }
      if (c.thrash) CHECK(ds.stats().placed > 30);
      else CHECK(ds.stats().placed == 1);
    }
  }
}

TEST_CASE("dynamic slots: a shifted pattern replaces the cold experts") {
  FakeDevice dev(1 << 20);
  DynamicSlots ds(dev, 200, opts(1, 8));
  for (int step = 0; step < 30; ++step) {
    observe_one(ds, 0, {0, 1});
    ds.refresh(all_in_host(100));
  }
  CHECK(ds.holds_dynamic({0, 0}));
  CHECK(ds.holds_dynamic({0, 1}));
  for (int step = 0; step < 30; ++step) {
    observe_one(ds, 0, {5, 6});
    ds.refresh(all_in_host(100));
  }
  CHECK(ds.holds_dynamic({0, 5}));
  CHECK(ds.holds_dynamic({0, 6}));
  CHECK_FALSE(dev.holds({0, 0}));
  CHECK_FALSE(dev.holds({0, 1}));
  CHECK(ds.stats().evicted == 2);
  CHECK(ds.stats().placed == 4);
}

TEST_CASE("dynamic slots: experts the lookup cannot provide are never placed; lookups only for candidates") {
  FakeDevice dev(1 << 20);
  DynamicSlots ds(dev, 1000, opts(1, 8));
  int n_calls = 0;
  const HostLookup odd_streamed = [&n_calls](FfnKey k) {
    ++n_calls;
    return k.expert % 2 ? std::nullopt : std::optional<HostFfn>(ffn_of(100));
  };
  for (int step = 0; step < 10; ++step) {
    observe_one(ds, 0, {1, 2, 3, 4});
    ds.refresh(odd_streamed);
  }
  CHECK(ds.holds_dynamic({0, 2}));
  CHECK(ds.holds_dynamic({0, 4}));
  CHECK_FALSE(dev.holds({0, 1}));
  CHECK_FALSE(dev.holds({0, 3}));
  CHECK(ds.n_held() == 2);
  // Step 1 asks for the four routed experts, later steps only for the two streamed ones still absent.
  CHECK(n_calls == 4 + 9 * 2);
}

TEST_CASE("dynamic slots: max_copy_bytes_per_refresh bounds one refresh's copies") {
  FakeDevice dev(1 << 20);
  DynamicSlotsOptions o = opts(1, 16);
  o.max_copy_bytes_per_refresh = 250;
  DynamicSlots ds(dev, 1000, o);
  const int32_t routed[] = {0, 1, 2, 3, 4, 5, 6, 7};
  int64_t held_before = 0;
  for (int step = 0; step < 4; ++step) {
    ds.observe(0, routed);
    const RefreshResult r = ds.refresh(all_in_host(100));
    CHECK(r.bytes_copied <= 250);
    CHECK(r.placed.size() == 2);
    CHECK(ds.n_held() == held_before + 2);
    held_before = ds.n_held();
  }
}

// Replays a Mixtral-8x7B routing trace (32 layers x 8 experts, top-2; two HumanEval prompts) token by
// token: observe every layer of a token, then refresh. Compared with fixed placements of the same number
// of experts: random ones, and the hottest experts of the other prompt (what `plan` would place from a
// trace of a different workload).
namespace {

using Recs = std::vector<const offload::RoutingRecord*>;

// Records of sequence `seq` (all when seq < 0) in decode order.
Recs decode_order(const offload::RoutingTrace& trace, int32_t seq) {
  Recs recs;
  for (const auto& r : trace.records)
    if (seq < 0 || r.seq == seq) recs.push_back(&r);
  std::stable_sort(recs.begin(), recs.end(), [](auto* a, auto* b) {
    return std::tie(a->seq, a->pos, a->layer) < std::tie(b->seq, b->pos, b->layer);
  });
  return recs;
}

// Hit rate of a fixed set of experts (held[layer * n_experts + expert]).
double fixed_hit_rate(const Recs& recs, const std::vector<bool>& held, int32_t n_experts) {
  uint64_t hits = 0, lookups = 0;
  for (const auto* r : recs)
    for (int32_t e : r->experts) {
      ++lookups;
      hits += held[static_cast<size_t>(r->layer * n_experts + e)] ? 1 : 0;
    }
  return static_cast<double>(hits) / static_cast<double>(lookups);
}

}  // namespace

TEST_CASE("dynamic slots: Mixtral trace replay beats fixed placements" * doctest::skip(test::no_shared())) {
  const auto trace = offload::read_any_trace((test::shared_dir() / "traces" / "mixtral-8x7b-humaneval-2.jsonl").string());
  const int32_t n_layers = trace.n_layers(), n_experts = trace.n_experts();
  REQUIRE(n_layers == 32);
  REQUIRE(n_experts == 8);
  const size_t n_ids = static_cast<size_t>(n_layers * n_experts);
  struct Case {
    int32_t seq;        // replayed sequence (-1: all)
    int32_t plan_from;  // fixed placement: hottest experts of this sequence (-1: best of 10 random ones)
    int32_t n_slots;
  };
  const Case cases[] = {{-1, -1, 32}, {-1, -1, 64}, {-1, -1, 128}, {1, 0, 32}, {1, 0, 64}, {0, 1, 64}, {1, 0, 128}};
  for (const Case& c : cases) {
    CAPTURE(c.seq);
    CAPTURE(c.plan_from);
    CAPTURE(c.n_slots);
    const Recs recs = decode_order(trace, c.seq);
    REQUIRE(!recs.empty());
    FakeDevice dev(1 << 30);
    DynamicSlots ds(dev, static_cast<uint64_t>(c.n_slots) * 100, opts(n_layers, n_experts));
    int64_t n_tokens = 0;
    for (size_t i = 0; i < recs.size(); ++i) {
      ds.observe(recs[i]->layer, recs[i]->experts);
      const bool step_ends =
          i + 1 == recs.size() || recs[i + 1]->seq != recs[i]->seq || recs[i + 1]->pos != recs[i]->pos;
      if (step_ends) {
        ds.refresh(all_in_host(100));
        ++n_tokens;
        REQUIRE(ds.used_bytes() <= static_cast<uint64_t>(c.n_slots) * 100);
      }
    }
    CHECK(ds.stats().lookups == static_cast<uint64_t>(recs.size()) * 2);
    const double dyn = ds.stats().hit_rate();

    double fixed = 0;
    if (c.plan_from < 0) {
      std::mt19937 rng(42);
      std::vector<int32_t> ids(n_ids);
      std::iota(ids.begin(), ids.end(), 0);
      for (int trial = 0; trial < 10; ++trial) {
        std::shuffle(ids.begin(), ids.end(), rng);
        std::vector<bool> held(n_ids, false);
        for (int32_t s = 0; s < c.n_slots; ++s) held[static_cast<size_t>(ids[static_cast<size_t>(s)])] = true;
        fixed = std::max(fixed, fixed_hit_rate(recs, held, n_experts));
      }
    } else {
      std::vector<uint64_t> counts(n_ids, 0);
      for (const auto* r : decode_order(trace, c.plan_from))
        for (int32_t e : r->experts) ++counts[static_cast<size_t>(r->layer * n_experts + e)];
      std::vector<int32_t> ids(n_ids);
      std::iota(ids.begin(), ids.end(), 0);
      std::stable_sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
        return counts[static_cast<size_t>(a)] > counts[static_cast<size_t>(b)];
      });
      std::vector<bool> held(n_ids, false);
      for (int32_t s = 0; s < c.n_slots; ++s) held[static_cast<size_t>(ids[static_cast<size_t>(s)])] = true;
      fixed = fixed_hit_rate(recs, held, n_experts);
    }
    MESSAGE("Mixtral trace seq ", c.seq, ", ", n_tokens, " tokens, ", c.n_slots, " of 256 experts: dynamic hit rate ",
            dyn, " vs fixed (", std::string(c.plan_from < 0 ? "best of 10 random" : "hottest of the other prompt"), ") ", fixed,
            "; experts copied per token ", static_cast<double>(ds.stats().placed) / static_cast<double>(n_tokens));
    CHECK(dyn > fixed);
  }
}
