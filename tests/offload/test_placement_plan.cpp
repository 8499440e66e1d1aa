// Tests of offload/placement_plan: JSON round trip, each validation error naming its JSON path,
// backend validation, and the builders.
#include <doctest/doctest.h>

#include <filesystem>
#include <random>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "offload/placement_plan.hpp"

using namespace moetier::offload;
using nlohmann::json;

namespace {

// 5 blocks, the first dense (no routed experts), 8 experts each, sizes differ per layer.
ModelIdentity model() {
  return ModelIdentity{"tiny-moe.gguf", 5, 8, {0, 1000000, 1000000, 1200000, 900000}};
}

PlacementPlan sample_plan() {
  PlacementPlan p = plan_experts_on_nvme(model(), 0.25, 0, PolicyKind::FreqDecay);
  p.experts[2][1] = Tier::gpu(0);
  p.experts[4][0] = Tier::gpu(1);
  return p;
}

void expect_same(const PlacementPlan& a, const PlacementPlan& b) {
  CHECK(a.model == b.model);
  CHECK(a.non_expert == b.non_expert);
  CHECK(a.cache_bytes == b.cache_bytes);
  CHECK(a.cache_policy == b.cache_policy);
  CHECK(a.experts == b.experts);
}

// Parses `j` and expects an error containing both `path` and `what`.
void expect_error(const json& j, const std::string& path, const std::string& what) {
  CAPTURE(path);
  try {
    parse_placement_plan(j.dump(), "plan.json");
    FAIL("no error for ", path);
  } catch (const moetier::Error& e) {
    const std::string msg = e.what();
    CAPTURE(msg);
    CHECK(msg.find("plan.json: " + path + ":") != std::string::npos);
    CHECK(msg.find(what) != std::string::npos);
  }
}

}  // namespace

TEST_CASE("tier strings") {
  Tier t;
  CHECK((parse_tier("gpu:0", t) && t == Tier::gpu(0)));
  CHECK((parse_tier("gpu:12", t) && t == Tier::gpu(12)));
  CHECK((parse_tier("dram", t) && t == Tier::dram()));
  CHECK((parse_tier("nvme", t) && t == Tier::nvme()));
  for (const char* bad : {"gpu", "gpu:", "gpu:-1", "gpu:+1", "gpu:1x", "GPU:0", "ram", "", "nvme ", "sim:00", "gpu:01"})
    CHECK_MESSAGE(!parse_tier(bad, t), bad);
  for (const Tier x : {Tier::gpu(3), Tier::dram(), Tier::nvme()}) CHECK((parse_tier(to_string(x), t) && t == x));
}

TEST_CASE("placement plan: JSON round trip (string and file)") {
  const PlacementPlan p = sample_plan();
  const std::string text = plan_to_json(p);
  CHECK(json::parse(text)["schema"] == std::string(kPlacementSchema));
  expect_same(parse_placement_plan(text), p);
  const std::string path =
      (std::filesystem::temp_directory_path() / ("moetier-plan-" + std::to_string(::getpid()) + ".json")).string();
  write_placement_plan(path, p);
  expect_same(read_placement_plan(path), p);
  std::filesystem::remove(path);
  CHECK_THROWS_WITH_AS(read_placement_plan(path), doctest::Contains("cannot open"), moetier::Error);
}

