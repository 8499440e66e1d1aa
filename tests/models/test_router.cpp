// Unit tests of the MoE router (scheduler/router.hpp) against a straightforward reference written
// here: softmax / sigmoid gating, top-k with and without renormalisation, score bias used for selection
// only, DeepSeek-V3 grouped top-k, gpt-oss's softmax over the chosen logits, tie-breaking, weights_scale,
// and f32 (not bf16) routing.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "common/half.hpp"
#include "scheduler/router.hpp"

using namespace moetier;
using sched::Gating;
using sched::RouterConfig;

namespace {

struct Route {
  std::vector<int32_t> ids;
  std::vector<double> weights;
};

/// Indices of v sorted by decreasing value, ties by increasing index; the first k.
std::vector<int32_t> ranked(const std::vector<double>& v, size_t k) {
  std::vector<int32_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return v[a] > v[b]; });
  idx.resize(k);
  return idx;
}

/// The reference router, in double, written from the gating definitions (not from router.cpp).
Route reference_route(const RouterConfig& c, const std::vector<float>& logits) {
  const size_t n = logits.size();
  std::vector<double> probs(n);
  if (c.gating == Gating::Softmax) {
    double mx = *std::max_element(logits.begin(), logits.end()), den = 0;
    for (float l : logits) den += std::exp(l - mx);
    for (size_t i = 0; i < n; ++i) probs[i] = std::exp(logits[i] - mx) / den;
  } else if (c.gating == Gating::Sigmoid) {
    for (size_t i = 0; i < n; ++i) probs[i] = 1.0 / (1.0 + std::exp(-double(logits[i])));
  } else {
    for (size_t i = 0; i < n; ++i) probs[i] = logits[i];
  }
  std::vector<double> sel(n);
  for (size_t i = 0; i < n; ++i) sel[i] = probs[i] + (c.score_bias ? c.score_bias[i] : 0.0);
  if (c.n_groups > 1 && c.n_group_used < c.n_groups) {
    const size_t per = n / static_cast<size_t>(c.n_groups);
    std::vector<double> gscore(static_cast<size_t>(c.n_groups));
    for (size_t g = 0; g < gscore.size(); ++g) {
      std::vector<double> members(sel.begin() + g * per, sel.begin() + (g + 1) * per);
      std::sort(members.rbegin(), members.rend());
      gscore[g] = members[0] + (per > 1 ? members[1] : 0.0);
    }
    const auto keep = ranked(gscore, static_cast<size_t>(c.n_group_used));
    for (size_t i = 0; i < n; ++i)
      if (std::find(keep.begin(), keep.end(), static_cast<int32_t>(i / per)) == keep.end()) sel[i] = -INFINITY;
  }
  Route r;
  r.ids = ranked(sel, static_cast<size_t>(c.n_used));
  if (c.gating == Gating::SoftmaxWeight) {
    double mx = -INFINITY, den = 0;
    for (int32_t id : r.ids) mx = std::max(mx, double(logits[id]));
    for (int32_t id : r.ids) den += std::exp(logits[id] - mx);
    for (int32_t id : r.ids) r.weights.push_back(std::exp(logits[id] - mx) / den);
  } else {
    double sum = 0;
    for (int32_t id : r.ids) sum += probs[id];
    for (int32_t id : r.ids) r.weights.push_back(c.norm_topk ? probs[id] / sum : probs[id]);
  }
  for (double& w : r.weights) w *= c.weights_scale;
  return r;
}

Route route(const RouterConfig& c, const std::vector<float>& logits) {
  REQUIRE(static_cast<int64_t>(logits.size()) == c.n_expert);
  Route r;
  std::vector<int32_t> ids(static_cast<size_t>(c.n_used), -7);
  std::vector<float> w(static_cast<size_t>(c.n_used), -7.0f), scratch(static_cast<size_t>(3 * c.n_expert));
  sched::route_token(c, logits.data(), ids.data(), w.data(), scratch.data());
  r.ids = ids;
  r.weights.assign(w.begin(), w.end());
  return r;
}

void check_same(const Route& got, const Route& want, double rel = 2e-6) {
  CHECK(got.ids == want.ids);
  REQUIRE(got.weights.size() == want.weights.size());
  for (size_t k = 0; k < want.weights.size(); ++k) {
    CAPTURE(k);
    CHECK(std::fabs(got.weights[k] - want.weights[k]) <= rel * std::fabs(want.weights[k]) + 1e-12);
  }
}

std::vector<float> randn(size_t n, uint32_t seed, float sd = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

}  // namespace

