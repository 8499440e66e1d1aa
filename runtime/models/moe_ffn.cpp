#include "runtime/models/moe_ffn.hpp"

#include <algorithm>
#include <cmath>

#include "common/error.hpp"

namespace moetier::models {

void FfnExec::dense(const FfnWeights& w, const float* x, int64_t n_tokens, float* y, FfnAct act) {
  cpu_ffn_.run(w, x, n_tokens, y, act, sched::FfnKind::Dense);
}

void FfnExec::moe(const MoeWeights& w, int32_t layer, ExpertProvider& experts, const float* x, int64_t n_tokens,
                  int64_t n_embd, float* y, RoutingRecord* record, FfnAct act) {
  const RouterConfig& cfg = w.cfg;
  const int64_t n_exp = cfg.n_expert, k = cfg.n_used;
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

  // Expert-major: gather each expert's tokens, one FFN per expert, scatter its rows back to their slots.
  batches_.build(routing_);
  slots_.resize(static_cast<size_t>(n_tokens * k * n_embd));
  cpu_ffn_.new_input();  // a new layer's input
  experts.begin(layer, batches_.experts());
  FfnWeights fw;
  for (int32_t e; (e = experts.next(fw)) >= 0;) {
    const int64_t gi = batches_.index_of(e);
    if (gi < 0) fail("expert provider returned expert {} of layer {}, which no token was routed to", e, layer);
    const std::span<const int32_t> slots = batches_.slots(static_cast<size_t>(gi));
    const int64_t m = static_cast<int64_t>(slots.size());
    gathered_.resize(static_cast<size_t>(m * n_embd));
    for (int64_t r = 0; r < m; ++r)
      std::copy_n(x + batches_.token_of(slots[r]) * n_embd, n_embd, gathered_.data() + r * n_embd);
    out_rows_.resize(static_cast<size_t>(m * n_embd));
    // With one token every expert of the layer multiplies the same row: its quantisation is reused.
    cpu_ffn_.run(fw, gathered_.data(), m, out_rows_.data(), act, sched::FfnKind::Routed, n_tokens == 1);
    for (int64_t r = 0; r < m; ++r)
      std::copy_n(out_rows_.data() + r * n_embd, n_embd, slots_.data() + static_cast<int64_t>(slots[r]) * n_embd);
  }

  // Weighted sum in slot order: y = ((w0*e0 + w1*e1) + w2*e2) + ... (ggml_mul then successive ggml_add).
  for (int64_t t = 0; t < n_tokens; ++t) {
    float* yt = y + t * n_embd;
    for (int64_t s = 0; s < k; ++s) {
      const float wk = routing_.weights[t * k + s];
      const float* e = slots_.data() + (t * k + s) * n_embd;
      if (s == 0)
        for (int64_t i = 0; i < n_embd; ++i) yt[i] = e[i] * wk;
      else
        for (int64_t i = 0; i < n_embd; ++i) yt[i] += e[i] * wk;
    }
  }

  if (w.has_shared) {
    shared_out_.resize(static_cast<size_t>(n_tokens * n_embd));
    cpu_ffn_.run(w.shared, x, n_tokens, shared_out_.data(), act, sched::FfnKind::Dense);
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

}  // namespace moetier::models
