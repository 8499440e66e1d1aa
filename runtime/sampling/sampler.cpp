#include "runtime/sampling/sampler.hpp"

#include <algorithm>
#include <cmath>

#include "common/error.hpp"

namespace moetier::sampling {

int32_t argmax(std::span<const float> logits) {
  int32_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i)
    if (logits[i] > logits[best]) best = static_cast<int32_t>(i);
  return best;
}

Sampler::Sampler(const SamplerParams& p) : p_(p) {
  // NaN would pass every `<= 0` test below and turn the distribution into NaNs.
  if (!std::isfinite(p.temperature)) fail("--temp {} (expected a finite number; <= 0 is greedy)", p.temperature);
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) fail("--top-p {} (expected 0 < p <= 1)", p.top_p);
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) fail("--min-p {} (expected 0 <= p <= 1)", p.min_p);
  if (!(p.repeat_penalty > 0.0f) || !std::isfinite(p.repeat_penalty))
    fail("--repeat-penalty {} (expected a finite number > 0)", p.repeat_penalty);
  seed_ = p.seed == 0xFFFFFFFFu ? std::random_device{}() : p.seed;
  rng_.seed(seed_);
}

void Sampler::accept(int32_t token) {
  if (p_.repeat_last_n <= 0) return;
  recent_.push_back(token);
  while (static_cast<int32_t>(recent_.size()) > p_.repeat_last_n) recent_.pop_front();
}

int32_t Sampler::sample(std::span<const float> logits) {
  const int32_t n = static_cast<int32_t>(logits.size());
  cand_.resize(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) cand_[i] = {i, logits[i], 0.0f};
  if (p_.repeat_penalty != 1.0f) {
    // Each distinct recent token is penalised once (llama.cpp's penalties sampler counts occurrences
    // for the frequency penalty but applies the repetition factor once).
    for (size_t i = 0; i < recent_.size(); ++i) {
      const int32_t t = recent_[i];
      if (t < 0 || t >= n || std::find(recent_.begin(), recent_.begin() + static_cast<long>(i), t) != recent_.begin() + static_cast<long>(i))
        continue;
      float& l = cand_[t].logit;
      l = l > 0 ? l / p_.repeat_penalty : l * p_.repeat_penalty;
    }
  }
  if (p_.temperature <= 0.0f) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; ++i)
      if (cand_[i].logit > cand_[best].logit) best = i;
    return cand_[best].id;
  }
  auto by_logit = [](const Cand& a, const Cand& b) { return a.logit > b.logit || (a.logit == b.logit && a.id < b.id); };
  size_t keep = cand_.size();
  if (p_.top_k > 0 && static_cast<size_t>(p_.top_k) < keep) {
    std::partial_sort(cand_.begin(), cand_.begin() + p_.top_k, cand_.end(), by_logit);
    keep = static_cast<size_t>(p_.top_k);
  } else {
    std::sort(cand_.begin(), cand_.end(), by_logit);
  }
  auto softmax = [&](size_t m) {
    const float mx = cand_[0].logit;
    double sum = 0;
    for (size_t i = 0; i < m; ++i) sum += (cand_[i].p = std::exp(cand_[i].logit - mx));
    for (size_t i = 0; i < m; ++i) cand_[i].p = static_cast<float>(cand_[i].p / sum);
  };
  softmax(keep);
  if (p_.top_p < 1.0f) {
    double cum = 0;
    size_t m = 0;
    while (m < keep) {
      cum += cand_[m].p;
      ++m;
      if (cum >= p_.top_p) break;
    }
    keep = std::max<size_t>(1, m);
  }
  if (p_.min_p > 0.0f) {
    const float threshold = cand_[0].p * p_.min_p;
    size_t m = 1;
    while (m < keep && cand_[m].p >= threshold) ++m;
    keep = m;
  }
  // Softmax of logit / temperature, computed as exp((logit - max) / temperature) in double: the top
  // token's term is exactly 1, so a tiny (even subnormal) temperature sends the others to 0 instead of
  // dividing the logits into inf and the probabilities into NaN.
  const double mx = cand_[0].logit, temp = p_.temperature;
  double sum = 0;
  std::vector<double>& w = weights_;
  w.resize(keep);
  for (size_t i = 0; i < keep; ++i) sum += (w[i] = std::exp((static_cast<double>(cand_[i].logit) - mx) / temp));
  if (!(sum >= 1.0) || !std::isfinite(sum)) return cand_[0].id;  // NaN logits: the most likely token, never a guess
  std::uniform_real_distribution<double> u(0.0, sum);
  const double r = u(rng_);
  double cum = 0;
  size_t last = 0;  // the last candidate with a non-zero weight (rounding may leave cum just below r)
  for (size_t i = 0; i < keep; ++i) {
    if (!(w[i] > 0)) continue;
    last = i;
    cum += w[i];
    if (r < cum) return cand_[i].id;
  }
  return cand_[last].id;
}

}  // namespace moetier::sampling
