// Device tier edge cases found by an adversarial pass (both failed before the fix): (1) with the
// non-expert weights planned onto sim:0 the DRAM total of `plan` stays within --ram-budget (the host keeps
// them: attention runs on the CPU); (2) --device-slots works when the static plan puts nothing on the
// device.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/run_util.hpp"

using Json = nlohmann::json;
using namespace moetier;

namespace {

struct TinyModel {
  test::TempDir dir;
  std::string path = dir.file("tiny-deepseek2.gguf");  // shared experts and a dense layer: FFNs a device computes
  TinyModel() {
    const test::RunResult r =
        test::run_moetier(dir, {"synth", "--preset", "tiny-deepseek2", "--type", "Q8_0", "-o", path});
    if (r.status != 0) FAIL("moetier synth failed: " << r.err);
  }
};
const TinyModel& tiny_model() {
  static TinyModel m;
  return m;
}

/// plan --json; an empty object when `allow_refusal` and the budget was refused as too small.
Json plan_json(const std::vector<std::string>& extra, bool allow_refusal = false) {
  const TinyModel& m = tiny_model();
  std::vector<std::string> a = {"plan", "-m", m.path, "-c", "512", "--json"};
  a.insert(a.end(), extra.begin(), extra.end());
  const test::RunResult r = test::run_moetier(m.dir, a);
  INFO(r.err);
  if (allow_refusal && r.status == 1 && r.err.find("cannot hold this run") != std::string::npos) return Json::object();
  REQUIRE(r.status == 0);
  return Json::parse(r.out);
}

}  // namespace

TEST_CASE("plan with the non-expert weights on sim:0 keeps the DRAM total within --ram-budget") {
  // The fixed parts (scratch, metadata, overhead, KV cache, non-expert) from a roomy budget, then budgets
  // that leave room for the reader's I/O state (~1 MiB) and 0.5-1 MiB of the 1.63 MiB of DRAM/NVMe experts.
  const Json roomy = plan_json({"--sim-device", "1MiB", "--ram-budget", "1GiB"});
  const Json& rm = roomy["memory"];
  const uint64_t fixed = rm["total_bytes"].get<uint64_t>() - rm["resident_expert_bytes"].get<uint64_t>() -
                         rm["expert_cache_bytes"].get<uint64_t>();
  // The metadata part is measured by each process (it can differ by a MiB between runs, more under
  // sanitizers): a budget the run finds too small is skipped, but most must be accepted and kept.
  int accepted = 0;
  for (const uint64_t extra : {1536u << 10, 2048u << 10, 3072u << 10, 4096u << 10}) {
    const uint64_t budget = fixed + extra;
    CAPTURE(budget);
    const Json j = plan_json({"--sim-device", "1MiB", "--ram-budget", std::to_string(budget)}, true);
    if (j.empty()) continue;
    ++accepted;
    REQUIRE(j["device"]["non_expert"] == true);  // the case in question: non-expert weights planned on sim:0
    CHECK(j["memory"]["total_bytes"].get<uint64_t>() <= j["memory"]["budget_bytes"].get<uint64_t>());
  }
  CHECK(accepted >= 2);
}

TEST_CASE("--device-slots works when the static plan puts nothing on the device") {
  const TinyModel& m = tiny_model();
  // Static budget = 1GiB - slots = 1 byte: no expert fits statically; every expert fits the slots.
  const test::RunResult r =
      test::run_moetier(m.dir, {"run", "-m", m.path, "-p", "Once upon a time", "-n", "16", "--temp", "0", "-c", "256",
                                "--json", "--sim-device", "1GiB,0", "--device-slots", "1073741823"});
  INFO(r.err);
  REQUIRE(r.status == 0);
  const Json j = Json::parse(r.out);
  REQUIRE(j.contains("device"));
  REQUIRE(j["device"].contains("dynamic_slots"));
  CHECK(j["device"]["dynamic_slots"]["placed"].get<uint64_t>() > 0);
}
