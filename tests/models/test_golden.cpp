// Golden end-to-end checks against llama.cpp (../shared/golden): last-position logits, teacher-forced
// greedy steps, free-running greedy continuations, and router top-k choices per layer.
//
// Tolerance: our f32 arithmetic differs from ggml's only in summation order (SIMD lanes, tiling) and in
// exp/silu approximations: about 1e-6 relative per op, growing through 2-3 layers and a vocab projection
// to a few 1e-5 relative of the logit scale (|logit| ~ 3-12). Quantised models also quantise activations
// exactly as ggml, but a one-ulp difference before an activation is quantised can flip one int8 rounding
// (1/127 of the block scale), so their bound is looser. The measured maxima are printed (MESSAGE).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "runtime/gguf/gguf_model.hpp"
#include "runtime/models/model.hpp"
#include "tests/models/golden_util.hpp"

using namespace moetier;
using moetier::test::shared_dir;

namespace {

struct Err {
  double max_abs = 0, max_rel = 0;
  void add(double got, double want) {
    const double a = std::fabs(got - want);
    max_abs = std::max(max_abs, a);
    max_rel = std::max(max_rel, a / std::max(1.0, std::fabs(want)));
  }
};

double tolerance(const std::string& stem) { return stem.find("q8_0") != std::string::npos ? 2e-2 : 1e-4; }

int32_t argmax(const std::vector<float>& v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

}  // namespace

namespace {

enum class Part { All, RouterOnly };

void check_golden(const std::string& stem, Part part) {
  {
    CAPTURE(stem);
    const auto dir = shared_dir() / "golden" / stem;
    const auto golden = moetier::test::read_json(dir / "golden.json");
    auto g = gguf::GgufModel::open((shared_dir() / "models" / (stem + ".gguf")).string());
    auto model = models::load_model(g);
    const double tol = tolerance(stem);
    Err logit_err, step_err;
    int greedy_same = 0, greedy_total = 0;

    for (const auto& p : golden["prompts"]) {
      const int idx = p["index"];
      CAPTURE(idx);
      std::vector<int32_t> tokens = p["tokens"].get<std::vector<int32_t>>();
      const auto want = moetier::test::read_npy((dir / p["last_logits_file"].get<std::string>()).string()).f32;

      // Prefill + last-position logits.
      auto cache = model->new_cache(512);
      std::vector<float> logits;
      std::vector<models::RoutingRecord> routing;
      models::ForwardOptions opt;
      opt.routing = &routing;
      model->forward(tokens, cache, logits, opt);
      REQUIRE(logits.size() == want.size());
      Err e;
      for (size_t i = 0; i < want.size(); ++i) e.add(logits[i], want[i]);
      logit_err.max_abs = std::max(logit_err.max_abs, e.max_abs);
      logit_err.max_rel = std::max(logit_err.max_rel, e.max_rel);
      if (part == Part::All) CHECK(e.max_abs < tol);

      // Router choices of prompt 0 against the dump (last layer: last row only).
      if (idx == 0) {
        const auto index = moetier::test::read_json(dir / "dump_p0" / "index.json");
        for (int il = 0; il < static_cast<int>(routing.size()); ++il) {
          const std::string f = moetier::test::dump_file(index, "ffn_moe_topk-" + std::to_string(il));
          if (f.empty()) {
            CHECK(routing[il].ids.empty());  // dense layer
            continue;
          }
          const auto topk = moetier::test::read_npy((dir / "dump_p0" / f).string()).i32;
          CAPTURE(il);
          CHECK(routing[il].ids == topk);
        }
      }

      if (part == Part::RouterOnly) continue;
      // Teacher-forced greedy steps: compare the golden top-10 logits at every step.
      const auto& steps = p["greedy_steps"];
      std::vector<int32_t> greedy = p["greedy_tokens"].get<std::vector<int32_t>>();
      for (size_t s = 0; s < steps.size(); ++s) {
        if (s > 0) model->forward(std::span<const int32_t>(&greedy[s - 1], 1), cache, logits);
        for (const auto& pair : steps[s]["top10"]) step_err.add(logits[pair[0].get<int>()], pair[1].get<double>());
        const double margin = steps[s]["margin_top1_top2"];
        if (margin > 2 * tol) CHECK(argmax(logits) == steps[s]["token"].get<int>());
      }

      // Free-running greedy continuation of 16 tokens.
      auto cache2 = model->new_cache(512);
      model->forward(tokens, cache2, logits);
      std::vector<int32_t> ours;
      for (int s = 0; s < 16; ++s) {
        const int32_t t = argmax(logits);
        ours.push_back(t);
        model->forward(std::span<const int32_t>(&t, 1), cache2, logits);
      }
      greedy_total += 16;
      for (int s = 0; s < 16 && ours[s] == greedy[s]; ++s) ++greedy_same;
      CHECK(ours == greedy);
    }
    if (part == Part::All) CHECK(step_err.max_abs < tol);
    MESSAGE(stem << ": last logits max abs err " << logit_err.max_abs << ", max rel err " << logit_err.max_rel
                 << "; teacher-forced top-10 max abs err " << step_err.max_abs << "; greedy prefix agreement "
                 << greedy_same << "/" << greedy_total);
  }
}

}  // namespace

TEST_CASE("golden F32 models: logits, greedy continuations and router choices match llama.cpp" *
          doctest::skip(moetier::test::no_shared())) {
  for (const std::string& stem : moetier::test::golden_stems())
    if (stem.find("f32") != std::string::npos) check_golden(stem, Part::All);
}

TEST_CASE("golden Q8_0 models: router choices of prompt 0 match llama.cpp" * doctest::skip(moetier::test::no_shared())) {
  for (const std::string& stem : moetier::test::golden_stems())
    if (stem.find("q8_0") != std::string::npos) check_golden(stem, Part::RouterOnly);
}

TEST_CASE("golden Q8_0 models: logits and greedy continuations match llama.cpp" *
          doctest::skip(moetier::test::no_shared())) {
  for (const std::string& stem : moetier::test::golden_stems())
    if (stem.find("q8_0") != std::string::npos) check_golden(stem, Part::All);
}
