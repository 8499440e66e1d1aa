// The hyper-parameter table (runtime/models/hparams_check.hpp): every preset `moetier synth` knows passes
// every rule; each hostile case of tests/models/hparam_cases.hpp is rejected by the rule it targets with a
// one-line message naming the key / tensor; every rule of the table has at least one such case.
// (load_model on the written files, with its allocation bound: test_weights_errors.cpp; `moetier run` /
// `inspect`: test_hostile_models.cpp.)
#include <doctest/doctest.h>

#include <set>
#include <string>

#include "common/error.hpp"
#include "runtime/models/hparams_check.hpp"
#include "runtime/synth/synth_model.hpp"
#include "tests/models/hparam_cases.hpp"

using namespace moetier;

namespace {

synth::SynthModel preset_model(const std::string& name) { return test::f32_preset(name, 5); }

std::optional<models::HparamViolation> violation(const synth::SynthModel& m) {
  const gguf::Metadata md = m.metadata_map();
  const auto tensors = m.tensor_infos();
  return models::first_hparam_violation(models::load_hparams(md, m.preset.name), md, tensors);
}

}  // namespace

TEST_CASE("the rule table: unique ids, each with its requirement in words") {
  std::set<std::string> ids;
  for (const auto& r : models::hparam_rules()) {
    CAPTURE(r.id);
    CHECK(ids.insert(r.id).second);
    CHECK(std::string(r.requirement).size() > 10);
    CHECK(static_cast<bool>(r.check));
  }
  CHECK(ids.size() >= 20);
}

TEST_CASE("every synth preset, full-size and tiny, satisfies every rule") {
  for (const auto& p : synth::all_presets()) {
    CAPTURE(p.name);
    const synth::SynthModel m = preset_model(p.name);
    const auto v = violation(m);
    CHECK_MESSAGE(!v, (v ? v->rule + ": " + v->message : std::string()));
  }
}

TEST_CASE("each hostile case is rejected by the rule it targets, in one line naming the key / tensor") {
  std::set<std::string> covered;
  for (const test::HparamCase& c : test::hparam_cases()) {
    const std::string rule = c.rule, preset_name = c.preset;
    CAPTURE(rule);
    CAPTURE(preset_name);
    synth::SynthModel m = preset_model(c.preset);
    c.patch(m);
    std::optional<models::HparamViolation> v;
    REQUIRE_NOTHROW(v = violation(m));
    REQUIRE_MESSAGE(v, "no rule rejected the case");
    CAPTURE(v->message);
    CHECK(v->rule == c.rule);
    for (const auto& part : c.parts)
      CHECK_MESSAGE(v->message.find(part) != std::string::npos, "lacks \"" << part << "\"");
    CHECK(v->message.find('\n') == std::string::npos);
    // check_hparams puts the file in front.
    try {
      models::check_hparams(models::load_hparams(m.metadata_map(), "x.gguf"), m.metadata_map(), m.tensor_infos(),
                            "x.gguf");
      FAIL("check_hparams accepted the case");
    } catch (const Error& e) {
      CHECK(std::string(e.what()) == "x.gguf: " + v->message);
    }
    covered.insert(c.rule);
  }
  for (const auto& r : models::hparam_rules()) CHECK_MESSAGE(covered.count(r.id), "rule " << r.id << " has no case");
}

TEST_CASE("hparams: deepseek2's shared-expert width is expert_shared_count x the expert width") {
  // (Was the expert width alone, so inspect showed 128 for tiny-deepseek-v2-lite's 256-wide shared FFN.)
  for (const char* name : {"tiny-deepseek2", "tiny-deepseek-v2-lite"}) {
    CAPTURE(name);
    const synth::SynthModel m = preset_model(name);
    const auto hp = models::load_hparams(m.metadata_map(), name);
    CHECK(hp.n_ff_shexp == m.preset.n_ff_exp * m.preset.n_expert_shared);
  }
}
