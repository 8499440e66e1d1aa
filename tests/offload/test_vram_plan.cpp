// Tests of offload/vram_plan: the device budget is never exceeded, non-expert weights and KV cache go to
// the device first, then the most-routed experts; too small budgets, DRAM / NVMe for the rest, JSON round
// trip and error messages.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>

#include "common/error.hpp"
#include "offload/vram_plan.hpp"

using namespace moetier::offload;

namespace {

// 5 blocks, the first dense, 8 experts each, sizes differ per layer (as test_placement_plan.cpp).
ModelIdentity model() { return ModelIdentity{"tiny-moe.gguf", 5, 8, {0, 1000000, 1000000, 1200000, 900000}}; }

uint64_t all_expert_bytes(const ModelIdentity& m) {
  uint64_t n = 0;
  for (uint64_t b : m.expert_bytes) n += b * static_cast<uint64_t>(m.n_experts);
  return n;
}

// Bytes the plan puts on `dev`, the shared parts included.
uint64_t device_bytes(const VramPlan& v, Tier dev, uint64_t ne, uint64_t kv) {
  return v.plan.bytes_on(dev) + (v.plan.non_expert == dev ? ne : 0) + (v.plan.kv_cache == dev ? kv : 0);
}

std::vector<std::vector<uint64_t>> random_usage(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::vector<uint64_t>> usage(5, std::vector<uint64_t>(8, 0));
  for (size_t l = 1; l < 5; ++l)
    for (auto& c : usage[l]) c = rng() % 1000;
  return usage;
}

}  // namespace

TEST_CASE("plan_with_vram: the device budget is never exceeded, whatever the budget, usage and device") {
  const ModelIdentity m = model();
  const uint64_t ne = 3000000, kv = 500000;
  for (const Tier dev : {Tier::sim(0), Tier::gpu(0), Tier::sim(1)}) {
    const std::vector<uint64_t> budgets = {1, 899999, 900000, 3499999, 3500000, 4400000, 10000000, 20000001,
                                           ne + kv + all_expert_bytes(m), uint64_t{1} << 40};
    for (const uint64_t budget : budgets) {
      for (const bool with_usage : {false, true}) {
        CAPTURE(to_string(dev));
        CAPTURE(budget);
        CAPTURE(with_usage);
        VramPlanRequest rq;
        rq.non_expert_bytes = ne;
        rq.kv_cache_bytes = kv;
        rq.device = DeviceBudget{dev, budget, std::nullopt};
        if (with_usage) rq.usage = random_usage(budget);
        const VramPlan v = plan_with_vram(m, rq);
        const uint64_t used = device_bytes(v, dev, ne, kv);
        CHECK(used <= budget);
        CHECK(used == v.device_bytes_used);
        CHECK(v.plan.devices == std::vector<DeviceBudget>{rq.device});
        CHECK_NOTHROW(v.plan.validate());
        CHECK_NOTHROW(v.plan.check_device_budgets(ne, kv));
        CHECK(v.shared_on_device == (budget >= ne + kv));
        // Nothing streams without a DRAM budget: every expert is on the device or in DRAM.
        CHECK(v.plan.experts_on(Tier::Kind::Nvme).empty());
        CHECK(v.plan.bytes_on(dev) + v.plan.bytes_on(Tier::Kind::Dram) == all_expert_bytes(m));
        // Greedy: an expert left off the device is larger than the room left.
        if (!v.plan.experts_on(Tier::Kind::Dram).empty())
          CHECK(budget - used < 1200000);
        CHECK(v.notes.empty() == (v.shared_on_device && v.plan.experts_on(Tier::Kind::Dram).empty()));
      }
    }
  }
}

