#include "runtime/models/moe_ffn.hpp"

#include <algorithm>
#include <cmath>

#include "common/trace_events.hpp"

namespace moetier::models {

void FfnExec::dense(int32_t layer, const FfnWeights& w, const float* x, int64_t n_tokens, float* y, FfnAct act) {
  ex_.dense(layer, w, x, n_tokens, y, act);
}

void FfnExec::moe(const MoeWeights& w, int32_t layer, const float* x, int64_t n_tokens, int64_t n_embd, float* y,
                  RoutingRecord* record, FfnAct act) {
  const RouterConfig& cfg = w.cfg;
  const int64_t n_exp = cfg.n_expert, k = cfg.n_used;
  trace::Scope router_span("router", "router");
  router_span.arg("layer", layer).arg("tokens", n_tokens);
  logits_.resize(static_cast<size_t>(n_tokens * n_exp));
  lin_(w.router, x, n_tokens, logits_.data());
  if (w.router_bias)
    for (int64_t t = 0; t < n_tokens; ++t)
      for (int64_t e = 0; e < n_exp; ++e) logits_[t * n_exp + e] += w.router_bias[e];

  routing_.resize(n_tokens, k);
  scratch_.resize(static_cast<size_t>(3 * n_exp + 64));
  for (int64_t t = 0; t < n_tokens; ++t)
    route_token(cfg, logits_.data() + t * n_exp, routing_.ids.data() + t * k, routing_.weights.data() + t * k,
                scratch_.data());
  if (record) {
    record->ids.assign(routing_.ids.begin(), routing_.ids.end());
    record->weights.assign(routing_.weights.begin(), routing_.weights.end());
    record->logits.assign(logits_.begin(), logits_.end());
  }

  router_span.end();
  if (w.has_shared) shared_out_.resize(static_cast<size_t>(n_tokens * n_embd));
  ex_.moe(layer, routing_, x, n_embd, y, act, w.has_shared ? &w.shared : nullptr,
          w.has_shared ? shared_out_.data() : nullptr);

  if (w.has_shared) {
    if (w.shared_gate.valid()) {
      sg_.resize(static_cast<size_t>(n_tokens));
      lin_(w.shared_gate, x, n_tokens, sg_.data());
      for (int64_t t = 0; t < n_tokens; ++t) {
        const float g = 1.0f / (1.0f + std::exp(-sg_[t]));
        for (int64_t i = 0; i < n_embd; ++i) shared_out_[t * n_embd + i] *= g;
      }
    }
    for (int64_t i = 0; i < n_tokens * n_embd; ++i) y[i] += shared_out_[i];
  }
}

void FfnExec::predict(const MoeWeights& w, int32_t layer, const float* x, int64_t n_tokens) {
  trace::Scope span("predict", "router");
  span.arg("layer", layer).arg("tokens", n_tokens);
  const int64_t n_exp = w.cfg.n_expert, k = w.cfg.n_used;
  pred_logits_.resize(static_cast<size_t>(n_tokens * n_exp));
  lin_(w.router, x, n_tokens, pred_logits_.data());
  pred_ids_.resize(static_cast<size_t>(k));
  pred_w_.resize(static_cast<size_t>(k));
  scratch_.resize(static_cast<size_t>(3 * n_exp + 64));
  predicted_.clear();
  for (int64_t t = 0; t < n_tokens; ++t) {
    route_token(w.cfg, pred_logits_.data() + t * n_exp, pred_ids_.data(), pred_w_.data(), scratch_.data());
    for (int32_t e : pred_ids_)
      if (std::find(predicted_.begin(), predicted_.end(), e) == predicted_.end()) predicted_.push_back(e);
  }
  ex_.predict(layer, predicted_);
}

}  // namespace moetier::models