TEST_CASE("router: Mixtral softmax over 8 experts, top-2, renormalised") {
  RouterConfig c;
  c.gating = Gating::Softmax;
  c.n_expert = 8;
  c.n_used = 2;
  c.norm_topk = true;
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    const auto logits = randn(8, seed, 2.0f);
    const Route got = route(c, logits);
    check_same(got, reference_route(c, logits));
    CHECK(got.weights[0] + got.weights[1] == doctest::Approx(1.0).epsilon(1e-6));
    CHECK(got.weights[0] >= got.weights[1]);
  }
  // A hand-checked case: logits {0, ln 3, ln 1, 0, 0, ln 6, 0, 0}: top-2 = {5, 1} with 6/9 and 3/9.
  const std::vector<float> l = {0, std::log(3.0f), 0, 0, 0, std::log(6.0f), 0, 0};
  const Route r = route(c, l);
  CHECK(r.ids == std::vector<int32_t>{5, 1});
  CHECK(r.weights[0] == doctest::Approx(2.0 / 3.0).epsilon(1e-6));
  CHECK(r.weights[1] == doctest::Approx(1.0 / 3.0).epsilon(1e-6));
}

TEST_CASE("router: qwen2moe-style softmax top-k without renormalisation, and weights_scale") {
  RouterConfig c;
  c.gating = Gating::Softmax;
  c.n_expert = 60;
  c.n_used = 4;
  c.norm_topk = false;
  for (uint32_t seed = 30; seed < 40; ++seed) {
    const auto logits = randn(60, seed, 1.5f);
    const Route got = route(c, logits);
    check_same(got, reference_route(c, logits));
    double sum = 0;
    for (double w : got.weights) sum += w;
    CHECK(sum < 0.99);  // probabilities over all 60 experts: the chosen four do not sum to 1
  }
  c.weights_scale = 1.5f;
  c.norm_topk = true;
  const auto logits = randn(60, 41);
  const Route got = route(c, logits);
  check_same(got, reference_route(c, logits));
  CHECK(got.weights[0] + got.weights[1] + got.weights[2] + got.weights[3] == doctest::Approx(1.5).epsilon(1e-6));
}

TEST_CASE("router: sigmoid gating, the score bias picks the experts, unbiased sigmoid gives the weights") {
  RouterConfig c;
  c.gating = Gating::Sigmoid;
  c.n_expert = 8;
  c.n_used = 2;
  c.norm_topk = true;
  const std::vector<float> logits = {2.0f, 1.5f, 1.0f, -1.0f, 0.0f, -2.0f, 0.5f, -0.5f};
  std::vector<float> bias(8, 0.0f);
  bias[3] = 1.0f;  // sigmoid(-1) = 0.269 + 1 = 1.269 beats sigmoid(2) = 0.881
  c.score_bias = bias.data();
  const Route got = route(c, logits);
  CHECK(got.ids == std::vector<int32_t>{3, 0});
  const double s3 = 1.0 / (1.0 + std::exp(1.0)), s0 = 1.0 / (1.0 + std::exp(-2.0));
  CHECK(got.weights[0] == doctest::Approx(s3 / (s3 + s0)).epsilon(1e-6));
  CHECK(got.weights[1] == doctest::Approx(s0 / (s3 + s0)).epsilon(1e-6));
  check_same(got, reference_route(c, logits));
  // Without the bias the choice is the plain top-2.
  c.score_bias = nullptr;
  CHECK(route(c, logits).ids == std::vector<int32_t>{0, 1});
  // Without renormalisation the weights are the raw sigmoids.
  c.score_bias = bias.data();
  c.norm_topk = false;
  const Route raw = route(c, logits);
  CHECK(raw.weights[0] == doctest::Approx(s3).epsilon(1e-6));
  CHECK(raw.weights[1] == doctest::Approx(s0).epsilon(1e-6));
}

