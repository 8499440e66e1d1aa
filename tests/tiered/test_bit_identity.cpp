// Tiered experts give bit-identical logits: for every placement plan (all experts in DRAM, all on NVMe
// through a 2-slot cache, random DRAM / NVMe mixes), every eviction policy, with and without next-layer
// prefetch, with the io_uring reader and with the pread fallback (ReaderOptions::force_pread and env
// MOETIER_NO_URING=1), the logits of a prefill and several decode steps equal, byte for byte, those of
// the all-resident run. Models: synthesized tiny-qwen3moe, tiny-deepseek2, tiny-kimi-k2 and tiny-glm4moe
// (Q4_K requested), and
// ../shared/models/deepseek2-tiny-q8_0.gguf when present.
#include <doctest/doctest.h>

#include <cstdlib>

#include "tests/offload/offload_test_util.hpp"
#include "tests/shared_data.hpp"
#include "tests/tiered/tiered_test_util.hpp"

using namespace moetier;
using moetier::test::LoadedModel;
using moetier::test::TempDir;

namespace {

constexpr int kPromptTokens = 13;
constexpr int kDecodeSteps = 5;

/// One model and its all-resident reference logits.
struct Reference {
  LoadedModel m;
  std::vector<int32_t> prompt;
  std::vector<float> logits;
  explicit Reference(const std::string& path) : m(path) {
    prompt = test::test_prompt(*m.model, kPromptTokens);
    logits = test::run_steps(*m.model, prompt, kDecodeSteps);
  }
};

/// Logits with `plan` installed (a fresh TieredExperts), then the resident provider restored. Returns
/// the provider's demand statistics through `demand` when given.
std::vector<float> tiered_logits(Reference& r, const offload::PlacementPlan& plan, bool prefetch,
                                 tiered::TieredOptions opts = {}, tiered::TieredExperts::DemandStats* demand = nullptr) {
  tiered::TieredExperts tiers(*r.m.model, plan, opts);
  tiers.set_prefetch(prefetch);
  r.m.model->set_streamed_experts(&tiers);
  std::vector<float> out;
  try {
    out = test::run_steps(*r.m.model, r.prompt, kDecodeSteps);
  } catch (...) {
    r.m.model->set_streamed_experts(nullptr);
    throw;
  }
  r.m.model->set_streamed_experts(nullptr);
  if (demand) *demand = tiers.total_demand();
  return out;
}

/// Every plan / policy / prefetch / backend combination on one model.
void check_all_plans(Reference& r) {
  const models::Model& model = *r.m.model;
  REQUIRE(model.hparams().n_expert > 0);
  INFO("model " << model.gguf().path());
  // The reference itself is reproducible (the comparison below means something).
  REQUIRE(test::bit_identical(test::run_steps(*r.m.model, r.prompt, kDecodeSteps), r.logits));

  SUBCASE("all experts in DRAM through the tiered provider") {
    const auto plan = test::all_dram_plan(model);
    CHECK(plan.experts_on(offload::Tier::Kind::Nvme).empty());
    tiered::TieredExperts probe(*r.m.model, plan);
    CHECK(probe.cache() == nullptr);
    CHECK(test::bit_identical(tiered_logits(r, plan, true), r.logits));
  }
  SUBCASE("all experts on NVMe, 2-slot cache, every policy, prefetch on and off") {
    for (const auto policy : {offload::PolicyKind::Lru, offload::PolicyKind::Lfu, offload::PolicyKind::FreqDecay})
      for (const bool prefetch : {true, false}) {
        const std::string policy_str(offload::policy_name(policy));
        CAPTURE(policy_str);
        CAPTURE(prefetch);
        const auto plan = test::all_nvme_plan(model, 2, policy);
        tiered::TieredExperts::DemandStats d;
        CHECK(test::bit_identical(tiered_logits(r, plan, prefetch, {}, &d), r.logits));
        CHECK(d.requests() > 0);   // experts really came through the cache
        CHECK(d.misses > 0);       // ... and 2 slots cannot hold a whole layer: some were read
      }
  }
  SUBCASE("random DRAM / NVMe mixes, several seeds, policies and cache sizes") {
    const offload::PolicyKind policies[] = {offload::PolicyKind::Lru, offload::PolicyKind::Lfu,
                                            offload::PolicyKind::FreqDecay};
    for (uint64_t seed = 1; seed <= 6; ++seed) {
      CAPTURE(seed);
      const double p_nvme = 0.15 + 0.1 * static_cast<double>(seed);  // 0.25 .. 0.75
      const auto plan = test::random_plan(model, seed, p_nvme, 2 + seed % 3, policies[seed % 3]);
      REQUIRE(!plan.experts_on(offload::Tier::Kind::Nvme).empty());
      REQUIRE(!plan.experts_on(offload::Tier::Kind::Dram).empty());
      CHECK(test::bit_identical(tiered_logits(r, plan, seed % 2 == 0), r.logits));
    }
  }
  SUBCASE("pread fallback: ReaderOptions::force_pread and MOETIER_NO_URING=1") {
    const auto plan = test::all_nvme_plan(model, 2, offload::PolicyKind::Lru);
    tiered::TieredOptions o;
    o.reader.force_pread = true;
    {
      tiered::TieredExperts t(*r.m.model, plan, o);
      REQUIRE(t.cache() != nullptr);
      CHECK(const_cast<offload::ExpertCache*>(t.cache())->reader().backend() == "pread");
    }
    CHECK(test::bit_identical(tiered_logits(r, plan, true, o), r.logits));
    CHECK(test::bit_identical(tiered_logits(r, test::random_plan(model, 99, 0.5, 3, offload::PolicyKind::Lfu), false, o),
                              r.logits));
    test::ScopedEnv env("MOETIER_NO_URING", "1");
    {
      tiered::TieredExperts t(*r.m.model, plan);
      CHECK(const_cast<offload::ExpertCache*>(t.cache())->reader().backend() == "pread");
    }
    CHECK(test::bit_identical(tiered_logits(r, plan, true), r.logits));
  }
  SUBCASE("small reads and a queue depth of 1 (many reads per expert, one at a time)") {
    tiered::TieredOptions o;
    o.reader.queue_depth = 1;
    o.reader.chunk_bytes = 4096;
    CHECK(test::bit_identical(tiered_logits(r, test::all_nvme_plan(model, 3), true, o), r.logits));
  }
}

/// A synthesized tiny preset, written once per process.
Reference& synth_reference(const std::string& preset) {
  static TempDir dir;
  static std::vector<std::pair<std::string, std::unique_ptr<Reference>>> refs;
  for (auto& [name, ref] : refs)
    if (name == preset) return *ref;
  const std::string path = dir.file(preset + "-q4_k.gguf");
  test::write_tiny_model(path, preset, GgmlType::Q4_K);
  refs.emplace_back(preset, std::make_unique<Reference>(path));
  return *refs.back().second;
}

}  // namespace

