// `moetier calibrate --quick` on a tiny synthesized model writes a profile that reads back (every figure
// > 0, every method recorded, the model's weight type rated, the temporary disk file removed); `plan`
// predicts from it (--machine), from a synth preset without writing it (--preset), and ranks alternatives
// (--search, -o the best); bad options and unreadable profiles are one line and exit 1.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <cctype>
#include <filesystem>
#include <sstream>

#include <map>
#include <set>

#include "runtime/gguf/gguf_model.hpp"
#include "runtime/models/hparams.hpp"
#include "runtime/models/size_breakdown.hpp"
#include "runtime/tuning/machine_profile.hpp"
#include "tests/run_util.hpp"

using namespace moetier;
using test::check_one_line_error;
using test::RunResult;
using test::TempDir;

namespace {

/// A tiny Q4_K model and its quick calibration (once for this file).
struct Calibrated {
  TempDir dir;
  std::string model = dir.file("tiny.gguf"), profile = dir.file("cache/moetier/machine.json"), disk = dir.file("disk");
  RunResult calib;
  Calibrated() {
    RunResult r = test::run_moetier(dir, {"synth", "--preset", "tiny-qwen3moe", "--type", "Q4_K", "-o", model});
    if (r.status != 0) FAIL("moetier synth failed: " << r.err);
    std::filesystem::create_directories(disk);
    // The default path under XDG_CACHE_HOME (no -o).
    calib = test::run_moetier(dir, {"calibrate", "--quick", "-m", model, "--disk-dir", disk},
                              {"XDG_CACHE_HOME=" + test::shell_quote(dir.file("cache"))});
  }
};
const Calibrated& calibrated() {
  static Calibrated c;
  return c;
}

}  // namespace

TEST_CASE("calibrate --quick writes a profile that reads back") {
  const Calibrated& c = calibrated();
  CAPTURE(c.calib.err);
  REQUIRE(c.calib.status == 0);
  CHECK(c.calib.err.find("calibrate: [1/") != std::string::npos);  // progress on stderr
  const tuning::MachineProfile p = tuning::read_machine_profile(c.profile);
  CHECK(p.max_threads >= 1);
  CHECK(p.gpu == "absent");  // this machine has no CUDA device (the test names what it expects of it)
  REQUIRE(!p.dram.empty());
  for (const auto& d : p.dram) CHECK((d.gbps > 0 && !d.how.method.empty() && d.how.bytes > 0 && d.how.repetitions > 0));
  REQUIRE(!p.disk.empty());
  for (const auto& d : p.disk) CHECK((d.gbps > 0 && d.queue_depth > 0 && !d.how.method.empty()));
  // The model's expert read size (tiny-qwen3moe: every expert the same size) was measured.
  const auto sizes = models::compute_size_breakdown(gguf::GgufModel::open(c.model).tensors());
  REQUIRE(!sizes.expert_layers.empty());
  const uint64_t expert = sizes.expert_layers[0].uniform_expert_bytes();
  CHECK(expert > 0);
  bool measured_expert_size = false;
  for (const auto& d : p.disk) measured_expert_size |= d.read_bytes == expert;
  CHECK(measured_expert_size);
  bool q4k_1 = false, q4k_512 = false;
  for (const auto& k : p.kernels) {
    CHECK((k.gbps > 0 && k.gflops > 0 && !k.how.method.empty() && k.how.threads == p.max_threads));
    q4k_1 |= k.type == "Q4_K" && k.tokens == 1;
    q4k_512 |= k.type == "Q4_K" && k.tokens == 512;
  }
  CHECK(q4k_1);
  CHECK(q4k_512);
  CHECK(p.overhead_us("pool_dispatch") > 0);
  // Per-token overheads at the model's shape: attention per layer at 512 / 4096 / 32768 positions, the
  // router (F32 [n_expert, n_embd] GEMV + top-k) and rms_norm over n_embd.
  const auto g = gguf::GgufModel::open(c.model);
  const models::ModelHparams hp = models::load_hparams(g.metadata(), c.model);
  std::map<int64_t, double> attn, prefill;
  for (const auto& o : p.overheads) {
    CHECK((o.microseconds > 0 && !o.how.method.empty() && o.how.repetitions > 0));
    if (o.what != "attention" && o.what != "attention_prefill") continue;
    CHECK(o.elements == static_cast<double>(hp.n_head * (hp.head_dim_k + hp.head_dim_v)));
    (o.what == "attention" ? attn : prefill)[o.context] = o.microseconds;
  }
  CHECK(prefill.size() == 2);  // a 64-token prompt chunk ending at 512 and 4096 positions
  CHECK((prefill.count(512) && prefill.count(4096)));
  CHECK(attn.size() == 3);
  CHECK((attn.count(512) && attn.count(4096) && attn.count(32768)));
  CHECK(attn[32768] > attn[512]);  // 64 x the positions
  REQUIRE(p.overhead("router") != nullptr);
  CHECK(p.overhead("router")->elements == static_cast<double>(hp.n_expert * hp.n_embd));
  REQUIRE(p.overhead("rms_norm") != nullptr);
  CHECK(p.overhead("rms_norm")->elements == static_cast<double>(hp.n_embd));
  CHECK(c.calib.out.find("attention at 32768") != std::string::npos);
  // The temporary file of the disk measurement is gone.
  CHECK(std::filesystem::is_empty(c.disk));
}

