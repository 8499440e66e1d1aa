// Feed-forward blocks of MoE transformers: the dense SwiGLU FFN and the MoE FFN (router -> top-k experts
// -> weighted sum, plus shared experts). Tokens are grouped by expert (one GEMM per expert, the
// expert-major batch layout) and combined in the router's slot order, so results do not depend on where
// an expert lives or how work is split. Source: llama.cpp build_ffn / build_moe_ffn (llama-graph.cpp).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "runtime/models/expert_provider.hpp"
#include "scheduler/cpu_ffn.hpp"
#include "scheduler/linear_exec.hpp"
#include "runtime/models/router.hpp"
#include "runtime/models/routing_layout.hpp"
#include "runtime/models/weights.hpp"

namespace moetier::models {



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

using sched::FfnAct;
using sched::LinearExec;

class FfnExec {
 public:
  explicit FfnExec(LinearExec& lin) : lin_(lin), cpu_ffn_(lin) {}

  /// y [n_tokens, n_embd] (written) = dense FFN of x [n_tokens, n_embd].
  void dense(const FfnWeights& w, const float* x, int64_t n_tokens, float* y, FfnAct act = FfnAct::SwiGLU);

  /// y [n_tokens, n_embd] (written) = MoE FFN of x [n_tokens, n_embd] for layer `layer`.
  /// `experts` supplies the routed experts' weights; record (optional) receives the routing.
  void moe(const MoeWeights& w, int32_t layer, ExpertProvider& experts, const float* x, int64_t n_tokens,
           int64_t n_embd, float* y, RoutingRecord* record, FfnAct act = FfnAct::SwiGLU);

 private:
  LinearExec& lin_;
  sched::CpuFfn cpu_ffn_;
  std::vector<float> logits_, scratch_, slots_, gathered_, out_rows_, shared_out_, sg_;
  TokenRouting routing_;   // token-major, from the router
  ExpertBatches batches_;  // expert-major, for the expert FFNs
};

}  // namespace moetier::models
