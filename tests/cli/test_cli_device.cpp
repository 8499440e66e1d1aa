// `moetier run` with the simulated device (sim:0) through the built binary (MOETIER_BIN): the generated
// tokens and the last prompt logits are bit-identical to the run without a device, with everything on
// sim:0, with part of the experts there (--vram-budget), together with --ram-budget streaming from NVMe,
// with dynamic slots (--device-slots), and from a saved plan; --json reports the device's work, -v the
// executor's per-layer split; bad combinations are one line.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/run_util.hpp"

using Json = nlohmann::json;
using namespace moetier;

namespace {

using test::check_one_line_error;
using test::RunResult;
using test::slurp;
using test::TempDir;

struct Model {
  TempDir dir;
  std::string path = dir.file("tiny-deepseek2.gguf");  // a dense lead layer and shared experts
  Model() {
    const RunResult r = test::run_moetier(dir, {"synth", "--preset", "tiny-deepseek2", "--type", "Q8_0", "-o", path});
    if (r.status != 0) FAIL("moetier synth failed: " << r.err);
  }
};
const Model& model() {
  static Model m;
  return m;
}

struct Out {
  RunResult r;
  Json j;
  std::string logits;
};

/// run --json --dump-logits with `extra` options.
Out run(const std::vector<std::string>& extra) {
  const Model& m = model();
  static int n = 0;
  const std::string logits = m.dir.file("logits-" + std::to_string(n++) + ".bin");
  std::vector<std::string> a = {"run", "-m", m.path, "-p", "The quick brown fox jumps over the lazy dog", "-n", "12",
                                "--temp", "0", "-c", "256", "-t", "2", "--json", "--dump-logits", logits};
  a.insert(a.end(), extra.begin(), extra.end());
  Out o;
  o.r = test::run_moetier(m.dir, a);
  INFO(o.r.err);
  REQUIRE(o.r.status == 0);
  o.j = Json::parse(o.r.out);
  o.logits = slurp(logits);
  return o;
}

/// A saved plan with experts on sim:0 (a 1 MiB budget of a 64 MiB device), every other DRAM expert moved
/// to NVMe and a 512 KiB cache for them.
std::string device_nvme_plan() {
  const Model& m = model();
  const std::string path = m.dir.file("device-nvme-plan.json");
  const RunResult r = test::run_moetier(m.dir, {"plan", "-m", m.path, "-c", "256", "--dram-gbps", "10", "--sim-device",
                                                "64MiB,0", "--vram-budget", "1MiB", "-o", path});
  REQUIRE_MESSAGE(r.status == 0, r.err);
  Json p = Json::parse(slurp(path));
  bool flip = false;
  for (auto& layer : p["experts"])
    for (auto& t : layer)
      if (t == "dram" && (flip = !flip)) t = "nvme";
  p["cache"]["bytes"] = 512u << 10;
  test::spit(path, p.dump());
  return path;
}

}  // namespace

TEST_CASE("run with the simulated device: same tokens and logits as without, and the device did the work") {
  const Out base = run({});
  REQUIRE(!base.logits.empty());
  REQUIRE(!base.j.contains("device"));
  struct Case {
    const char* name;
    std::vector<std::string> opts;
    bool all_on_device;
  };
  const Case cases[] = {
      {"everything on sim:0", {"--sim-device", "64MiB,0"}, true},
      {"part of the experts (--vram-budget)", {"--sim-device", "64MiB,0", "--vram-budget", "1MiB"}, false},
      {"device + experts streamed from NVMe", {"--plan", device_nvme_plan()}, false},
      {"dynamic slots", {"--sim-device", "64MiB,0", "--vram-budget", "1MiB", "--device-slots", "512KiB"}, false},
      {"paced copies", {"--sim-device", "64MiB,4GB/s"}, true},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    const Out o = run(c.opts);
    CHECK(o.j["generated_tokens"] == base.j["generated_tokens"]);
    CHECK(o.logits == base.logits);  // bit for bit
    REQUIRE(o.j.contains("device"));
    const Json& d = o.j["device"];
    CHECK(d["name"] == "sim:0");
    CHECK(d["device_groups"].get<uint64_t>() > 0);
    CHECK(d["used_bytes"].get<uint64_t>() <= d["capacity_bytes"].get<uint64_t>());
    CHECK(d["h2d_bytes"].get<uint64_t>() >= d["used_bytes"].get<uint64_t>() - 0);
    if (c.all_on_device) CHECK(d["cpu_groups"].get<uint64_t>() == 0);
    else CHECK(d["cpu_groups"].get<uint64_t>() > 0);
    if (std::string(c.name) == "dynamic slots") {
      REQUIRE(d.contains("dynamic_slots"));
      CHECK(d["dynamic_slots"]["placed"].get<uint64_t>() > 0);
    }
    if (std::string(c.name).find("NVMe") != std::string::npos) REQUIRE(o.j.contains("expert_cache"));
  }
}

