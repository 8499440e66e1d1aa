// Tensor roles: maps GGUF tensor names of the MoE architectures we target to what they are for
// (embeddings, attention, router, routed experts, shared experts, dense FFN, norms), for size
// breakdowns, placement and the expert store. Names follow llama.cpp's LLM_TENSOR_NAMES
// (e.g. blk.N.ffn_gate_exps.weight stacked experts, blk.N.ffn_gate.E.weight legacy Mixtral layout).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace moetier::models {

enum class TensorRole {
  Embedding,      // token_embd
  Output,         // output.weight (LM head)
  OutputNorm,     // output_norm
  Norm,           // per-layer norms (attn_norm, ffn_norm, q/k norms, kv_a_norm, ...)
  Attention,      // attention projections (q, k, v, o, MLA q_a/q_b/kv_a/k_b/v_b, sinks)
  Router,         // ffn_gate_inp (router / gate) and exp_probs_b (score bias)
  RoutedExpert,   // ffn_{gate,up,down}_exps (stacked) or ffn_{gate,up,down}.E (legacy per expert)
  SharedExpert,   // ffn_*_shexp and the shared-expert gate ffn_gate_inp_shexp
  DenseFfn,       // ffn_{gate,up,down} of dense layers
  Other,
};

const char* role_name(TensorRole r);

/// Which projection of an expert FFN a tensor is (for routed / shared / dense FFN tensors).
enum class FfnPart { None, Gate, Up, Down, GateUp };

struct TensorClass {
  TensorRole role = TensorRole::Other;
  int32_t layer = -1;         // blk index, -1 for global tensors
  int32_t expert = -1;        // legacy per-expert layout: the expert id; -1 otherwise
  FfnPart part = FfnPart::None;
  bool is_bias = false;       // *.bias tensors (gpt-oss expert biases, exp_probs_b)
};

/// Classifies a tensor name. Unknown names give TensorRole::Other (never throws).
TensorClass classify_tensor(std::string_view name);

}  // namespace moetier::models
