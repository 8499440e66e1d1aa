#include "scheduler/router.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "cpu/ops.hpp"

namespace moetier::sched {

void router_probs(const RouterConfig& cfg, const float* logits, float* probs) {
  const int64_t n = cfg.n_expert;
  std::copy(logits, logits + n, probs);
  switch (cfg.gating) {
    case Gating::Softmax: cpu::softmax(probs, n); break;
    case Gating::Sigmoid:
      for (int64_t i = 0; i < n; ++i) probs[i] = 1.0f / (1.0f + std::exp(-probs[i]));
      break;
    case Gating::SoftmaxWeight: break;  // selection on raw logits
  }
}

namespace {

/// Indices of the k largest values of v[0..n) in decreasing order; ties: lower index first.
void top_k(const float* v, int64_t n, int64_t k, int32_t* out) {
  // n is small (<= 512 experts); a partial selection sort keeps it allocation-free.
  for (int64_t r = 0; r < k; ++r) {
    int32_t best = -1;
    for (int64_t i = 0; i < n; ++i) {
      bool taken = false;
      for (int64_t q = 0; q < r; ++q) taken |= out[q] == i;
      if (taken) continue;
      if (best < 0 || v[i] > v[best]) best = static_cast<int32_t>(i);
    }
    out[r] = best;
  }
}

}  // namespace

void route_token(const RouterConfig& cfg, const float* logits, int32_t* ids, float* weights, float* scratch) {
  const int64_t n = cfg.n_expert;
  float* probs = scratch;
  float* sel = scratch + n;
  float* group_scores = scratch + 2 * n;
  router_probs(cfg, logits, probs);
  for (int64_t i = 0; i < n; ++i) sel[i] = probs[i] + (cfg.score_bias ? cfg.score_bias[i] : 0.0f);

  if (cfg.n_groups > 1 && cfg.n_group_used < cfg.n_groups) {
    const int64_t per_group = n / cfg.n_groups;
    for (int64_t g = 0; g < cfg.n_groups; ++g) {
      int32_t best2[2] = {0, 0};
      top_k(sel + g * per_group, per_group, std::min<int64_t>(2, per_group), best2);
      float s = sel[g * per_group + best2[0]];
      if (per_group > 1) s += sel[g * per_group + best2[1]];
      group_scores[g] = s;
    }
    int32_t kept[64];
    const int64_t n_keep = std::min<int64_t>(cfg.n_group_used, 64);
    top_k(group_scores, cfg.n_groups, n_keep, kept);
    for (int64_t g = 0; g < cfg.n_groups; ++g) {
      if (std::find(kept, kept + n_keep, g) != kept + n_keep) continue;
      std::fill(sel + g * per_group, sel + (g + 1) * per_group, -std::numeric_limits<float>::infinity());
    }
  }

  top_k(sel, n, cfg.n_used, ids);

  if (cfg.gating == Gating::SoftmaxWeight) {
    for (int64_t k = 0; k < cfg.n_used; ++k) weights[k] = logits[ids[k]];
    cpu::softmax(weights, cfg.n_used);
  } else {
    for (int64_t k = 0; k < cfg.n_used; ++k) weights[k] = probs[ids[k]];
    if (cfg.norm_topk) {
      double sum_d = 0.0;  // ggml_sum_rows accumulates in double (ggml_vec_sum_f32)
      for (int64_t k = 0; k < cfg.n_used; ++k) sum_d += weights[k];
      const float sum = std::max(static_cast<float>(sum_d), 6.103515625e-5f);
      for (int64_t k = 0; k < cfg.n_used; ++k) weights[k] /= sum;
    }
  }
  if (cfg.weights_scale != 1.0f)
    for (int64_t k = 0; k < cfg.n_used; ++k) weights[k] *= cfg.weights_scale;
  // A NaN / inf router logit of an expert that was not selected would otherwise vanish here (top_k never
  // prefers NaN, and sigmoid / selected-softmax weights ignore the others): make the token's weights NaN so
  // that its FFN output, and finally its logits, are non-finite and the run stops.
  bool finite = true;
  for (int64_t i = 0; i < n; ++i) finite &= std::isfinite(logits[i]);
  if (!finite) std::fill(weights, weights + cfg.n_used, std::numeric_limits<float>::quiet_NaN());
}

}  // namespace moetier::sched