TEST_CASE("placement plan: every validation error names its JSON path") {
  const json good = json::parse(plan_to_json(sample_plan()));
  auto with = [&](auto&& edit) {
    json j = good;
    edit(j);
    return j;
  };
  expect_error(with([](json& j) { j["schema"] = "moetier.placement/2"; }), "/schema", "unsupported version");
  expect_error(with([](json& j) { j["schema"] = "something/1"; }), "/schema", "not a placement plan");
  expect_error(with([](json& j) { j.erase("schema"); }), "/schema", "missing");
  expect_error(with([](json& j) { j.erase("model"); }), "/model", "missing");
  expect_error(with([](json& j) { j["model"]["n_layers"] = 6; }), "/model/expert_bytes", "expected n_layers = 6");
  expect_error(with([](json& j) { j["model"]["n_layers"] = -1; }), "/model/n_layers", "non-negative integer");
  expect_error(with([](json& j) { j["model"]["n_experts"] = 0; }), "/model/n_experts", "out of range");
  expect_error(with([](json& j) { j["model"]["expert_bytes"][2] = "big"; }), "/model/expert_bytes/2",
               "non-negative integer");
  expect_error(with([](json& j) { j["model"]["file"] = 3; }), "/model/file", "expected a string");
  expect_error(with([](json& j) { j["model"]["extra"] = 1; }), "/model/extra", "unknown key");
  expect_error(with([](json& j) { j["color"] = "blue"; }), "/color", "unknown key");
  expect_error(with([](json& j) { j["non_expert"] = "nvme"; }), "/non_expert", "not a home for non-expert");
  expect_error(with([](json& j) { j["non_expert"] = "gpu"; }), "/non_expert", "bad tier");
  expect_error(with([](json& j) { j["cache"]["policy"] = "mru"; }), "/cache/policy", "unknown eviction policy");
  expect_error(with([](json& j) { j["cache"]["bytes"] = 10; }), "/cache/bytes", "cannot hold one streamed expert");
  expect_error(with([](json& j) { j["cache"].erase("bytes"); }), "/cache/bytes", "missing");
  expect_error(with([](json& j) { j["cache"] = 5; }), "/cache", "expected an object");
  expect_error(with([](json& j) { j["experts"][3].erase(7); }), "/experts/3", "has 7 experts, expected 8");
  expect_error(with([](json& j) { j["experts"][0].push_back("dram"); }), "/experts/0", "expected 0");
  expect_error(with([](json& j) { j["experts"].erase(4); }), "/experts", "has 4 layers, expected n_layers = 5");
  expect_error(with([](json& j) { j["experts"][1][5] = "gpu:x"; }), "/experts/1/5", "bad tier \"gpu:x\"");
  expect_error(with([](json& j) { j["experts"][2][0] = 7; }), "/experts/2/0", "bad tier 7");
  expect_error(with([](json& j) { j["experts"][2] = "dram"; }), "/experts/2", "expected an array of tiers");
  CHECK_THROWS_WITH_AS(parse_placement_plan("{\"schema\":", "p.json"), doctest::Contains("p.json: invalid JSON"),
                       moetier::Error);
  CHECK_THROWS_WITH_AS(parse_placement_plan("[1]", "p.json"), doctest::Contains("p.json: /: expected a JSON object"),
                       moetier::Error);
}

TEST_CASE("placement plan: gpu tiers are refused without a GPU backend") {
  PlacementPlan p = sample_plan();
  CHECK_NOTHROW(p.validate_for_backends(true));
  CHECK_THROWS_WITH_AS(p.validate_for_backends(false), doctest::Contains("2 experts on a GPU (first: layer 2 expert 1 on gpu:0)"),
                       moetier::Error);
  p.non_expert = Tier::gpu(0);
  CHECK_THROWS_WITH_AS(p.validate_for_backends(false), doctest::Contains("non-expert weights on gpu:0"),
                       moetier::Error);
  for (auto& layer : p.experts)
    for (Tier& t : layer)
      if (t.kind == Tier::Kind::Gpu) t = Tier::dram();
  CHECK_THROWS_WITH_AS(p.validate_for_backends(false), doctest::Contains("no GPU backend"), moetier::Error);
  p.non_expert = Tier::dram();
  CHECK_NOTHROW(p.validate_for_backends(false));
  CHECK_NOTHROW(p.check_model(model()));
  ModelIdentity other = model();
  other.expert_bytes[3] += 1;
  CHECK_THROWS_AS(p.check_model(other), moetier::Error);
}

TEST_CASE("plan_experts_on_nvme: fraction, spread over layers, cache") {
  const ModelIdentity m = model();
  const size_t n_routed = 4 * 8;
  for (const double fraction : {0.0, 0.1, 0.25, 0.5, 1.0}) {
    CAPTURE(fraction);
    const PlacementPlan p = plan_experts_on_nvme(m, fraction);
    const auto nvme = p.experts_on(Tier::Kind::Nvme);
    CHECK(nvme.size() == static_cast<size_t>(std::llround(fraction * n_routed)));
    CHECK(p.experts_on(Tier::Kind::Dram).size() + nvme.size() == n_routed);
    std::vector<int> per_layer(5, 0);
    for (ExpertId id : nvme) ++per_layer[static_cast<size_t>(id.layer)];
    CHECK(per_layer[0] == 0);
    const auto [lo, hi] = std::minmax_element(per_layer.begin() + 1, per_layer.end());
    CHECK(*hi - *lo <= 1);
    if (nvme.empty()) {
      CHECK(p.cache_bytes == 0);
    } else {
      CHECK(p.cache_bytes >= 1200000);
    }
    CHECK_NOTHROW(p.validate());
  }
  CHECK_THROWS_AS(plan_experts_on_nvme(m, 1.5), moetier::Error);
  CHECK_THROWS_AS(plan_experts_on_nvme(m, -0.1), moetier::Error);
}

