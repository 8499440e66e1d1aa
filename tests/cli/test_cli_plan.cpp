// `moetier plan` with a device tier, through the built binary (MOETIER_BIN): --vram-budget and --sim-device
// values, the "no CUDA device" error naming the sim tier, the table of where each byte goes against the
// saved plan, non-expert weights and KV cache first, the most-routed experts on the device, evaluating a
// saved device plan, and a plan whose device budget no longer holds the KV cache.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "scheduler/backend_registry.hpp"
#include "tests/run_util.hpp"

using Json = nlohmann::json;
using namespace moetier;

namespace {

using test::check_one_line_error;
using test::RunResult;
using test::slurp;
using test::TempDir;

/// One synthesized tiny-qwen3moe (Q4_K) for this file's tests, and a routing trace of a short greedy run.
struct Tiny {
  TempDir dir;
  std::string path = dir.file("tiny-qwen3moe.gguf");
  std::string trace = dir.file("trace.jsonl");
  Tiny() {
    RunResult r = test::run_moetier(dir, {"synth", "--preset", "tiny-qwen3moe", "--type", "Q4_K", "-o", path});
    if (r.status != 0) FAIL("moetier synth failed: " << r.err);
    r = test::run_moetier(dir, {"run", "-m", path, "-p", "The quick brown fox jumps over the lazy dog", "-n", "8",
                                "--temp", "0", "--record-routing", trace});
    if (r.status != 0) FAIL("moetier run --record-routing failed: " << r.err);
  }
};
const Tiny& tiny() {
  static Tiny t;
  return t;
}

std::vector<std::string> plan_args(std::vector<std::string> extra) {
  std::vector<std::string> a = {"plan", "-m", tiny().path, "--dram-gbps", "10", "-c", "1024"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

/// A row of the "where each byte goes" table.
struct Row {
  std::string tier, what;
  uint64_t bytes = 0;
};

/// Rows that contain what a process measured of itself (metadata pages: under ASan they vary from run to
/// run): the DRAM line of fixed parts and the DRAM total. Everything planned must agree between runs.
bool measured_row(const Row& r) {
  return r.tier == "dram" && (r.what.rfind("total", 0) == 0 || r.what.find("metadata") != std::string::npos);
}

/// The rows between "where each byte goes:" (and its header) and "memory:".
std::vector<Row> table_rows(const std::string& out) {
  std::vector<Row> rows;
  std::istringstream in(out);
  std::string line;
  bool inside = false;
  while (std::getline(in, line)) {
    if (line == "where each byte goes:") {
      inside = true;
      std::getline(in, line);  // header
      REQUIRE(line.find("tier") != std::string::npos);
      continue;
    }
    if (!inside) continue;
    if (line.rfind("  ", 0) != 0) break;
    // "  TIER   WHAT...   BYTES  HUMAN": the exact bytes are the second-to-last word.
    std::istringstream w(line);
    std::vector<std::string> words;
    for (std::string s; w >> s;) words.push_back(s);
    REQUIRE(words.size() >= 4);
    Row r;
    r.tier = words[0];
    // The human-readable size is two words ("1.00 MiB") or one ("0 B" is two as well).
    const size_t bytes_at = words.size() - 3;
    r.bytes = std::stoull(words[bytes_at]);
    for (size_t i = 1; i < bytes_at; ++i) r.what += (i > 1 ? " " : "") + words[i];
    rows.push_back(r);
  }
  return rows;
}

const Row* find_row(const std::vector<Row>& rows, const std::string& tier, const std::string& what_prefix) {
  for (const Row& r : rows)
    if (r.tier == tier && r.what.rfind(what_prefix, 0) == 0) return &r;
  return nullptr;
}

/// How often each (layer, expert) was routed in a JSONL trace.
std::map<std::pair<int, int>, int> usage_of(const std::string& trace) {
  std::map<std::pair<int, int>, int> n;
  std::istringstream in(slurp(trace));
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const Json j = Json::parse(line);
    for (const auto& e : j.at("experts")) ++n[{j.at("layer").get<int>(), e.get<int>()}];
  }
  return n;
}

}  // namespace

TEST_CASE("--vram-budget and --sim-device: bad values and combinations are one line and exit 1") {
  TempDir dir;
  struct Case {
    std::vector<std::string> extra;
    std::vector<std::string> message;
  };
  const std::vector<Case> cases = {
      {{"--vram-budget", "0"}, {"--vram-budget", "above 0"}},
      {{"--vram-budget", "lots"}, {"--vram-budget", "\"lots\""}},
      {{"--vram-budget", ""}, {"--vram-budget"}},
      {{"--vram-budget", "-1GiB"}, {"--vram-budget"}},
      {{"--sim-device", "0"}, {"--sim-device", "CAPACITY[,RATE]"}},
      {{"--sim-device", ""}, {"--sim-device"}},
      {{"--sim-device", "8GiB,fast"}, {"--sim-device", "\"8GiB,fast\""}},
      {{"--sim-device", "8GiB,-1"}, {"--sim-device"}},
      {{"--sim-device", "8GiB,nan"}, {"--sim-device"}},
      {{"--sim-device", "8GiB,inf"}, {"--sim-device"}},
      {{"--sim-device", "8GiB,24GB/s,1"}, {"--sim-device"}},
      {{"--sim-device", "8GiB,24GiB/s"}, {"--sim-device"}},
      {{"--sim-device", "8GiB,24Gb/s"}, {"--sim-device", "\"8GiB,24Gb/s\""}},    // gigabits: not a byte rate
      {{"--sim-device", "8GiB,1e-6GB/s"}, {"--sim-device", "from 0.001"}},   // a load would take days
      {{"--sim-device", "8GiB,1e-300"}, {"--sim-device", "from 0.001"}},
      {{"--sim-device", "0x10"}, {"--sim-device", "\"0x10\""}},       // hexadecimal is not a size
      {{"--vram-budget", "inf"}, {"--vram-budget", "\"inf\""}},
      {{"--sim-device", "8MiB", "--device-slots", "8MiB"}, {"--device-slots 8MiB", "less than the VRAM budget"}},
      {{"--device-slots", "1MiB"}, {"--device-slots needs a device"}},
      {{"--sim-device", ",24"}, {"--sim-device"}},
      {{"--sim-device", "8GiB,"}, {"--sim-device"}},
      {{"--sim-device", "1MiB", "--vram-budget", "2MiB"}, {"--vram-budget 2MiB is more than the simulated device holds"}},
      {{"--vram-budget", "1GiB", "--experts-on-nvme", "all"}, {"--experts-on-nvme excludes --vram-budget"}},
      {{"--sim-device", "1GiB", "--experts-on-nvme", "all"}, {"--experts-on-nvme excludes --sim-device"}},
      {{"--vram-budget", "1GiB", "--plan", tiny().trace}, {"--plan excludes --vram-budget"}},
      {{"--sim-device", "1GiB", "--cache-size", "4"}, {"--cache-size applies to --experts-on-nvme"}},
  };
  for (const char* cmd : {"plan", "run"}) {
    for (const Case& c : cases) {
      std::vector<std::string> args = cmd == std::string("plan") ? plan_args(c.extra)
                                                                  : std::vector<std::string>{"run", "-m", tiny().path, "-p", "hi", "-n", "1"};
      if (cmd == std::string("run")) args.insert(args.end(), c.extra.begin(), c.extra.end());
      CAPTURE(cmd);
      CAPTURE(c.extra);
      const RunResult r = test::run_moetier(dir, args);
      check_one_line_error(r, c.message);
      CHECK(r.out.empty());
    }
  }
}

TEST_CASE("--vram-budget without a CUDA device and without --sim-device names the sim tier") {
  if (sched::gpu_device_count() > 0) {
    MESSAGE("skipped: this machine has a CUDA device, so --vram-budget plans for gpu:0");
    return;
  }
  TempDir dir;
  for (const std::vector<std::string>& args :
       {plan_args({"--vram-budget", "1GiB"}),
        std::vector<std::string>{"run", "-m", tiny().path, "-p", "hi", "-n", "1", "--vram-budget", "20GiB"}}) {
    const RunResult r = test::run_moetier(dir, args);
    check_one_line_error(r, {"--vram-budget: no CUDA device", "--sim-device 8GiB", "simulated device sim:0"});
  }
}

TEST_CASE("plan --sim-device: the hottest experts while they fit; the table matches the saved plan") {
  TempDir dir;
  const std::string saved = dir.file("plan.json");
  // 1 MiB: 16 of the 32 experts (62 KiB each). tiny-qwen3moe has no shared expert and no dense layer, so
  // the device has no non-expert FFN to compute; attention, its weights and the KV cache stay on the host.
  const RunResult r = test::run_moetier(dir, plan_args({"--sim-device", "1MiB,12GB/s", "-o", saved}));
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  CAPTURE(r.out);
  const Json p = Json::parse(slurp(saved));
  CHECK(p["schema"] == "moetier.placement/1");
  CHECK(p["non_expert"] == "dram");
  CHECK(!p.contains("kv_cache"));  // the default: DRAM
  CHECK(p["devices"] == Json::parse(R"([{"tier": "sim:0", "bytes": 1048576, "h2d_gbps": 12.0}])"));
  const uint64_t expert_bytes = p["model"]["expert_bytes"][0].get<uint64_t>();
  size_t on_sim = 0, in_dram = 0;
  for (const auto& layer : p["experts"])
    for (const auto& t : layer) (t == "sim:0" ? on_sim : in_dram) += (t == "sim:0" || t == "dram") ? 1 : 0;
  CHECK(on_sim > 0);
  CHECK(in_dram > 0);
  CHECK(on_sim + in_dram == 32);  // nothing streams without --ram-budget

  const std::vector<Row> rows = table_rows(r.out);
  const Row* ne = find_row(rows, "dram", "non-expert weights");
  const Row* kv = find_row(rows, "dram", "KV cache (n_ctx 1024)");
  const Row* ex = find_row(rows, "sim:0", "experts (" + std::to_string(on_sim) + ")");
  const Row* total = find_row(rows, "sim:0", "total, of a VRAM budget of 1.00 MiB");
  REQUIRE(ne);
  REQUIRE(kv);
  REQUIRE(ex);
  REQUIRE(total);
  // The sizes `plan` reports for DRAM when nothing goes to a device.
  const RunResult dram_only = test::run_moetier(dir, plan_args({"--experts-on-nvme", "0", "--json"}));
  REQUIRE(dram_only.status == 0);
  const Json mem = Json::parse(dram_only.out)["memory"];
  CHECK(ne->bytes == mem["non_expert_bytes"].get<uint64_t>());
  CHECK(kv->bytes == mem["kv_cache_bytes"].get<uint64_t>());
  CHECK(ex->bytes == on_sim * expert_bytes);
  CHECK(total->bytes == ex->bytes);
  CHECK(find_row(rows, "sim:0", "non-expert") == nullptr);
  CHECK(find_row(rows, "sim:0", "KV cache") == nullptr);
  CHECK(total->bytes <= 1u << 20);
  CHECK(1u * 1024 * 1024 - total->bytes < expert_bytes);  // greedy: no further expert fits
  const Row* dram_ex = find_row(rows, "dram", "experts (" + std::to_string(in_dram) + ")");
  REQUIRE(dram_ex);
  CHECK(dram_ex->bytes == in_dram * expert_bytes);
  REQUIRE(find_row(rows, "nvme", "experts (0, streamed)"));
  CHECK(r.out.find("from sim:0 at 10.0 GB/s (the DRAM bandwidth") != std::string::npos);
  CHECK(r.out.find("copy to sim:0 at load: ") != std::string::npos);
  CHECK(r.out.find("at 12.0 GB/s") != std::string::npos);
  CHECK(r.out.find("predicted decode: ") != std::string::npos);
  CHECK(r.out.find("plan written to " + saved) != std::string::npos);

  SUBCASE("--json: the same placement, and the device's bytes") {
    const RunResult j = test::run_moetier(dir, plan_args({"--sim-device", "1MiB,12GB/s", "--json"}));
    REQUIRE(j.status == 0);
    const Json s = Json::parse(j.out);
    CHECK(s["device"]["tier"] == "sim:0");
    CHECK(s["device"]["used_bytes"].get<uint64_t>() == total->bytes);
    CHECK(s["device"]["experts"].get<size_t>() == on_sim);
    CHECK(s["device"]["vram_budget_bytes"].get<uint64_t>() == 1u << 20);
    REQUIRE(s["placement"].size() == rows.size());
    for (size_t i = 0; i < rows.size(); ++i) {
      CHECK(s["placement"][i]["tier"] == rows[i].tier);
      if (!measured_row(rows[i])) CHECK(s["placement"][i]["bytes"].get<uint64_t>() == rows[i].bytes);
    }
    CHECK(s["predicted"]["device_bytes_per_token"].get<double>() > 0);
    CHECK(s["predicted"]["decode_tokens_per_s"].get<double>() > 0);
    // Attention runs on the CPU (no device backend computes it before issue 10): the KV cache and the
    // non-expert weights are in host memory, at their full size.
    const auto row_bytes = [&](const std::string& what) {
      for (const Row& r : rows)
        if (r.what.find(what) != std::string::npos) return r.bytes;
      return uint64_t{0};
    };
    CHECK(s["memory"]["kv_cache_bytes"].get<uint64_t>() == row_bytes("KV cache"));
    CHECK(s["memory"]["non_expert_bytes"].get<uint64_t>() == row_bytes("non-expert weights"));
    CHECK(row_bytes("KV cache") > 0);
  }
  SUBCASE("--plan: the saved plan is evaluated as it was made, its device taken from \"devices\"") {
    const RunResult e = test::run_moetier(dir, plan_args({"--plan", saved}));
    CAPTURE(e.err);
    REQUIRE(e.status == 0);
    const std::vector<Row> again = table_rows(e.out);
    REQUIRE(again.size() == rows.size());
    for (size_t i = 0; i < rows.size(); ++i) {
      CHECK(again[i].what == rows[i].what);
      if (!measured_row(rows[i])) CHECK(again[i].bytes == rows[i].bytes);
    }
  }
  SUBCASE("--plan with a larger context: the KV cache grows in DRAM, the device is unchanged") {
    std::vector<std::string> args = plan_args({"--plan", saved});
    args[6] = "4096";  // -c
    const RunResult e = test::run_moetier(dir, args);
    CAPTURE(e.err);
    REQUIRE(e.status == 0);
    const std::vector<Row> again = table_rows(e.out);
    const Row* kv4 = find_row(again, "dram", "KV cache (n_ctx 4096)");
    REQUIRE(kv4);
    CHECK(kv4->bytes == 4 * kv->bytes);
    CHECK(find_row(again, "sim:0", "total")->bytes == total->bytes);
  }
  SUBCASE("--plan without a budget for its sim tier, or with a device tier this process lacks") {
    Json edited = Json::parse(slurp(saved));
    edited.erase("devices");
    const std::string no_budget = dir.file("no-budget.json");
    test::spit(no_budget, edited.dump());
    check_one_line_error(test::run_moetier(dir, plan_args({"--plan", no_budget})),
                         {no_budget, "puts weights on sim:0 but gives it no capacity", "--sim-device CAPACITY"});
    // With --sim-device the same plan runs on it, if it fits its capacity.
    CHECK(test::run_moetier(dir, plan_args({"--plan", no_budget, "--sim-device", "1MiB"})).status == 0);
    check_one_line_error(test::run_moetier(dir, plan_args({"--plan", no_budget, "--sim-device", "512KiB"})),
                         {"sim:0 needs", "more than its budget of 524288 bytes"});
    std::string text = slurp(saved);
    for (size_t at; (at = text.find("sim:0")) != std::string::npos;) text.replace(at, 5, "sim:1");
    const std::string sim1 = dir.file("sim1.json");
    test::spit(sim1, text);
    check_one_line_error(test::run_moetier(dir, plan_args({"--plan", sim1})),
                         {"experts on a simulated device (first: ", "the simulated device sim:0", ": sim:1 missing"});
    if (sched::gpu_device_count() == 0) {
      text = slurp(saved);
      for (size_t at; (at = text.find("sim:0")) != std::string::npos;) text.replace(at, 5, "gpu:0");
      text.erase(text.find(",\"h2d_gbps\":12.0"), std::string(",\"h2d_gbps\":12.0").size());
      const std::string gpu0 = dir.file("gpu0.json");
      test::spit(gpu0, text);
      check_one_line_error(test::run_moetier(dir, plan_args({"--plan", gpu0})),
                           {"experts on a GPU", "no GPU backend", ": gpu:0 missing"});
    }
  }
  SUBCASE("--plan with a smaller --sim-device than the plan's budget") {
    check_one_line_error(test::run_moetier(dir, plan_args({"--plan", saved, "--sim-device", "512KiB"})),
                         {saved, "sim:0 1048576 bytes, more than --sim-device's capacity of 524288 bytes"});
  }
}

TEST_CASE("plan --sim-device: a small device, rates, a --vram-budget below the capacity") {
  TempDir dir;
  const std::string saved = dir.file("plan.json");
  SUBCASE("a small device takes the experts that fit, the rest stay in DRAM, and the output says so") {
    const RunResult r = test::run_moetier(dir, plan_args({"--sim-device", "256KiB", "-o", saved}));
    CAPTURE(r.err);
    REQUIRE(r.status == 0);
    CHECK(r.out.find("note: 28 of 32 experts do not fit") != std::string::npos);
    const Json p = Json::parse(slurp(saved));
    CHECK(p["non_expert"] == "dram");
    CHECK(!p.contains("kv_cache"));  // the default: DRAM
    const std::vector<Row> rows = table_rows(r.out);
    REQUIRE(find_row(rows, "dram", "non-expert weights"));
    REQUIRE(find_row(rows, "dram", "KV cache (n_ctx 1024)"));
    const Row* total = find_row(rows, "sim:0", "total");
    REQUIRE(total);
    CHECK(total->bytes > 0);  // experts only
    CHECK(total->bytes <= 256u << 10);
  }
  SUBCASE("--sim-device RATE: GB/s with or without the unit, 0 unpaced; saved in the plan") {
    for (const auto& [rate, gbps] : std::vector<std::pair<std::string, double>>{{"30", 30.0}, {"2.5GB/s", 2.5}, {"0", 0.0}}) {
      CAPTURE(rate);
      const RunResult r = test::run_moetier(dir, plan_args({"--sim-device", "2MiB," + rate, "-o", saved}));
      CAPTURE(r.err);
      REQUIRE(r.status == 0);
      CHECK(Json::parse(slurp(saved))["devices"][0]["h2d_gbps"].get<double>() == gbps);
      CHECK(r.out.find(gbps > 0 ? "copy to sim:0 at load: " : "no pacing") != std::string::npos);
    }
  }
  SUBCASE("--vram-budget smaller than --sim-device is the budget") {
    const RunResult r = test::run_moetier(dir, plan_args({"--sim-device", "8MiB", "--vram-budget", "1.5MiB", "-o", saved}));
    CAPTURE(r.err);
    REQUIRE(r.status == 0);
    const Json p = Json::parse(slurp(saved));
    CHECK(p["devices"][0]["bytes"] == 1536u * 1024);
    CHECK(p["devices"][0]["h2d_gbps"] == 24.0);  // the default rate
    const std::vector<Row> rows = table_rows(r.out);
    const Row* total = find_row(rows, "sim:0", "total");
    REQUIRE(total);
    CHECK(total->bytes <= 1536u * 1024);
  }
}

TEST_CASE("plan --sim-device --trace: the most-routed experts go to the device; --ram-budget places the rest") {
  TempDir dir;
  const std::string saved = dir.file("plan.json");
  const RunResult r = test::run_moetier(dir, plan_args({"--sim-device", "1MiB", "--trace", tiny().trace, "-o", saved}));
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("routing from trace") != std::string::npos);
  const auto usage = usage_of(tiny().trace);
  const Json p = Json::parse(slurp(saved));
  int min_sim = INT32_MAX, max_dram = -1;
  for (size_t l = 0; l < p["experts"].size(); ++l)
    for (size_t e = 0; e < p["experts"][l].size(); ++e) {
      const auto it = usage.find({static_cast<int>(l), static_cast<int>(e)});
      const int n = it == usage.end() ? 0 : it->second;
      if (p["experts"][l][e] == "sim:0") min_sim = std::min(min_sim, n);
      else max_dram = std::max(max_dram, n);
    }
  REQUIRE(max_dram >= 0);  // some experts left the device
  CHECK(min_sim >= max_dram);

  // With --ram-budget: every expert is somewhere, and the process's DRAM stays within the budget.
  const Json big = Json::parse(test::run_moetier(dir, plan_args({"--sim-device", "1MiB", "--json"})).out);
  const uint64_t budget = big["memory"]["total_bytes"].get<uint64_t>() + (3u << 20);
  const RunResult b = test::run_moetier(
      dir, plan_args({"--sim-device", "1MiB", "--ram-budget", std::to_string(budget), "--trace", tiny().trace, "--json"}));
  CAPTURE(b.err);
  REQUIRE(b.status == 0);
  const Json s = Json::parse(b.out);
  CHECK(s["memory"]["total_bytes"].get<uint64_t>() <= budget);
  CHECK(s["device"]["experts"].get<size_t>() + s["experts_dram"].get<size_t>() + s["experts_nvme"].get<size_t>() == 32);
  CHECK(s["device"]["used_bytes"].get<uint64_t>() <= 1u << 20);
}