TEST_CASE("plan_with_vram: non-expert weights and KV cache first, then the most-routed experts") {
  const uint64_t ne = 3000000, kv = 500000;
  // Equal expert sizes, so the greedy fill cannot take a cold small expert over a hot large one.
  const ModelIdentity even{"even.gguf", 5, 8, {0, 1000000, 1000000, 1000000, 1000000}};
  const auto usage = random_usage(9);
  VramPlanRequest rq;
  rq.non_expert_bytes = ne;
  rq.kv_cache_bytes = kv;
  rq.device = DeviceBudget{Tier::sim(0), ne + kv + 10500000, 24.0};
  rq.usage = usage;
  const VramPlan v = plan_with_vram(even, rq);
  CHECK(v.shared_on_device);
  CHECK(v.plan.non_expert == Tier::sim(0));
  CHECK(v.plan.kv_cache == Tier::sim(0));
  const auto on_dev = v.plan.experts_on(Tier::sim(0));
  const auto in_dram = v.plan.experts_on(Tier::Kind::Dram);
  CHECK(on_dev.size() == 10);
  REQUIRE(!in_dram.empty());
  uint64_t min_dev = UINT64_MAX, max_dram = 0;
  for (ExpertId id : on_dev) min_dev = std::min(min_dev, usage[id.layer][id.expert]);
  for (ExpertId id : in_dram) max_dram = std::max(max_dram, usage[id.layer][id.expert]);
  CHECK(min_dev >= max_dram);
  // Exactly the first 10 of the fill order (layer-major for the comparison).
  std::vector<ExpertId> first = fill_order(even, usage);
  first.resize(10);
  std::sort(first.begin(), first.end(), [](ExpertId a, ExpertId b) {
    return a.layer != b.layer ? a.layer < b.layer : a.expert < b.expert;
  });
  CHECK(on_dev == first);

  SUBCASE("without usage: the device's experts spread evenly over the layers") {
    rq.usage.clear();
    const VramPlan u = plan_with_vram(even, rq);
    std::vector<int> per_layer(5, 0);
    for (ExpertId id : u.plan.experts_on(Tier::sim(0))) ++per_layer[static_cast<size_t>(id.layer)];
    CHECK(per_layer[0] == 0);
    const auto [lo, hi] = std::minmax_element(per_layer.begin() + 1, per_layer.end());
    CHECK(*hi - *lo <= 1);
    CHECK(u.plan.experts_on(Tier::sim(0)).size() == 10);
  }
  SUBCASE("deterministic") {
    const VramPlan again = plan_with_vram(even, rq);
    CHECK(plan_to_json(again.plan) == plan_to_json(v.plan));
  }
}

TEST_CASE("plan_with_vram: budgets too small for the shared parts, or for any expert") {
  const ModelIdentity m = model();
  const uint64_t ne = 3000000, kv = 500000;
  VramPlanRequest rq;
  rq.non_expert_bytes = ne;
  rq.kv_cache_bytes = kv;

  SUBCASE("the non-expert weights fit but not with the KV cache: both stay in DRAM, experts fill the device") {
    rq.device = DeviceBudget{Tier::sim(0), ne + kv - 1, std::nullopt};
    const VramPlan v = plan_with_vram(m, rq);
    CHECK(!v.shared_on_device);
    CHECK(v.plan.non_expert == Tier::dram());
    CHECK(v.plan.kv_cache == Tier::dram());
    CHECK(v.plan.bytes_on(Tier::sim(0)) > 0);
    CHECK(v.plan.bytes_on(Tier::sim(0)) <= ne + kv - 1);
    REQUIRE(!v.notes.empty());
    CHECK(v.notes[0].find("do not fit the VRAM budget of sim:0") != std::string::npos);
    CHECK(v.notes[0].find("stay in DRAM") != std::string::npos);
  }
  SUBCASE("smaller than any expert: nothing on the device, and notes say why") {
    rq.device = DeviceBudget{Tier::gpu(0), 899999, std::nullopt};
    const VramPlan v = plan_with_vram(m, rq);
    CHECK(v.device_bytes_used == 0);
    CHECK(v.plan.used_devices().empty());
    REQUIRE(v.notes.size() == 2);
    CHECK(v.notes[1].find("32 of 32 experts do not fit the 899999 bytes left on gpu:0 (smallest left: 900000 bytes)") !=
          std::string::npos);
  }
  SUBCASE("shared parts exactly fill the device") {
    rq.device = DeviceBudget{Tier::sim(0), ne + kv, std::nullopt};
    const VramPlan v = plan_with_vram(m, rq);
    CHECK(v.shared_on_device);
    CHECK(v.plan.experts_on(Tier::sim(0)).empty());
    CHECK(v.device_bytes_used == ne + kv);
  }
  SUBCASE("errors") {
    rq.device = DeviceBudget{Tier::dram(), 1000000, std::nullopt};
    CHECK_THROWS_WITH_AS(plan_with_vram(m, rq), doctest::Contains("dram is not a device tier (expected gpu:N or sim:N)"),
                         moetier::Error);
    rq.device = DeviceBudget{Tier::sim(0), 0, std::nullopt};
    CHECK_THROWS_WITH_AS(plan_with_vram(m, rq), doctest::Contains("VRAM budget of sim:0 is 0 bytes"), moetier::Error);
    rq.device = DeviceBudget{Tier::sim(0), 1000000, std::nullopt};
    rq.usage = {{1, 2}};
    CHECK_THROWS_WITH_AS(plan_with_vram(m, rq), doctest::Contains("usage counts must be [5 layers][8 experts]"),
                         moetier::Error);
    rq.usage.clear();
    CHECK_THROWS_WITH_AS(plan_with_vram(ModelIdentity{"bad.gguf", 2, 8, {1}}, rq),
                         doctest::Contains("inconsistent model identity"), moetier::Error);
  }
}