TEST_CASE("run -v with a device prints the placement and the executor's per-layer split") {
  const Out o = run({"--sim-device", "64MiB,0", "--vram-budget", "2MiB", "-v"});
  CHECK(o.r.err.find("sim:0:") != std::string::npos);
  CHECK(o.r.err.find("experts and") != std::string::npos);
  CHECK(o.r.err.find("executor:") != std::string::npos);
  CHECK(o.r.err.find("layer   1: cpu") != std::string::npos);
}

TEST_CASE("a saved device plan runs again with the same bits") {
  const Model& m = model();
  const std::string plan = m.dir.file("device-plan.json");
  const Out a = run({"--sim-device", "64MiB,0", "--vram-budget", "2MiB", "--save-plan", plan});
  const Out b = run({"--plan", plan});  // the device comes from the plan's "devices" entry
  CHECK(b.logits == a.logits);
  REQUIRE(b.j.contains("device"));
  CHECK(b.j["device"]["device_groups"].get<uint64_t>() > 0);
}

TEST_CASE("plan: a device takes the shared experts and dense FFNs it computes, or says why not") {
  const Model& m = model();
  const auto plan = [&](const std::string& sim) {
    const RunResult r = test::run_moetier(m.dir, {"plan", "-m", m.path, "-c", "256", "--dram-gbps", "10", "--sim-device", sim, "--json"});
    INFO(r.err);
    REQUIRE(r.status == 0);
    return Json::parse(r.out);
  };
  const Json big = plan("64MiB");
  CHECK(big["device"]["non_expert"] == true);
  const uint64_t ffn = big["device"]["non_expert_bytes"].get<uint64_t>();
  CHECK(ffn > 0);
  CHECK(big["device"]["kv_cache"] == false);  // attention runs on the CPU: the KV cache stays on the host
  CHECK(big["memory"]["kv_cache_bytes"].get<uint64_t>() > 0);
  CHECK(big["memory"]["non_expert_bytes"].get<uint64_t>() > ffn);  // the host keeps every non-expert weight
  // A device smaller than those FFNs takes experts only, and a note says so.
  const Json small = plan(std::to_string(ffn - 1));
  CHECK(small["device"]["non_expert"] == false);
  bool noted = false;
  for (const auto& n : small["notes"]) noted |= n.get<std::string>().find("do not fit the VRAM budget") != std::string::npos;
  CHECK(noted);
}

TEST_CASE("device options that cannot work are one line") {
  const Model& m = model();
  const auto bad = [&](const std::vector<std::string>& extra, const std::vector<std::string>& parts) {
    std::vector<std::string> a = {"run", "-m", m.path, "-p", "hi", "-n", "1"};
    a.insert(a.end(), extra.begin(), extra.end());
    check_one_line_error(test::run_moetier(m.dir, a), parts);
  };
  bad({"--device-slots", "1MiB"}, {"--device-slots needs a device"});
  bad({"--sim-device", "8MiB", "--device-slots", "8MiB"}, {"--device-slots 8MiB", "less than the VRAM budget"});
  bad({"--sim-device", "8MiB", "--device-slots", "lots"}, {"--device-slots"});
  bad({"--sim-device", "8MiB", "--device-slots", "1KiB"}, {"--device-slots 1KiB", "holds no expert", "the smallest is"});
}
