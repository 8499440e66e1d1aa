// Unit tests of the sampler (runtime/sampling/sampler.hpp): greedy, top-k, top-p, min-p, temperature,
// repetition penalty, seeding and parameter validation. Statistical checks use fixed seeds, so they
// are deterministic; they assert that excluded tokens never appear and that kept ones do.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "common/error.hpp"
#include "runtime/sampling/sampler.hpp"

using namespace moetier;
using sampling::Sampler;
using sampling::SamplerParams;

namespace {

/// Logits whose softmax (temperature 1) is exactly `probs`.
std::vector<float> logits_of(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(static_cast<float>(std::log(p)));
  return l;
}

/// Params with every filter off.
SamplerParams plain(float temperature, uint64_t seed = 1234) {
  SamplerParams p;
  p.temperature = temperature;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.repeat_penalty = 1.0f;
  p.seed = seed;
  return p;
}

std::map<int32_t, int> histogram(Sampler& s, const std::vector<float>& logits, int n_draws) {
  std::map<int32_t, int> h;
  for (int i = 0; i < n_draws; ++i) ++h[s.sample(logits)];
  return h;
}

std::set<int32_t> keys(const std::map<int32_t, int>& h) {
  std::set<int32_t> k;
  for (const auto& [id, n] : h) k.insert(id);
  return k;
}

// Probabilities of 8 tokens in shuffled order (ids do not follow the ranking).
const std::vector<double> kProbs = {0.05, 0.30, 0.02, 0.40, 0.10, 0.08, 0.03, 0.02};

}  // namespace

TEST_CASE("argmax: largest value, lowest index on ties") {
  CHECK(sampling::argmax(std::vector<float>{0.1f, 2.0f, -1.0f, 2.0f}) == 1);
  CHECK(sampling::argmax(std::vector<float>{-5.0f}) == 0);
  CHECK(sampling::argmax(std::vector<float>{-3.0f, -2.0f, -2.5f}) == 1);
}

TEST_CASE("greedy: temperature 0 is argmax and ignores top-k / top-p / min-p / seed") {
  std::mt19937 rng(5);
  std::normal_distribution<float> d(0.0f, 3.0f);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<float> l(100);
    for (float& x : l) x = d(rng);
    SamplerParams p;
    p.temperature = 0.0f;
    p.top_k = 3;
    p.top_p = 0.1f;
    p.min_p = 0.9f;
    p.seed = static_cast<uint64_t>(trial);
    Sampler s(p);
    for (int i = 0; i < 5; ++i) CHECK(s.sample(l) == sampling::argmax(l));
  }
  // Negative temperature is greedy too; ties resolve to the lowest id.
  SamplerParams p = plain(-1.0f);
  Sampler s(p);
  CHECK(s.sample(std::vector<float>{1.0f, 4.0f, 4.0f, 0.0f}) == 1);
}

TEST_CASE("top-k = 1 always returns the argmax, whatever the temperature") {
  const std::vector<float> l = logits_of(kProbs);
  for (float temp : {0.5f, 1.0f, 5.0f}) {
    SamplerParams p = plain(temp, 77);
    p.top_k = 1;
    Sampler s(p);
    const auto h = histogram(s, l, 500);
    CHECK(keys(h) == std::set<int32_t>{3});
  }
}

TEST_CASE("top-k keeps the k most likely tokens") {
  SamplerParams p = plain(1.0f, 99);
  p.top_k = 3;
  Sampler s(p);
  const auto h = histogram(s, logits_of(kProbs), 4000);
  CHECK(keys(h) == std::set<int32_t>{3, 1, 4});
}

TEST_CASE("top-p keeps the smallest prefix whose mass reaches p (computed before temperature)") {
  const std::vector<float> l = logits_of(kProbs);
  // Sorted: 0.40 (3), 0.30 (1), 0.10 (4), 0.08 (5), 0.05 (0), ...
  struct Case {
    float top_p;
    std::set<int32_t> kept;
  };
  for (const Case& c : {Case{0.35f, {3}}, Case{0.65f, {3, 1}}, Case{0.75f, {3, 1, 4}}, Case{0.85f, {3, 1, 4, 5}}}) {
    CAPTURE(c.top_p);
    for (float temp : {1.0f, 3.0f}) {  // a high temperature flattens the draw, not the kept set
      SamplerParams p = plain(temp, 4242);
      p.top_p = c.top_p;
      Sampler s(p);
      CHECK(keys(histogram(s, l, 4000)) == c.kept);
    }
  }
}

