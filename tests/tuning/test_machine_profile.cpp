// The machine profile's JSON: a round trip keeps every figure and method; a malformed file, another
// schema, or a missing / mistyped / non-positive figure is one Error naming the file and the key.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "runtime/tuning/machine_profile.hpp"

using namespace moetier;
using namespace moetier::tuning;

namespace {

MachineProfile sample() {
  MachineProfile p;
  p.created = "2026-12-06T15:00:00Z";
  p.cpu = "test cpu";
  p.max_threads = 4;
  p.dram = {{1, 5.0, {"read", 1 << 20, 1, 3}}, {4, 12.0, {"read", 1 << 20, 4, 3}}};
  p.disk_dir = "/tmp";
  p.disk_backend = "io_uring, O_DIRECT";
  p.disk = {{1 << 20, 8, 0.5, {"reader", 1 << 26, 1, 1}}, {1 << 20, 32, 0.9, {"reader", 1 << 26, 1, 1}},
            {16 << 20, 32, 2.0, {"reader", 1 << 26, 1, 1}}};
  p.kernels = {{"Q4_K", 1, 4.0, 8.0, {"gemv", 1 << 28, 4, 2}}, {"Q4_K", 32, 3.0, 100.0, {"gemm", 1 << 28, 4, 2}},
               {"Q4_K", 512, 2.0, 300.0, {"gemm", 1 << 28, 4, 2}}};
  p.overheads = {{"pool_dispatch", 1.5, {"empty parallel_for", 0, 4, 100}},
                 {"attention", 40.0, {"attention", 1 << 22, 4, 9}, 512, 8192},
                 {"router", 3.0, {"router", 1 << 20, 4, 9}, 0, 262144}};
  return p;
}

std::string error_of(const std::string& text) {
  try {
    machine_profile_from_json(text, "m.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("machine profile: JSON round trip and look-ups") {
  const MachineProfile p = sample();
  const MachineProfile q = machine_profile_from_json(machine_profile_to_json(p), "x");
  CHECK(machine_profile_to_json(q) == machine_profile_to_json(p));
  CHECK(q.dram.size() == 2);
  CHECK(q.kernels[1].how.method == "gemm");
  CHECK(q.kernels[1].how.repetitions == 2);
  // Look-ups: the largest thread count <= asked (else the smallest), the nearest read size's best depth,
  // the nearest batch size (log scale).
  CHECK(q.dram_gbps(4) == 12.0);
  CHECK(q.dram_gbps(3) == 5.0);
  CHECK(q.dram_gbps(64) == 12.0);
  CHECK(q.disk_gbps(1 << 20).value() == 0.9);
  CHECK(q.disk_gbps(12 << 20).value() == 2.0);
  CHECK(q.kernel("Q4_K", 100)->tokens == 32);
  CHECK(q.kernel("Q4_K", 300)->tokens == 512);
  CHECK(q.kernel("Q6_K", 1) == nullptr);
  CHECK(q.overhead_us("pool_dispatch") == 1.5);
  CHECK(q.overhead_us("nothing") == 0);
  // The per-token figures' context and shape round-trip; pool_dispatch has neither.
  REQUIRE(q.overhead("attention") != nullptr);
  CHECK(q.overhead("attention")->context == 512);
  CHECK(q.overhead("attention")->elements == 8192);
  CHECK(q.overhead("router")->context == 0);
  CHECK(q.overhead("pool_dispatch")->elements == 0);
}

TEST_CASE("machine profile: a profile written before the per-token figures still reads") {
  nlohmann::json j = nlohmann::json::parse(machine_profile_to_json(sample()));
  j["overheads"] = nlohmann::json::array({{{"what", "pool_dispatch"}, {"microseconds", 1.5},
                                           {"how", {{"method", "m"}, {"bytes", 0}, {"threads", 4}, {"repetitions", 100}}}}});
  const MachineProfile q = machine_profile_from_json(j.dump(), "old.json");
  CHECK(q.overhead_us("pool_dispatch") == 1.5);
  CHECK(q.overhead("attention") == nullptr);
  CHECK(q.overhead_us("router") == 0);
}

TEST_CASE("machine profile: bad files are one error naming the file and the key") {
  const std::string good = machine_profile_to_json(sample());
  auto edited = [&](auto&& f) {
    nlohmann::json j = nlohmann::json::parse(good);
    f(j);
    return j.dump();
  };
  struct Case {
    const char* name;
    std::string text;
    std::vector<std::string> parts;
  };
  const std::vector<Case> cases{
      {"not JSON", "{\"schema\": ", {"m.json", "not valid JSON"}},
      {"other schema", edited([](auto& j) { j["schema"] = "moetier.machine/2"; }), {"m.json", "'schema'", "moetier.machine/1"}},
      {"no schema", edited([](auto& j) { j.erase("schema"); }), {"m.json", "'schema'", "missing"}},
      {"zero bandwidth", edited([](auto& j) { j["dram"][1]["gbps"] = 0; }), {"m.json", "'dram[1].gbps'", "> 0"}},
      {"string bandwidth", edited([](auto& j) { j["disk"]["reads"][0]["gbps"] = "fast"; }), {"'disk.reads[0].gbps'", "number"}},
      {"no method", edited([](auto& j) { j["kernels"][0]["how"].erase("method"); }), {"'kernels[0].how.method'", "missing"}},
      {"no DRAM figure", edited([](auto& j) { j["dram"] = nlohmann::json::array(); }), {"'dram'", "at least one"}},
      {"negative threads", edited([](auto& j) { j["dram"][0]["threads"] = -2; }), {"'dram[0].threads'"}},
      {"zero context", edited([](auto& j) { j["overheads"][1]["context"] = 0; }), {"'overheads[1].context'", "> 0"}},
      {"string elements", edited([](auto& j) { j["overheads"][2]["elements"] = "x"; }), {"'overheads[2].elements'", "number"}},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    const std::string e = error_of(c.text);
    REQUIRE(!e.empty());
    CHECK(e.find('\n') == std::string::npos);
    for (const std::string& part : c.parts) CHECK_MESSAGE(e.find(part) != std::string::npos, e);
  }
}