TEST_CASE("router: DeepSeek-V3 256 experts, 8 groups of 32 (4 kept), top-8, bias, norm, scale 2.5") {
  const int n = 256;
  std::vector<float> logits(n), bias(n);
  for (int e = 0; e < n; ++e) {
    logits[e] = -4.0f + 0.01f * static_cast<float>(e % 17);               // sigmoid ~ 0.018 .. 0.021
    bias[e] = 0.001f * static_cast<float>((e * 7) % 11 - 5);              // small, like a trained bias
  }
  // Groups 0-3: two strong experts each (group scores ~1.4-1.75); group 4 two moderate ones (~1.07).
  logits[3] = 2.0f, logits[17] = 1.5f;    // group 0
  logits[40] = 1.8f, logits[50] = 1.2f;   // group 1
  logits[70] = 1.6f, logits[90] = 1.4f;   // group 2
  logits[100] = 1.0f, logits[120] = 0.9f;  // group 3
  logits[140] = 0.2f, logits[150] = 0.1f;  // group 4
  // Group 7: the single strongest expert overall, but its group's top-2 sum (~0.97) loses to group 4.
  logits[230] = 3.0f;
  // Bias: expert 5 (sigmoid(-1) = 0.27) is pushed past expert 120 (0.71); expert 3 is pulled down but
  // stays chosen, so its weight shows whether the biased or the unbiased score was used.
  logits[5] = -1.0f, bias[5] = 0.6f;
  bias[3] = -0.1f;

  RouterConfig c;
  c.gating = Gating::Sigmoid;
  c.n_expert = n;
  c.n_used = 8;
  c.n_groups = 8;
  c.n_group_used = 4;
  c.norm_topk = true;
  c.weights_scale = 2.5f;
  c.score_bias = bias.data();

  const Route want = reference_route(c, logits);
  // The crafted case does what it claims: both the group mask and the bias change the choice.
  RouterConfig no_groups = c;
  no_groups.n_groups = 1, no_groups.n_group_used = 1;
  RouterConfig no_bias = c;
  no_bias.score_bias = nullptr;
  RouterConfig plain = no_groups;
  plain.score_bias = nullptr;
  const Route r_no_groups = reference_route(no_groups, logits), r_no_bias = reference_route(no_bias, logits);
  const Route r_plain = reference_route(plain, logits);
  auto as_set = [](std::vector<int32_t> v) {
    std::sort(v.begin(), v.end());
    return v;
  };
  CHECK(as_set(want.ids) != as_set(r_plain.ids));
  CHECK(as_set(want.ids) != as_set(r_no_groups.ids));
  CHECK(as_set(want.ids) != as_set(r_no_bias.ids));
  CHECK(std::find(r_plain.ids.begin(), r_plain.ids.end(), 230) != r_plain.ids.end());
  CHECK(std::find(want.ids.begin(), want.ids.end(), 230) == want.ids.end());
  CHECK(std::find(want.ids.begin(), want.ids.end(), 5) != want.ids.end());
  CHECK(std::find(r_no_bias.ids.begin(), r_no_bias.ids.end(), 5) == r_no_bias.ids.end());
  CHECK(as_set(want.ids) == std::vector<int32_t>{3, 5, 17, 40, 50, 70, 90, 100});

  const Route got = route(c, logits);
  check_same(got, want);
  // Weights: unbiased sigmoid of the chosen experts, normalised to sum 1, times 2.5.
  double sum = 0;
  for (int32_t id : got.ids) sum += 1.0 / (1.0 + std::exp(-double(logits[id])));
  double total = 0;
  for (size_t k = 0; k < got.ids.size(); ++k) {
    const double p = 1.0 / (1.0 + std::exp(-double(logits[got.ids[k]])));
    CHECK(got.weights[k] == doctest::Approx(p / sum * 2.5).epsilon(1e-6));
    total += got.weights[k];
  }
  CHECK(total == doctest::Approx(2.5).epsilon(1e-6));

  // Random DeepSeek-like rows agree with the reference too.
  for (uint32_t seed = 100; seed < 110; ++seed) {
    const auto l = randn(n, seed, 1.5f);
    const auto b = randn(n, seed + 1000, 0.1f);
    c.score_bias = b.data();
    check_same(route(c, l), reference_route(c, l));
  }
}

TEST_CASE("router: gpt-oss SoftmaxWeight takes top-k of the logits and a softmax over the chosen ones") {
  RouterConfig c;
  c.gating = Gating::SoftmaxWeight;
  c.n_expert = 32;
  c.n_used = 4;
  for (uint32_t seed = 200; seed < 210; ++seed) {
    const auto logits = randn(32, seed, 2.0f);
    const Route got = route(c, logits);
    check_same(got, reference_route(c, logits));
    double sum = 0;
    for (double w : got.weights) sum += w;
    CHECK(sum == doctest::Approx(1.0).epsilon(1e-6));  // normalised over the 4 chosen, not over 32
  }
  const std::vector<float> l = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0,
                                0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0};
  RouterConfig c2 = c;
  c2.n_used = 3;
  const Route r = route(c2, l);
  CHECK(r.ids == std::vector<int32_t>{29, 10, 21});
  const double den = std::exp(3.0) + std::exp(2.0) + std::exp(1.0);
  CHECK(r.weights[0] == doctest::Approx(std::exp(3.0) / den).epsilon(1e-6));
  CHECK(r.weights[2] == doctest::Approx(std::exp(1.0) / den).epsilon(1e-6));
}