TEST_CASE("plan_from_ram_budget: everything fits, spread evenly, most-routed first, too small") {
  const ModelIdentity m = model();
  uint64_t all_experts = 0;
  for (uint64_t b : m.expert_bytes) all_experts += 8 * b;
  const uint64_t non_expert = 3000000;

  SUBCASE("everything fits") {
    const PlacementPlan p = plan_from_ram_budget(m, non_expert + all_experts, non_expert);
    CHECK(p.experts_on(Tier::Kind::Nvme).empty());
    CHECK(p.cache_bytes == 0);
  }
  SUBCASE("without usage: resident experts spread evenly over equal layers") {
    RamBudgetOptions o;
    o.min_cache_experts = 2;
    const uint64_t budget = non_expert + all_experts / 2;
    const PlacementPlan p = plan_from_ram_budget(m, budget, non_expert, {}, o);
    CHECK(!p.experts_on(Tier::Kind::Nvme).empty());
    CHECK(non_expert + p.bytes_on(Tier::Kind::Dram) + p.cache_bytes <= budget);
    CHECK(p.cache_bytes >= 2 * 1200000);
    std::vector<int> resident(5, 0);
    for (ExpertId id : p.experts_on(Tier::Kind::Dram)) ++resident[static_cast<size_t>(id.layer)];
    CHECK(std::abs(resident[1] - resident[2]) <= 1);  // layers 1 and 2 have equal sizes
    CHECK_NOTHROW(p.validate());
  }
  SUBCASE("with usage: every resident expert is routed at least as often as every streamed one") {
    std::mt19937_64 rng(8);
    std::vector<std::vector<uint64_t>> usage(5, std::vector<uint64_t>(8, 0));
    for (size_t l = 1; l < 5; ++l)
      for (auto& c : usage[l]) c = rng() % 1000;
    // Same-size layers only (1 and 2), so the greedy fill cannot skip a big expert for a smaller one.
    const ModelIdentity even{"even.gguf", 5, 8, {0, 1000000, 1000000, 1000000, 1000000}};
    const PlacementPlan p = plan_from_ram_budget(even, non_expert + 20000000, non_expert, usage);
    const auto dram = p.experts_on(Tier::Kind::Dram);
    const auto nvme = p.experts_on(Tier::Kind::Nvme);
    REQUIRE(!dram.empty());
    REQUIRE(!nvme.empty());
    uint64_t min_dram = UINT64_MAX, max_nvme = 0;
    for (ExpertId id : dram) min_dram = std::min(min_dram, usage[id.layer][id.expert]);
    for (ExpertId id : nvme) max_nvme = std::max(max_nvme, usage[id.layer][id.expert]);
    CHECK(min_dram >= max_nvme);
    CHECK(non_expert + p.bytes_on(Tier::Kind::Dram) + p.cache_bytes <= non_expert + 20000000);
    CHECK_THROWS_AS(plan_from_ram_budget(even, non_expert + 20000000, non_expert, {{1, 2}}), moetier::Error);
  }
  SUBCASE("budget too small") {
    CHECK_THROWS_WITH_AS(plan_from_ram_budget(m, non_expert - 1, non_expert), doctest::Contains("non-expert"),
                         moetier::Error);
    CHECK_THROWS_WITH_AS(plan_from_ram_budget(m, non_expert + 1000, non_expert),
                         doctest::Contains("less than one streamed expert"), moetier::Error);
  }
}

// ---- device tiers (sim:N beside gpu:N), the KV cache's home, device budgets ----

namespace {

// sample_plan() with two experts and the non-expert weights and KV cache on sim:0, and budgets for sim:0
// (with a copy rate) and gpu:1.
PlacementPlan device_plan() {
  PlacementPlan p = sample_plan();
  p.experts[1][0] = Tier::sim(0);
  p.experts[3][2] = Tier::sim(0);
  p.non_expert = Tier::sim(0);
  p.kv_cache = Tier::sim(0);
  p.devices = {DeviceBudget{Tier::sim(0), 5000000, 12.5}, DeviceBudget{Tier::gpu(1), 4000000, std::nullopt}};
  return p;
}

}  // namespace