TEST_CASE("plan_with_vram: the rest goes to DRAM and NVMe as plan_from_ram_budget places it") {
  const ModelIdentity m = model();
  const uint64_t ne = 3000000, kv = 500000;
  VramPlanRequest rq;
  rq.non_expert_bytes = ne;
  rq.kv_cache_bytes = kv;
  rq.device = DeviceBudget{Tier::sim(0), ne + kv + 8000000, 24.0};
  rq.min_cache_experts = 2;
  rq.policy = PolicyKind::Lfu;

  SUBCASE("a DRAM budget: device, DRAM and NVMe side by side; the non-expert weights do not count in DRAM") {
    const uint64_t dram = 12000000;
    rq.dram_budget_bytes = dram;
    const VramPlan v = plan_with_vram(m, rq);
    const PlacementPlan& p = v.plan;
    CHECK(!p.experts_on(Tier::sim(0)).empty());
    CHECK(!p.experts_on(Tier::Kind::Dram).empty());
    CHECK(!p.experts_on(Tier::Kind::Nvme).empty());
    CHECK(p.bytes_on(Tier::Kind::Dram) + p.cache_bytes <= dram);
    CHECK(p.cache_bytes >= 2 * planned_slot_bytes(m));
    CHECK(p.cache_policy == PolicyKind::Lfu);
    CHECK(p.bytes_on(Tier::sim(0)) + p.bytes_on(Tier::Kind::Dram) + p.bytes_on(Tier::Kind::Nvme) == all_expert_bytes(m));
    // JSON round trip of the whole plan.
    const PlacementPlan back = parse_placement_plan(plan_to_json(p));
    CHECK(back.experts == p.experts);
    CHECK(back.devices == p.devices);
    CHECK(back.non_expert == Tier::sim(0));
    CHECK(back.kv_cache == Tier::sim(0));
    CHECK(back.cache_bytes == p.cache_bytes);
  }
  SUBCASE("shared parts in DRAM count against the DRAM budget") {
    rq.device = DeviceBudget{Tier::sim(0), 2000000, std::nullopt};
    rq.dram_budget_bytes = ne - 1;
    CHECK_THROWS_WITH_AS(plan_with_vram(m, rq), doctest::Contains("smaller than the non-expert weights"), moetier::Error);
    rq.dram_budget_bytes = ne + 1000;
    CHECK_THROWS_WITH_AS(plan_with_vram(m, rq), doctest::Contains("less than one streamed expert"), moetier::Error);
  }
  SUBCASE("every expert on the device: a DRAM budget of 0 is enough") {
    rq.device = DeviceBudget{Tier::sim(0), ne + kv + all_expert_bytes(m), std::nullopt};
    rq.dram_budget_bytes = 0;
    const VramPlan v = plan_with_vram(m, rq);
    CHECK(v.notes.empty());
    CHECK(v.plan.bytes_on(Tier::sim(0)) == all_expert_bytes(m));
    CHECK(v.plan.cache_bytes == 0);
  }
}

TEST_CASE("shared_fits_on_device: no overflow") {
  CHECK(shared_fits_on_device(1, 2, 3));
  CHECK(!shared_fits_on_device(1, 3, 3));
  CHECK(!shared_fits_on_device(UINT64_MAX, 2, 3));
  CHECK(!shared_fits_on_device(2, UINT64_MAX, UINT64_MAX));
  CHECK(shared_fits_on_device(0, 0, 0));
}
