// Reader faults through the runtime path (a TieredExperts built with ReaderOptions::faults): short reads
// give identical logits; an I/O error or a truncated file makes forward() throw a one-line
// moetier::Error naming the file, the offset and the expert, without hanging. Plan errors: a plan made
// for another model, a plan that needs a GPU, a DRAM budget smaller than the non-expert weights (through
// the API, the CLI set-up and `moetier run --ram-budget 1KiB`, which exits 1 with one line).
#include <doctest/doctest.h>

#include <string>

#include "offload/fault_injection.hpp"
#include "runtime/cli/tier_options.hpp"
#include "tests/tiered/tiered_test_util.hpp"

using namespace moetier;
using moetier::test::LoadedModel;
using moetier::test::TempDir;

namespace {

constexpr int kPromptTokens = 9;
constexpr int kDecodeSteps = 3;

struct Fixture {
  TempDir dir;
  std::string path = dir.file("tiny-qwen3moe.gguf");
  std::string other_path = dir.file("tiny-deepseek2.gguf");
  Fixture() {
    test::write_tiny_model(path, "tiny-qwen3moe", GgmlType::Q4_K);
    test::write_tiny_model(other_path, "tiny-deepseek2", GgmlType::Q4_K);
  }
};
Fixture& fixture() {
  static Fixture f;
  return f;
}

/// Runs the standard prompt + decode steps with `plan` and `faults` installed.
std::vector<float> run_with(LoadedModel& m, const offload::PlacementPlan& plan,
                            std::shared_ptr<offload::FaultInjector> faults, bool prefetch = true) {
  tiered::TieredOptions o;
  o.reader.faults = std::move(faults);
  o.reader.chunk_bytes = 4096;  // several reads per range: short reads and errors land mid-expert
  tiered::TieredExperts tiers(*m.model, plan, o);
  tiers.set_prefetch(prefetch);
  m.model->set_streamed_experts(&tiers);
  struct Restore {
    models::Model& m;
    ~Restore() { m.set_streamed_experts(nullptr); }
  } restore{*m.model};
  return test::run_steps(*m.model, test::test_prompt(*m.model, kPromptTokens), kDecodeSteps);
}

/// The message of the moetier::Error that `f` throws (FAILs when it throws nothing).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  FAIL("no moetier::Error thrown");
  return {};
}

void check_one_line(const std::string& msg, std::initializer_list<std::string> parts) {
  CAPTURE(msg);
  CHECK(!msg.empty());
  CHECK(msg.find('\n') == std::string::npos);
  for (const auto& p : parts) CHECK_MESSAGE(msg.find(p) != std::string::npos, "message lacks \"" << p << "\"");
}

/// Every expert of the first MoE layer.
std::vector<offload::ExpertId> first_layer_experts(const models::Model& m) {
  std::vector<offload::ExpertId> ids;
  for (int il = 0; il < m.hparams().n_layer; ++il)
    if (m.hparams().is_moe_layer(il)) {
      for (int e = 0; e < m.hparams().n_expert; ++e) ids.push_back({il, e});
      break;
    }
  return ids;
}

}  // namespace

TEST_CASE("tiered faults: short reads give bit-identical logits (io_uring and pread)") {
  LoadedModel m(fixture().path);
  const auto reference = test::run_steps(*m.model, test::test_prompt(*m.model, kPromptTokens), kDecodeSteps);
  for (const bool pread : {false, true}) {
    CAPTURE(pread);
    auto faults = std::make_shared<offload::ScriptedFaults>();
    faults->short_reads(2);
    faults->transient(11 /* EAGAIN */, 5);
    const auto plan = test::all_nvme_plan(*m.model, 2);
    std::vector<float> got;
    {
      tiered::TieredOptions o;
      o.reader.faults = faults;
      o.reader.force_pread = pread;
      o.reader.chunk_bytes = 4096;
      tiered::TieredExperts tiers(*m.model, plan, o);
      m.model->set_streamed_experts(&tiers);
      got = test::run_steps(*m.model, test::test_prompt(*m.model, kPromptTokens), kDecodeSteps);
      m.model->set_streamed_experts(nullptr);
    }
    CHECK(test::bit_identical(got, reference));
    CHECK(faults->n_short() > 0);
    CHECK(faults->n_transient() == 5);
  }
}