TEST_CASE("min-p keeps tokens with p >= min_p * p_max") {
  const std::vector<float> l = logits_of(kProbs);
  struct Case {
    float min_p;
    std::set<int32_t> kept;
  };
  // p_max = 0.40: thresholds 0.24, 0.096, 0.06, 0.40.
  for (const Case& c : {Case{0.6f, {3, 1}}, Case{0.24f, {3, 1, 4}}, Case{0.15f, {3, 1, 4, 5}}, Case{1.0f, {3}}}) {
    CAPTURE(c.min_p);
    SamplerParams p = plain(1.0f, 555);
    p.min_p = c.min_p;
    Sampler s(p);
    CHECK(keys(histogram(s, l, 4000)) == c.kept);
  }
}

TEST_CASE("temperature 1 without filters draws from the softmax") {
  const std::vector<float> l = logits_of(kProbs);
  Sampler s(plain(1.0f, 2024));
  const int n = 40000;
  const auto h = histogram(s, l, n);
  CHECK(keys(h).size() == kProbs.size());
  for (size_t i = 0; i < kProbs.size(); ++i) {
    const double expected = kProbs[i] * n, sd = std::sqrt(n * kProbs[i] * (1 - kProbs[i]));
    const int got = h.count(static_cast<int32_t>(i)) ? h.at(static_cast<int32_t>(i)) : 0;
    CAPTURE(i);
    CHECK(std::fabs(got - expected) < 5 * sd);  // 5 sigma: fails only for a wrong distribution
  }
  // A low temperature sharpens: token 3 dominates far beyond its 40%.
  Sampler cold(plain(0.1f, 2024));
  const auto hc = histogram(cold, l, 2000);
  CHECK(hc.at(3) > 1800);  // expected share 0.947
}

TEST_CASE("a tiny (even subnormal) temperature picks the most likely token, never a NaN fallback") {
  const std::vector<float> l = logits_of(kProbs);  // token 3 is the most likely, token 2/7 the least
  for (const float t : {1e-45f, 1e-40f, 1e-38f, std::numeric_limits<float>::min(), 1e-30f}) {
    CAPTURE(t);
    for (const bool filters : {false, true}) {
      SamplerParams p = plain(t, 77);
      if (filters) {  // the defaults of `moetier run`
        p.top_k = 40;
        p.top_p = 0.95f;
        p.min_p = 0.05f;
      }
      Sampler s(p);
      const auto h = histogram(s, l, 200);
      CHECK(keys(h) == std::set<int32_t>{3});
    }
  }
  // The largest finite temperature flattens the distribution but still samples every token.
  Sampler hot(plain(std::numeric_limits<float>::max(), 5));
  CHECK(keys(histogram(hot, l, 4000)).size() == kProbs.size());
}