TEST_CASE("router: ties go to the lower expert id") {
  RouterConfig c;
  c.gating = Gating::Softmax;
  c.n_expert = 6;
  c.n_used = 3;
  const std::vector<float> l = {1.0f, 3.0f, 3.0f, 0.5f, 3.0f, 1.0f};
  CHECK(route(c, l).ids == std::vector<int32_t>{1, 2, 4});
  c.n_used = 4;
  CHECK(route(c, l).ids == std::vector<int32_t>{1, 2, 4, 0});
  // All equal: ids 0..k-1 in order.
  const std::vector<float> flat(6, 0.25f);
  CHECK(route(c, flat).ids == std::vector<int32_t>{0, 1, 2, 3});
  // Tied group scores keep the lower group.
  RouterConfig g;
  g.gating = Gating::Sigmoid;
  g.n_expert = 8;
  g.n_used = 2;
  g.n_groups = 4;
  g.n_group_used = 1;
  const std::vector<float> gl = {0, 0, 1, 1, 1, 1, 0, 0};
  CHECK(route(g, gl).ids == std::vector<int32_t>{2, 3});
}

TEST_CASE("router: logits are routed in f32; bf16-rounded logits would flip the choice") {
  RouterConfig c;
  c.gating = Gating::Softmax;
  c.n_expert = 8;
  c.n_used = 2;
  c.norm_topk = true;
  // Experts 1 and 6 differ by less than half a bf16 step (2^-7 at 1.0): bf16 rounds both to 1.0,
  // which ties and hands the second slot to the lower id 1, while in f32 expert 6 is ahead.
  std::vector<float> l = {0.1f, 1.0010f, -0.3f, 0.2f, 2.0f, 0.0f, 1.0030f, -1.0f};
  std::vector<float> l_bf16 = l;
  for (float& x : l_bf16) x = bf16_to_f32(f32_to_bf16(x));
  CHECK(l_bf16[1] == l_bf16[6]);
  const Route f32_ref = reference_route(c, l), bf16_ref = reference_route(c, l_bf16);
  CHECK(f32_ref.ids == std::vector<int32_t>{4, 6});
  CHECK(bf16_ref.ids == std::vector<int32_t>{4, 1});
  check_same(route(c, l), f32_ref);

  // The same with sigmoid gating and a bias (DeepSeek-V3 style).
  c.gating = Gating::Sigmoid;
  const std::vector<float> bias(8, 0.01f);
  c.score_bias = bias.data();
  const Route s_f32 = reference_route(c, l), s_bf16 = reference_route(c, l_bf16);
  CHECK(s_f32.ids != s_bf16.ids);
  check_same(route(c, l), s_f32);
}

TEST_CASE("router_probs: the unbiased gate probabilities") {
  RouterConfig c;
  c.n_expert = 5;
  const std::vector<float> l = {0.5f, -1.0f, 2.0f, 0.0f, 1.0f};
  std::vector<float> p(5);
  c.gating = Gating::Softmax;
  sched::router_probs(c, l.data(), p.data());
  double den = 0;
  for (float x : l) den += std::exp(x);
  for (int i = 0; i < 5; ++i) CHECK(p[i] == doctest::Approx(std::exp(l[i]) / den).epsilon(1e-6));
  c.gating = Gating::Sigmoid;
  sched::router_probs(c, l.data(), p.data());
  for (int i = 0; i < 5; ++i) CHECK(p[i] == doctest::Approx(1.0 / (1.0 + std::exp(-l[i]))).epsilon(1e-6));
}

TEST_CASE("router: a NaN / inf logit of an expert that is not chosen still makes every weight NaN") {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (Gating gating : {Gating::Softmax, Gating::Sigmoid, Gating::SoftmaxWeight}) {
    for (float bad : {nan, inf, -inf}) {
      RouterConfig c;
      c.gating = gating;
      c.n_expert = 8;
      c.n_used = 2;
      c.norm_topk = gating == Gating::Sigmoid;
      std::vector<float> l = {0.1f, 2.0f, 0.3f, 1.5f, 0.2f, 0.0f, -1.0f, 0.4f};
      const Route clean = route(c, l);
      CHECK(clean.ids == std::vector<int32_t>{1, 3});
      for (double w : clean.weights) CHECK(std::isfinite(w));
      l[6] = bad;  // never chosen (and -inf would not be chosen either)
      const Route r = route(c, l);
      CAPTURE(static_cast<int>(gating));
      CAPTURE(bad);
      REQUIRE(r.ids.size() == 2);
      for (int32_t id : r.ids) CHECK((id >= 0 && id < 8));
      for (double w : r.weights) CHECK(std::isnan(w));
    }
  }
}