TEST_CASE("tiered faults: EIO makes forward() throw a one-line Error naming file, offset and expert") {
  LoadedModel m(fixture().path);
  const auto plan = test::all_nvme_plan(*m.model, 2);
  const auto cat = tiered::build_expert_catalog(*m.model, &plan);
  // An error in the middle of the gate range of every expert of the first MoE layer: whichever the
  // router picks, its read fails.
  auto faults = std::make_shared<offload::ScriptedFaults>();
  for (const auto id : first_layer_experts(*m.model)) {
    const offload::ByteRange r = cat.ranges(id)[0];
    faults->fail_at(r.file_index, r.offset + r.length / 2);
  }
  for (const bool prefetch : {true, false}) {
    CAPTURE(prefetch);
    const std::string msg = error_of([&] { run_with(m, plan, faults, prefetch); });
    check_one_line(msg, {fixture().path, "offset", "layer ", "expert ", "Input/output error"});
  }
  CHECK(faults->n_errors() > 0);
  // The same model still runs once the faults are gone (no state left behind by the failure).
  const auto reference = test::run_steps(*m.model, test::test_prompt(*m.model, kPromptTokens), kDecodeSteps);
  CHECK(test::bit_identical(run_with(m, plan, nullptr), reference));
}

TEST_CASE("tiered faults: a file truncated before a streamed expert ends makes forward() throw") {
  LoadedModel m(fixture().path);
  const auto plan = test::all_nvme_plan(*m.model, 4);
  const auto cat = tiered::build_expert_catalog(*m.model, &plan);
  uint64_t first = UINT64_MAX;
  for (const auto id : first_layer_experts(*m.model)) first = std::min(first, cat.ranges(id)[0].offset);
  auto faults = std::make_shared<offload::ScriptedFaults>();
  faults->truncate(0, first + 100);  // every routed expert's bytes now lie beyond the end of the file
  const std::string msg = error_of([&] { run_with(m, plan, faults); });
  check_one_line(msg, {fixture().path, "offset", "layer ", "expert ", "end of file"});
  CHECK(faults->n_truncated() > 0);
}

TEST_CASE("tiered plans: a plan for another model is refused") {
  LoadedModel m(fixture().path);
  LoadedModel other(fixture().other_path);
  const auto plan = test::all_nvme_plan(*other.model, 2);
  const std::string msg = error_of([&] { tiered::TieredExperts t(*m.model, plan); });
  check_one_line(msg, {"tiny-deepseek2.gguf", "tiny-qwen3moe.gguf"});
  // Same file name and shape but other expert sizes: still refused.
  offload::PlacementPlan p = test::all_nvme_plan(*m.model, 2);
  for (auto& b : p.model.expert_bytes)
    if (b != 0) b += 32;
  CHECK_THROWS_AS(tiered::TieredExperts(*m.model, p), Error);
}

TEST_CASE("tiered plans: gpu tiers are refused (no GPU backend)") {
  LoadedModel m(fixture().path);
  offload::PlacementPlan p = test::all_dram_plan(*m.model);
  p.experts.back()[3] = offload::Tier::gpu(0);
  p.validate();
  check_one_line(error_of([&] { tiered::TieredExperts t(*m.model, p); }), {"gpu:0", "no GPU backend"});
  offload::PlacementPlan q = test::all_nvme_plan(*m.model, 2);
  q.non_expert = offload::Tier::gpu(0);
  check_one_line(error_of([&] { tiered::TieredExperts t(*m.model, q); }), {"gpu:0", "no GPU backend"});
}

TEST_CASE("tiered plans: a DRAM budget smaller than the non-expert weights is one line") {
  LoadedModel m(fixture().path);
  const uint64_t ne = tiered::non_expert_bytes(*m.model);
  REQUIRE(ne > 1024);
  cli::TierOptions o;
  o.ram_budget = "1KiB";
  check_one_line(error_of([&] { (void)cli::setup_tiers(*m.model, o, {}); }),
                 {"1024", std::to_string(ne), "non-expert", "tiny-qwen3moe.gguf"});
  // A budget that holds the non-expert weights but not one streamed expert is refused too.
  o.ram_budget = std::to_string(ne + 4096);
  check_one_line(error_of([&] { (void)cli::setup_tiers(*m.model, o, {}); }), {"streamed expert"});
  // Nothing was installed: the model still runs on its resident experts.
  std::vector<float> logits;
  auto cache = m.model->new_cache(4);
  const int32_t tok = 20;
  CHECK_NOTHROW(m.model->forward(std::span<const int32_t>(&tok, 1), cache, logits));

  TempDir dir;
  const auto r = test::run_moetier(dir, {"run", "-m", fixture().path, "--ram-budget", "1KiB", "-p", "hello", "-n", "2"});
  CAPTURE(r.err);
  CHECK(r.status == 1);
  CHECK(r.err.rfind("moetier: error: ", 0) == 0);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  CHECK(r.err.find("non-expert") != std::string::npos);
  CHECK(r.out.find("hello") == std::string::npos);  // refused before the prompt is echoed
}