TEST_CASE("tiered bit identity: synth tiny-qwen3moe Q4_K") { check_all_plans(synth_reference("tiny-qwen3moe")); }

TEST_CASE("tiered bit identity: synth tiny-deepseek2 Q4_K (dense lead layer, shared expert, grouped sigmoid)") {
  check_all_plans(synth_reference("tiny-deepseek2"));
}

TEST_CASE("tiered bit identity: synth tiny-kimi-k2 Q4_K (384 experts: ids past 255 in plans, cache, traces)") {
  check_all_plans(synth_reference("tiny-kimi-k2"));
}

TEST_CASE("tiered bit identity: synth tiny-glm4moe Q4_K (its NextN layer's experts are never placed)") {
  check_all_plans(synth_reference("tiny-glm4moe"));
}

TEST_CASE("tiered bit identity: ../shared deepseek2-tiny-q8_0" * doctest::skip(moetier::test::no_shared())) {
  const auto path = (moetier::test::shared_dir() / "models" / "deepseek2-tiny-q8_0.gguf").string();
  if (!std::filesystem::exists(path)) {
    MESSAGE("skipped: " << path << " not found");
    return;
  }
  static Reference ref(path);
  check_all_plans(ref);
}

TEST_CASE("tiered bit identity: ../shared qwen3moe-tiny-q8_0" * doctest::skip(moetier::test::no_shared())) {
  const auto path = (moetier::test::shared_dir() / "models" / "qwen3moe-tiny-q8_0.gguf").string();
  if (!std::filesystem::exists(path)) {
    MESSAGE("skipped: " << path << " not found");
    return;
  }
  static Reference ref(path);
  check_all_plans(ref);
}
