// The MoE router (gate): from one token's router logits to its top-k expert ids and combination weights,
// for every gating variant of the architectures we run. Runs in f32 (never bf16: rounding router logits
// can flip near-tied choices). Source: llama.cpp build_moe_ffn (llama-graph.cpp); DeepSeek-V3 paper
// section 2.1.2 (sigmoid gating, score bias for selection only, grouped top-k).
#pragma once

#include <cstdint>
#include <span>


namespace moetier::sched {

/// How router logits become expert probabilities: softmax (Mixtral, Qwen, OLMoE), sigmoid (DeepSeek-V3),
/// or softmax over the chosen logits only (gpt-oss).
enum class Gating { Softmax, Sigmoid, SoftmaxWeight };

struct RouterConfig {
  Gating gating = Gating::Softmax;
  int64_t n_expert = 0;
  int64_t n_used = 0;            // top-k
  int64_t n_groups = 1;          // expert groups (DeepSeek-V3: 8)
  int64_t n_group_used = 1;      // groups kept (DeepSeek-V3: 4)
  bool norm_topk = false;        // renormalise chosen weights to sum 1
  float weights_scale = 1.0f;    // routed scaling factor (DeepSeek: 2.5)
  const float* score_bias = nullptr;  // exp_probs_b [n_expert]: added for selection only, or nullptr
};

/// Routes one token.
///   logits:  [n_expert] f32 router logits (read)
///   ids:     [n_used] expert ids (written), in order of decreasing selection score; ties: lower id first
///   weights: [n_used] f32 combination weights (written), in the same order
///   scratch: [3 * n_expert] f32
/// Softmax / Sigmoid: probs = softmax(logits) / sigmoid(logits); selection = probs + bias; with groups,
/// group score = sum of the group's two best selection scores, the n_group_used best groups are kept and
/// the others masked; top-k over the selection; weights = the UNBIASED probs of the chosen experts,
/// divided by their sum (clamped below at 6.1035e-5, as llama.cpp) if norm_topk, times weights_scale.
/// SoftmaxWeight (gpt-oss): top-k over the logits, weights = softmax of the chosen logits.
/// A NaN / inf among the n_expert logits (chosen or not) makes every weight NaN (ids stay valid), so
/// that non-finite router inputs always reach the token's output instead of vanishing in the selection.
void route_token(const RouterConfig& cfg, const float* logits, int32_t* ids, float* weights, float* scratch);

/// The unbiased gate probabilities llama.cpp names ffn_moe_probs: probs [n_expert] (written).
void router_probs(const RouterConfig& cfg, const float* logits, float* probs);

}  // namespace moetier::sched
