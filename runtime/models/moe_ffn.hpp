// Feed-forward blocks of MoE transformers, the model side: the router (logits -> top-k ids and weights),
// the shared expert's gate, and next-layer prediction. The experts themselves (where their bytes live,
// which backend computes them, the combination in slot order) are the MoE executor's
// (scheduler/moe_executor.hpp); this file never sees a kernel, a file, a cache or a device.
// Source: llama.cpp build_ffn / build_moe_ffn (llama-graph.cpp).
#pragma once

#include <cstdint>
#include <vector>

#include "scheduler/router.hpp"
#include "runtime/models/weights.hpp"
#include "scheduler/linear_exec.hpp"
#include "scheduler/moe_executor.hpp"
#include "scheduler/routing_layout.hpp"

namespace moetier::models {

using sched::FfnAct;
using sched::RouterConfig;
using sched::route_token;
using sched::router_probs;
using sched::LinearExec;

struct MoeWeights {
  Weight router;                       // ffn_gate_inp [n_expert, n_embd] (F32 in practice)
  const float* router_bias = nullptr;  // gpt-oss ffn_gate_inp.bias [n_expert]
  RouterConfig cfg;                    // gating, top-k, groups, score bias
  bool has_shared = false;
  FfnWeights shared;                   // *_shexp
  Weight shared_gate;                  // qwen2moe ffn_gate_inp_shexp [1, n_embd] (sigmoid gate) or invalid
};

/// Per-layer routing record (tests / --record-routing): ids [n_tokens, k], weights [n_tokens, k],
/// router logits [n_tokens, n_expert]. Row t is the token at index first_token + t of the forward
/// call's batch (Model::forward sets first_token; the last layer of a prefill routes only the last token).
struct RoutingRecord {
  int64_t first_token = 0;
  std::vector<int32_t> ids;
  std::vector<float> weights;
  std::vector<float> logits;
};

class FfnExec {
 public:
  /// `lin` computes the router and the shared gate; `executor` the experts. Both must outlive this.
  FfnExec(LinearExec& lin, sched::MoeExecutor& executor) : lin_(lin), ex_(executor) {}

  /// y [n_tokens, n_embd] (written) = dense FFN of layer `layer` on x [n_tokens, n_embd].
  void dense(int32_t layer, const FfnWeights& w, const float* x, int64_t n_tokens, float* y, FfnAct act);

  /// y [n_tokens, n_embd] (written) = MoE FFN of x [n_tokens, n_embd] for layer `layer`: router, routed
  /// experts through the executor, plus the (gated) shared expert. record (optional) receives the routing.
  void moe(const MoeWeights& w, int32_t layer, const float* x, int64_t n_tokens, int64_t n_embd, float* y,
           RoutingRecord* record, FfnAct act);

  /// Applies layer `layer`'s router `w` to x [n_tokens, n_embd] (an earlier layer's FFN input) and hands
  /// the union of the chosen experts to the executor as a prediction (KTransformers / Pre-gated MoE).
  void predict(const MoeWeights& w, int32_t layer, const float* x, int64_t n_tokens);

 private:
  LinearExec& lin_;
  sched::MoeExecutor& ex_;
  std::vector<float> logits_, scratch_, shared_out_, sg_, pred_logits_, pred_w_;
  std::vector<int32_t> pred_ids_, predicted_;
  sched::TokenRouting routing_;  // token-major, from the router
};

}  // namespace moetier::models