TEST_CASE("plan --machine predicts decode and prompt speed from the profile") {
  const Calibrated& c = calibrated();
  REQUIRE(c.calib.status == 0);
  const RunResult r = test::run_moetier(c.dir, {"plan", "-m", c.model, "--experts-on-nvme", "0.5", "--cache-size", "4",
                                                "--machine", c.profile, "--json"});
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["machine"].get<std::string>().find(c.profile) == 0);
  const auto& pr = j["predicted"];
  CHECK(pr["decode_tokens_per_s"].get<double>() > 0);
  CHECK(pr["prompt_tokens_per_s"].get<double>() > 0);
  CHECK(pr["nvme_bytes_per_token"].get<double>() > 0);  // 4 slots for 24 streamed experts: misses
  const tuning::MachineProfile p = tuning::read_machine_profile(c.profile);
  CHECK(pr["dram_gbps"].get<double>() == p.dram_gbps(pr["threads"].get<int>()));
  // The step's parts add up (DRAM and compute overlap: the larger counts).
  const auto& s = pr["step_seconds"];
  CHECK(s["total"].get<double>() == doctest::Approx(std::max(s["dram"].get<double>(), s["compute"].get<double>()) +
                                                   s["disk"].get<double>() + s["kv_cache"].get<double>() +
                                                   s["router"].get<double>() + s["norms"].get<double>() +
                                                   s["overhead"].get<double>() + s["device"].get<double>()));
  CHECK(pr["decode_tokens_per_s"].get<double>() == doctest::Approx(1.0 / s["total"].get<double>()));
  // The calibrated router, norms and attention are in the step.
  CHECK(s["router"].get<double>() > 0);
  CHECK(s["norms"].get<double>() > 0);
  CHECK(s["kv_cache"].get<double>() > 0);
  // The default profile path is read when --machine is not given.
  const RunResult d = test::run_moetier(c.dir, {"plan", "-m", c.model, "--experts-on-nvme", "0.5", "--json"},
                                        {"XDG_CACHE_HOME=" + test::shell_quote(c.dir.file("cache"))});
  REQUIRE(d.status == 0);
  CHECK(nlohmann::json::parse(d.out)["machine"].get<std::string>().find(c.profile) == 0);
}

TEST_CASE("plan --preset plans a full-size synth model without writing it") {
  const Calibrated& c = calibrated();
  REQUIRE(c.calib.status == 0);
  TempDir tmp;
  const RunResult r = test::run_moetier(c.dir, {"plan", "--preset", "qwen3-30b-a3b", "--type", "Q4_K", "--experts-on-nvme",
                                                "all", "--machine", c.profile, "--json"},
                                        {"TMPDIR=" + test::shell_quote(tmp.file(""))});
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["experts_nvme"].get<size_t>() == 48 * 128);
  CHECK(j["nvme_expert_bytes"].get<uint64_t>() > (10ull << 30));
  CHECK(j["predicted"]["decode_tokens_per_s"].get<double>() > 0);
  CHECK(std::filesystem::is_empty(tmp.file("")));  // the sparse header file is removed
}