TEST_CASE("tier strings: sim:N") {
  Tier t;
  CHECK((parse_tier("sim:0", t) && t == Tier::sim(0) && t.is_device()));
  CHECK((parse_tier("sim:7", t) && t == Tier::sim(7)));
  for (const char* bad : {"sim", "sim:", "sim:-1", "sim:+1", "sim:0x", "SIM:0", "sim:0 "})
    CHECK_MESSAGE(!parse_tier(bad, t), bad);
  CHECK(to_string(Tier::sim(2)) == "sim:2");
  CHECK(Tier::gpu(0).is_device());
  CHECK(!Tier::dram().is_device());
  CHECK(!Tier::nvme().is_device());
  CHECK(Tier::sim(0) != Tier::gpu(0));
}

TEST_CASE("placement plan: sim tiers, the KV cache's home and device budgets survive a JSON round trip") {
  const PlacementPlan p = device_plan();
  const std::string text = plan_to_json(p);
  const json j = json::parse(text);
  CHECK(j["schema"] == "moetier.placement/1");
  CHECK(j["non_expert"] == "sim:0");
  CHECK(j["kv_cache"] == "sim:0");
  CHECK(j["devices"][0] == json({{"tier", "sim:0"}, {"bytes", 5000000}, {"h2d_gbps", 12.5}}));
  CHECK(j["devices"][1] == json({{"tier", "gpu:1"}, {"bytes", 4000000}}));
  CHECK(j["experts"][1][0] == "sim:0");
  const PlacementPlan back = parse_placement_plan(text);
  expect_same(back, p);
  CHECK(back.kv_cache == p.kv_cache);
  CHECK(back.devices == p.devices);
  CHECK(p.experts_on(Tier::sim(0)) == std::vector<ExpertId>{{1, 0}, {3, 2}});
  CHECK(p.bytes_on(Tier::sim(0)) == 1000000 + 1200000);
  CHECK(p.bytes_on(Tier::gpu(1)) == 900000);
  CHECK(p.bytes_on(Tier::Kind::Sim) == 1000000 + 1200000);
  CHECK(p.used_devices() == std::vector<Tier>{Tier::gpu(0), Tier::gpu(1), Tier::sim(0)});
  REQUIRE(p.device_budget(Tier::gpu(1)) != nullptr);
  CHECK(p.device_budget(Tier::gpu(1))->bytes == 4000000);
  CHECK(p.device_budget(Tier::gpu(0)) == nullptr);
}

TEST_CASE("placement plan: files without kv_cache and devices read as before (KV cache in DRAM, no budgets)") {
  const PlacementPlan p = sample_plan();
  const std::string text = plan_to_json(p);
  // Written only when not the default: a plan without device tiers is the text it was before them.
  CHECK(text.find("kv_cache") == std::string::npos);
  CHECK(text.find("devices") == std::string::npos);
  json j = json::parse(text);
  const PlacementPlan back = parse_placement_plan(j.dump());
  CHECK(back.kv_cache == Tier::dram());
  CHECK(back.devices.empty());
  j["kv_cache"] = "dram";  // stated explicitly: the same plan
  expect_same(parse_placement_plan(j.dump()), p);
}

TEST_CASE("placement plan: validation errors of device tiers name their JSON path") {
  const json good = json::parse(plan_to_json(device_plan()));
  auto with = [&](auto&& edit) {
    json j = good;
    edit(j);
    return j;
  };
  expect_error(with([](json& j) { j["kv_cache"] = "nvme"; }), "/kv_cache", "not a home for the KV cache");
  expect_error(with([](json& j) { j["kv_cache"] = "sim"; }), "/kv_cache", "bad tier \"sim\"");
  expect_error(with([](json& j) { j["non_expert"] = "sim:-1"; }), "/non_expert", "bad tier");
  expect_error(with([](json& j) { j["experts"][1][5] = "sim:x"; }), "/experts/1/5", "bad tier \"sim:x\"");
  expect_error(with([](json& j) { j["devices"] = "sim:0"; }), "/devices", "expected an array");
  expect_error(with([](json& j) { j["devices"][0] = 3; }), "/devices/0", "expected an object");
  expect_error(with([](json& j) { j["devices"][0]["tier"] = "dram"; }), "/devices/0/tier", "not a device");
  expect_error(with([](json& j) { j["devices"][1]["tier"] = "sim:0"; }), "/devices/1/tier", "listed twice");
  expect_error(with([](json& j) { j["devices"][0].erase("tier"); }), "/devices/0/tier", "missing");
  expect_error(with([](json& j) { j["devices"][0].erase("bytes"); }), "/devices/0/bytes", "missing");
  expect_error(with([](json& j) { j["devices"][0]["bytes"] = 0; }), "/devices/0/bytes", "must be > 0");
  expect_error(with([](json& j) { j["devices"][0]["bytes"] = -5; }), "/devices/0/bytes", "non-negative integer");
  expect_error(with([](json& j) { j["devices"][0]["bytes"] = 2000000; }), "/devices/0/bytes",
               "cannot hold the 2200000 bytes of experts placed on it");
  expect_error(with([](json& j) { j["devices"][0]["h2d_gbps"] = -1; }), "/devices/0/h2d_gbps", "expected a rate");
  expect_error(with([](json& j) { j["devices"][0]["h2d_gbps"] = "fast"; }), "/devices/0/h2d_gbps", "expected a rate");
  expect_error(with([](json& j) { j["devices"][1]["h2d_gbps"] = 24; }), "/devices/1/h2d_gbps",
               "only a simulated device");
  expect_error(with([](json& j) { j["devices"][0]["color"] = 1; }), "/devices/0/color", "unknown key");
  // A budget of exactly the experts placed there, and a 0 (unpaced) rate, are fine.
  CHECK_NOTHROW(parse_placement_plan(with([](json& j) { j["devices"][0]["bytes"] = 2200000; }).dump()));
  CHECK_NOTHROW(parse_placement_plan(with([](json& j) { j["devices"][0]["h2d_gbps"] = 0; }).dump()));
}