TEST_CASE("repetition penalty divides positive and multiplies negative logits of recent tokens") {
  // Greedy, so the effect is visible as a change of argmax.
  SamplerParams p = plain(0.0f);
  p.repeat_penalty = 1.2f;
  p.repeat_last_n = 4;
  const std::vector<float> l = {2.0f, 1.9f, -0.5f, -0.55f};
  {
    Sampler s(p);
    CHECK(s.sample(l) == 0);  // nothing recent yet
    s.accept(0);
    CHECK(s.sample(l) == 1);  // 2.0 / 1.2 = 1.67 < 1.9
    s.accept(0);              // repeated occurrences do not compound: 1.67, not 1.39
    std::vector<float> l2 = {2.0f, 1.5f, -3.0f, -3.0f};
    CHECK(s.sample(l2) == 0);
  }
  {
    // Negative logits move further down: among {2, 3} (both negative), penalising 2 leaves 3 on top.
    std::vector<float> neg = {-5.0f, -5.0f, -0.5f, -0.55f};
    Sampler s(p);
    CHECK(s.sample(neg) == 2);
    s.accept(2);
    CHECK(s.sample(neg) == 3);  // -0.5 * 1.2 = -0.6 < -0.55
  }
  {
    // The window: a token older than repeat_last_n accepted tokens is no longer penalised.
    Sampler s(p);
    s.accept(0);
    CHECK(s.sample(l) == 1);
    for (int32_t t : {2, 3, 2, 3}) s.accept(t);
    CHECK(s.sample(l) == 0);
  }
  {
    // Penalty 1 is off.
    SamplerParams off = p;
    off.repeat_penalty = 1.0f;
    Sampler s(off);
    s.accept(0);
    CHECK(s.sample(l) == 0);
  }
}

TEST_CASE("same seed, same sequence; another seed, another sequence") {
  std::vector<float> l(50);
  for (size_t i = 0; i < l.size(); ++i) l[i] = 0.01f * static_cast<float>(i % 7);
  auto draw = [&](uint64_t seed) {
    SamplerParams p;  // defaults: top-k 40, top-p 0.95, min-p 0.05, temperature 0.8
    p.seed = seed;
    Sampler s(p);
    CHECK(s.seed() == seed);
    std::vector<int32_t> seq;
    for (int i = 0; i < 100; ++i) {
      seq.push_back(s.sample(l));
      s.accept(seq.back());
    }
    return seq;
  };
  const auto a = draw(42), b = draw(42), c = draw(43);
  CHECK(a == b);
  CHECK(a != c);
  CHECK(std::set<int32_t>(a.begin(), a.end()).size() > 10);  // really sampling, not greedy
}

TEST_CASE("invalid sampler parameters throw moetier::Error") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto with = [](auto set) {
    SamplerParams p;
    p.seed = 1;
    set(p);
    return p;
  };
  CHECK_THROWS_AS(Sampler(with([](SamplerParams& p) { p.top_p = 0.0f; })), Error);
  CHECK_THROWS_AS(Sampler(with([](SamplerParams& p) { p.top_p = 2.0f; })), Error);
  CHECK_THROWS_AS(Sampler(with([](SamplerParams& p) { p.top_p = -0.5f; })), Error);
  CHECK_THROWS_AS(Sampler(with([&](SamplerParams& p) { p.top_p = nan; })), Error);
  CHECK_THROWS_AS(Sampler(with([](SamplerParams& p) { p.min_p = -0.1f; })), Error);
  CHECK_THROWS_AS(Sampler(with([](SamplerParams& p) { p.min_p = 1.5f; })), Error);
  CHECK_THROWS_AS(Sampler(with([&](SamplerParams& p) { p.min_p = nan; })), Error);
  CHECK_THROWS_AS(Sampler(with([](SamplerParams& p) { p.repeat_penalty = 0.0f; })), Error);
  CHECK_THROWS_AS(Sampler(with([](SamplerParams& p) { p.repeat_penalty = -1.0f; })), Error);
  CHECK_THROWS_AS(Sampler(with([&](SamplerParams& p) { p.temperature = nan; })), Error);
  const float inf = std::numeric_limits<float>::infinity();
  CHECK_THROWS_AS(Sampler(with([&](SamplerParams& p) { p.temperature = inf; })), Error);
  CHECK_THROWS_AS(Sampler(with([&](SamplerParams& p) { p.repeat_penalty = inf; })), Error);
  try {
    Sampler bad(with([](SamplerParams& p) { p.top_p = 2.0f; }));
    FAIL("accepted top_p 2");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("top-p") != std::string::npos);
  }
  // Boundary values are valid.
  CHECK_NOTHROW(Sampler(with([](SamplerParams& p) { p.top_p = 1.0f; p.min_p = 0.0f; })));
  CHECK_NOTHROW(Sampler(with([](SamplerParams& p) { p.min_p = 1.0f; p.repeat_penalty = 0.5f; })));
}