TEST_CASE("plan --search ranks alternatives and writes the best") {
  const Calibrated& c = calibrated();
  REQUIRE(c.calib.status == 0);
  const std::string best = c.dir.file("best.json");
  const RunResult r = test::run_moetier(c.dir, {"plan", "-m", c.model, "--experts-on-nvme", "all", "--machine", c.profile,
                                                "--search", "-o", best});
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("rank") == 0);
  // Ranked by decode speed: the rows' decode column (fixed width, after rank, placement, policy, sequences)
  // does not increase.
  std::istringstream in(r.out);
  std::string line;
  std::getline(in, line);
  double prev = 1e300;
  int n = 0;
  while (std::getline(in, line) && line.find("alternatives ranked") == std::string::npos) {
    REQUIRE(line.size() > 67);
    const double decode = std::stod(line.substr(57, 10));
    CHECK(decode > 0);
    CHECK(decode <= prev);
    prev = decode;
    ++n;
  }
  CHECK(n >= 4);
  CHECK(r.out.find("best plan written to " + best) != std::string::npos);
  const RunResult again = test::run_moetier(c.dir, {"plan", "-m", c.model, "--plan", best, "--machine", c.profile, "--json"});
  CHECK(again.status == 0);
}

TEST_CASE("plan --search with a device tries its non-expert FFNs on it and off it") {
  const Calibrated& c = calibrated();
  REQUIRE(c.calib.status == 0);
  // tiny-deepseek2 has shared experts and a dense lead layer: FFNs the device can compute.
  const std::string best = c.dir.file("best-dev.json");
  const RunResult r = test::run_moetier(c.dir, {"plan", "--preset", "tiny-deepseek2", "--sim-device", "4MiB", "--machine",
                                                c.profile, "--search", "-o", best});
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  std::istringstream in(r.out);
  std::string line;
  std::set<std::string> on, off;
  while (std::getline(in, line)) {
    if (line.empty() || !std::isdigit(static_cast<unsigned char>(line[0]))) continue;  // ranked rows only
    if (line.find("device FFNs, experts ") != std::string::npos) on.insert(line.substr(5, 36));
    if (line.find("host FFNs, experts ") != std::string::npos) off.insert(line.substr(5, 36));
  }
  // Each placement's best row is listed: FFNs on the device with experts in 0..100 % of the VRAM they leave,
  // FFNs on the host with experts in 25..100 % (0 % would be no device).
  CHECK(on.size() == 5);
  CHECK(off.size() == 4);
  // The best plan written is a device plan that reads back.
  const RunResult again = test::run_moetier(c.dir, {"plan", "--preset", "tiny-deepseek2", "--plan", best, "--sim-device",
                                                    "4MiB", "--machine", c.profile, "--json"});
  CAPTURE(again.err);
  CHECK(again.status == 0);
}

TEST_CASE("calibrate and plan --machine: bad options and profiles are one line, exit 1") {
  const Calibrated& c = calibrated();
  TempDir d;
  const std::string bad = d.file("bad.json"), other = d.file("other.json");
  test::spit(bad, "{\"schema\": \"moetier.machine/1\", ");
  test::spit(other, "{\"schema\": \"moetier.machine/7\"}");
  struct Case {
    std::vector<std::string> args;
    std::vector<std::string> parts;
  };
  const std::vector<Case> cases{
      {{"calibrate", "-t", "-3"}, {"-t"}},
      {{"calibrate", "-m", c.model, "--preset", "tiny-qwen3moe"}, {"excludes"}},
      {{"calibrate", "-m", d.file("missing.gguf")}, {"missing.gguf"}},
      {{"calibrate", "--preset", "no-such-preset", "-o", d.file("m.json")}, {"no-such-preset"}},
      {{"calibrate", "-o", d.file("")}, {"machine profile"}},
      {{"plan", "-m", c.model, "--experts-on-nvme", "all", "--machine", bad}, {bad, "not valid JSON"}},
      {{"plan", "-m", c.model, "--experts-on-nvme", "all", "--machine", other}, {other, "'schema'", "moetier.machine/7"}},
      {{"plan", "-m", c.model, "--experts-on-nvme", "all", "--machine", d.file("none.json")}, {"none.json"}},
      {{"plan", "--experts-on-nvme", "all"}, {"-m MODEL or --preset"}},
      {{"plan", "-m", c.model, "--experts-on-nvme", "all", "--parallel", "0"}, {"--parallel"}},
  };
  for (const Case& k : cases) {
    CAPTURE(k.args[0] + " " + k.args[1] + " " + k.args[2]);
    check_one_line_error(test::run_moetier(d, k.args), k.parts);
  }
}