TEST_CASE("placement plan: validate_for_backends names the device tiers a process lacks") {
  const PlacementPlan p = device_plan();  // gpu:0 (1 expert), gpu:1 (1 expert), sim:0 (2 experts, non-expert, KV)
  CHECK_NOTHROW(p.validate_for_backends(DeviceTiers{2, 1}));
  struct Case {
    DeviceTiers have;
    std::vector<std::string> says;
    std::vector<std::string> not_says;
  };
  const std::vector<Case> cases = {
      {{0, 0},
       {"2 experts on a GPU (first: layer 2 expert 1 on gpu:0)", "2 experts on a simulated device (first: layer 1 expert 0 on sim:0)",
        "non-expert weights on sim:0", "KV cache on sim:0", "no GPU backend", "no simulated device",
        "gpu:0, gpu:1, sim:0 missing"},
       {}},
      {{1, 1}, {"1 expert on a GPU (first: layer 4 expert 0 on gpu:1)", "1 CUDA device (gpu:0) and the simulated device sim:0", ": gpu:1 missing"},
       {"sim:0 missing", "non-expert", "KV cache"}},
      {{2, 0}, {"2 experts on a simulated device", "the non-expert weights on sim:0 and the KV cache on sim:0",
                "no simulated device (--sim-device turns on sim:0)", ": sim:0 missing"},
       {"on a GPU"}},
  };
  for (const Case& c : cases) {
    CAPTURE(c.have.n_gpu);
    CAPTURE(c.have.n_sim);
    try {
      p.validate_for_backends(c.have);
      FAIL("accepted");
    } catch (const moetier::Error& e) {
      const std::string msg = e.what();
      CAPTURE(msg);
      CHECK(msg.find('\n') == std::string::npos);
      for (const auto& s : c.says) CHECK_MESSAGE(msg.find(s) != std::string::npos, s);
      for (const auto& s : c.not_says) CHECK_MESSAGE(msg.find(s) == std::string::npos, s);
    }
  }
  // The pre-sim signature: any gpu index, no simulated device.
  CHECK_THROWS_WITH_AS(p.validate_for_backends(true), doctest::Contains("sim:0 missing"), moetier::Error);
  CHECK_NOTHROW(sample_plan().validate_for_backends(true));
}

TEST_CASE("placement plan: check_device_budgets adds the non-expert weights and KV cache to a device's experts") {
  const PlacementPlan p = device_plan();  // sim:0: 2200000 bytes of experts, budget 5000000; gpu:1: 900000 of 4000000
  CHECK_NOTHROW(p.check_device_budgets(1000000, 1800000));   // exactly 5000000
  CHECK_THROWS_WITH_AS(p.check_device_budgets(1000000, 1800001),
                       doctest::Contains("sim:0 needs 2200000 bytes of experts + 1000000 bytes of non-expert weights + "
                                         "1800001 bytes of KV cache, more than its budget of 5000000 bytes"),
                       moetier::Error);
  CHECK_THROWS_AS(p.check_device_budgets(UINT64_MAX, UINT64_MAX), moetier::Error);  // no wrap-around
  PlacementPlan q = p;
  q.kv_cache = Tier::dram();
  CHECK_NOTHROW(q.check_device_budgets(1000000, UINT64_MAX));  // the KV cache is not on the device
}
