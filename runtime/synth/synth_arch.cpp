#include "runtime/synth/synth_arch.hpp"

#include <cmath>
#include <memory>

#include "common/error.hpp"
#include "runtime/models/tensor_roles.hpp"

namespace moetier::synth::detail {
namespace {

/// llama-quantize's replacement when a row does not divide into the type's blocks (llama-quant.cpp).
GgmlType fallback_type(GgmlType t, int64_t n_in) {
  if (n_in % ggml_type_info(t).block_size == 0) return t;
  switch (t) {
    case GgmlType::Q4_K: t = GgmlType::Q5_0; break;
    case GgmlType::Q5_K: t = GgmlType::Q5_1; break;
    case GgmlType::Q6_K: t = GgmlType::Q8_0; break;
    case GgmlType::IQ1_S: case GgmlType::IQ1_M: case GgmlType::IQ2_XXS: case GgmlType::IQ2_XS: case GgmlType::IQ2_S:
    case GgmlType::IQ3_XXS: case GgmlType::IQ3_S: case GgmlType::IQ4_XS: t = GgmlType::IQ4_NL; break;
    default: break;
  }
  return n_in % ggml_type_info(t).block_size == 0 ? t : GgmlType::F16;
}

/// Types synth writes for routed experts only (other matrices Q8_0): MXFP4 and the 1-3-bit IQ types.
bool expert_only_type(GgmlType t) {
  switch (t) {
    case GgmlType::MXFP4: case GgmlType::IQ1_S: case GgmlType::IQ1_M: case GgmlType::IQ2_XXS: case GgmlType::IQ2_XS:
    case GgmlType::IQ2_S: case GgmlType::IQ3_XXS: case GgmlType::IQ3_S:
      return true;
    default:
      return false;
  }
}

std::string blk(int64_t il, const char* what) { return "blk." + std::to_string(il) + "." + what; }

}  // namespace

void ModelBuilder::value(const std::string& key, gguf::Value v) { m_.metadata.emplace_back(key, std::move(v)); }
void ModelBuilder::u32(const std::string& key, int64_t v) {
  value(key, gguf::Value{gguf::ValueType::UINT32, static_cast<uint64_t>(v)});
}
void ModelBuilder::f32(const std::string& key, double v) {
  value(key, gguf::Value{gguf::ValueType::FLOAT32, static_cast<double>(static_cast<float>(v))});
}
void ModelBuilder::boolean(const std::string& key, bool v) { value(key, gguf::Value{gguf::ValueType::BOOL, v}); }
void ModelBuilder::str(const std::string& key, std::string v) {
  value(key, gguf::Value{gguf::ValueType::STRING, std::move(v)});
}

void ModelBuilder::weight(const std::string& name, std::vector<int64_t> shape, bool norm) {
  SynthTensor t;
  t.name = name;
  t.shape = std::move(shape);
  const int64_t n_in = t.shape.back();
  if (norm || t.shape.size() < 2) {
    t.type = GgmlType::F32;
  } else {
    const auto role = models::classify_tensor(name).role;
    GgmlType want = m_.type;
    if (expert_only_type(want) && role != models::TensorRole::RoutedExpert) want = GgmlType::Q8_0;
    t.type = role == models::TensorRole::Router ? GgmlType::F32 : fallback_type(want, n_in);
  }
  t.kind = norm ? ValueKind::Norm : ValueKind::Weight;
  t.scale = 1.0f / std::sqrt(static_cast<float>(n_in));
  m_.tensors.push_back(std::move(t));
}

void ModelBuilder::f32_tensor(const std::string& name, std::vector<int64_t> shape, float scale) {
  SynthTensor t;
  t.name = name;
  t.shape = std::move(shape);
  t.type = GgmlType::F32;
  t.kind = ValueKind::Weight;
  t.scale = scale;
  m_.tensors.push_back(std::move(t));
}

namespace {

/// Keys every architecture writes (convert_hf_to_gguf.py TextModel.set_gguf_parameters).
void common_keys(ModelBuilder& b, int64_t n_head_kv_written) {
  const Preset& p = b.p();
  b.arch_u32("context_length", p.n_ctx);
  b.arch_u32("embedding_length", p.n_embd);
  b.arch_u32("block_count", p.n_layer + p.n_nextn);  // glm4moe: NextN layers included
  b.arch_u32("feed_forward_length", p.n_ff);
  b.arch_u32("attention.head_count", p.n_head);
  b.arch_u32("attention.head_count_kv", n_head_kv_written);
  b.arch_f32("rope.freq_base", p.rope_freq_base);
  b.arch_f32("attention.layer_norm_rms_epsilon", p.rms_eps);
  b.arch_u32("expert_count", p.n_expert);
  b.arch_u32("expert_used_count", p.n_expert_used);
}

void yarn_keys(ModelBuilder& b) {
  const Preset& p = b.p();
  if (p.yarn_factor <= 0) return;
  b.arch_str("rope.scaling.type", "yarn");
  b.arch_f32("rope.scaling.factor", p.yarn_factor);
  b.arch_u32("rope.scaling.original_context_length", p.yarn_orig_ctx);
  if (p.yarn_log_mul > 0) b.arch_f32("rope.scaling.yarn_log_multiplier", p.yarn_log_mul);
}

void global_tensors(ModelBuilder& b, int64_t n_vocab) {
  const Preset& p = b.p();
  b.weight("token_embd.weight", {n_vocab, p.n_embd});
  b.weight("output_norm.weight", {p.n_embd}, true);
  if (!p.tied_output) b.weight("output.weight", {n_vocab, p.n_embd});
}

/// Stacked routed experts [n_expert, n_ff, n_embd] (gate, up) and [n_expert, n_embd, n_ff] (down).
void routed_experts(ModelBuilder& b, int64_t il, int64_t n_ff) {
  const Preset& p = b.p();
  b.weight(blk(il, "ffn_gate_inp.weight"), {p.n_expert, p.n_embd});
  b.weight(blk(il, "ffn_gate_exps.weight"), {p.n_expert, n_ff, p.n_embd});
  b.weight(blk(il, "ffn_up_exps.weight"), {p.n_expert, n_ff, p.n_embd});
  b.weight(blk(il, "ffn_down_exps.weight"), {p.n_expert, p.n_embd, n_ff});
}

/// Plain multi-head attention q/k/v/o with per-head width head_dim.
void mha(ModelBuilder& b, int64_t il, bool bias) {
  const Preset& p = b.p();
  const int64_t q = p.n_head * p.head_dim, kv = p.n_head_kv * p.head_dim;
  b.weight(blk(il, "attn_q.weight"), {q, p.n_embd});
  b.weight(blk(il, "attn_k.weight"), {kv, p.n_embd});
  b.weight(blk(il, "attn_v.weight"), {kv, p.n_embd});
  b.weight(blk(il, "attn_output.weight"), {p.n_embd, q});
  if (bias) {
    b.f32_tensor(blk(il, "attn_q.bias"), {q}, 0.02f);
    b.f32_tensor(blk(il, "attn_k.bias"), {kv}, 0.02f);
    b.f32_tensor(blk(il, "attn_v.bias"), {kv}, 0.02f);
  }
}

// Mixtral (llama): llama.cpp LLM_ARCH_LLAMA with n_expert > 0.
void build_llama(ModelBuilder& b, int64_t n_vocab) {
  const Preset& p = b.p();
  common_keys(b, p.n_head_kv);
  b.arch_u32("rope.dimension_count", p.head_dim);
  b.arch_u32("vocab_size", n_vocab);
  global_tensors(b, n_vocab);
  for (int64_t il = 0; il < p.n_layer; ++il) {
    b.weight(blk(il, "attn_norm.weight"), {p.n_embd}, true);
    mha(b, il, false);
    b.weight(blk(il, "ffn_norm.weight"), {p.n_embd}, true);
    routed_experts(b, il, p.n_ff);
  }
}

// Qwen3-MoE: q/k RMSNorm per head (width head_dim); key/value_length written; no shared expert.
void build_qwen3moe(ModelBuilder& b, int64_t n_vocab) {
  const Preset& p = b.p();
  common_keys(b, p.n_head_kv);
  b.arch_u32("attention.key_length", p.head_dim);
  b.arch_u32("attention.value_length", p.head_dim);
  b.arch_u32("expert_feed_forward_length", p.n_ff_exp);
  b.arch_u32("vocab_size", n_vocab);
  global_tensors(b, n_vocab);
  for (int64_t il = 0; il < p.n_layer; ++il) {
    b.weight(blk(il, "attn_norm.weight"), {p.n_embd}, true);
    mha(b, il, false);
    b.weight(blk(il, "attn_q_norm.weight"), {p.head_dim}, true);
    b.weight(blk(il, "attn_k_norm.weight"), {p.head_dim}, true);
    b.weight(blk(il, "ffn_norm.weight"), {p.n_embd}, true);
    routed_experts(b, il, p.n_ff_exp);
  }
}

// Qwen1.5/2-MoE: q/k/v biases, one shared expert with a sigmoid gate ffn_gate_inp_shexp [n_embd].
void build_qwen2moe(ModelBuilder& b, int64_t n_vocab) {
  const Preset& p = b.p();
  common_keys(b, p.n_head_kv);
  b.arch_u32("expert_feed_forward_length", p.n_ff_exp);
  b.arch_u32("expert_shared_feed_forward_length", p.n_ff_shexp);
  b.arch_u32("vocab_size", n_vocab);
  global_tensors(b, n_vocab);
  for (int64_t il = 0; il < p.n_layer; ++il) {
    b.weight(blk(il, "attn_norm.weight"), {p.n_embd}, true);
    mha(b, il, p.qkv_bias);
    b.weight(blk(il, "ffn_norm.weight"), {p.n_embd}, true);
    routed_experts(b, il, p.n_ff_exp);
    b.f32_tensor(blk(il, "ffn_gate_inp_shexp.weight"), {p.n_embd}, 1.0f / std::sqrt(static_cast<float>(p.n_embd)));
    b.weight(blk(il, "ffn_gate_shexp.weight"), {p.n_ff_shexp, p.n_embd});
    b.weight(blk(il, "ffn_up_shexp.weight"), {p.n_ff_shexp, p.n_embd});
    b.weight(blk(il, "ffn_down_shexp.weight"), {p.n_embd, p.n_ff_shexp});
  }
}

// OLMoE: q/k RMSNorm over the whole projection (width n_embd, n_head_kv == n_head); experts n_ff wide.
void build_olmoe(ModelBuilder& b, int64_t n_vocab) {
  const Preset& p = b.p();
  if (p.n_head_kv != p.n_head) fail("synth: olmoe preset {} needs head_count_kv == head_count", p.name);
  common_keys(b, p.n_head_kv);
  b.arch_u32("vocab_size", n_vocab);
  global_tensors(b, n_vocab);
  for (int64_t il = 0; il < p.n_layer; ++il) {
    b.weight(blk(il, "attn_norm.weight"), {p.n_embd}, true);
    mha(b, il, false);
    b.weight(blk(il, "attn_q_norm.weight"), {p.n_embd}, true);
    b.weight(blk(il, "attn_k_norm.weight"), {p.n_embd}, true);
    b.weight(blk(il, "ffn_norm.weight"), {p.n_embd}, true);
    routed_experts(b, il, p.n_ff);
  }
}

// DeepSeek-V2/V3 (deepseek2): MLA stored in llama.cpp's split form (attn_k_b / attn_v_b, absorbed MQA
// view: head_count_kv 1, key_length = kv_lora_rank + rope, value_length = kv_lora_rank), leading dense
// layers, shared experts n_ff_exp * n_expert_shared wide, optional score bias exp_probs_b.
void build_deepseek2(ModelBuilder& b, int64_t n_vocab) {
  const Preset& p = b.p();
  const int64_t qk_head = p.qk_nope_dim + p.qk_rope_dim;
  b.arch_u32("context_length", p.n_ctx);
  b.arch_u32("embedding_length", p.n_embd);
  b.arch_u32("block_count", p.n_layer);
  b.arch_u32("attention.head_count", p.n_head);
  b.arch_u32("attention.head_count_kv", 1);
  b.arch_f32("attention.layer_norm_rms_epsilon", p.rms_eps);
  b.arch_f32("rope.freq_base", p.rope_freq_base);
  b.arch_u32("vocab_size", n_vocab);
  b.arch_u32("feed_forward_length", p.n_ff);
  b.arch_u32("leading_dense_block_count", p.n_layer_dense_lead);
  if (p.q_lora_rank > 0) b.arch_u32("attention.q_lora_rank", p.q_lora_rank);
  b.arch_u32("attention.kv_lora_rank", p.kv_lora_rank);
  b.arch_u32("attention.key_length", p.kv_lora_rank + p.qk_rope_dim);
  b.arch_u32("attention.value_length", p.kv_lora_rank);
  b.arch_u32("attention.key_length_mla", qk_head);
  b.arch_u32("attention.value_length_mla", p.v_head_dim);
  b.arch_u32("expert_feed_forward_length", p.n_ff_exp);
  b.arch_u32("expert_count", p.n_expert);
  b.arch_u32("expert_used_count", p.n_expert_used);
  b.arch_u32("expert_shared_count", p.n_expert_shared);
  b.arch_f32("expert_weights_scale", p.expert_weights_scale);
  b.arch_bool("expert_weights_norm", p.expert_weights_norm);
  b.arch_u32("expert_gating_func", p.gating_func);
  if (p.n_expert_groups > 0) {
    b.arch_u32("expert_group_count", p.n_expert_groups);
    b.arch_u32("expert_group_used_count", p.n_group_used);
  }
  b.arch_u32("rope.dimension_count", p.qk_rope_dim);
  yarn_keys(b);

  global_tensors(b, n_vocab);
  for (int64_t il = 0; il < p.n_layer; ++il) {
    b.weight(blk(il, "attn_norm.weight"), {p.n_embd}, true);
    if (p.q_lora_rank > 0) {
      b.weight(blk(il, "attn_q_a.weight"), {p.q_lora_rank, p.n_embd});
      b.weight(blk(il, "attn_q_a_norm.weight"), {p.q_lora_rank}, true);
      b.weight(blk(il, "attn_q_b.weight"), {p.n_head * qk_head, p.q_lora_rank});
    } else {
      b.weight(blk(il, "attn_q.weight"), {p.n_head * qk_head, p.n_embd});
    }
    b.weight(blk(il, "attn_kv_a_mqa.weight"), {p.kv_lora_rank + p.qk_rope_dim, p.n_embd});
    b.weight(blk(il, "attn_kv_a_norm.weight"), {p.kv_lora_rank}, true);
    b.weight(blk(il, "attn_k_b.weight"), {p.n_head, p.kv_lora_rank, p.qk_nope_dim});
    b.weight(blk(il, "attn_v_b.weight"), {p.n_head, p.v_head_dim, p.kv_lora_rank});
    b.weight(blk(il, "attn_output.weight"), {p.n_embd, p.n_head * p.v_head_dim});
    b.weight(blk(il, "ffn_norm.weight"), {p.n_embd}, true);
    if (il < p.n_layer_dense_lead) {
      b.weight(blk(il, "ffn_gate.weight"), {p.n_ff, p.n_embd});
      b.weight(blk(il, "ffn_up.weight"), {p.n_ff, p.n_embd});
      b.weight(blk(il, "ffn_down.weight"), {p.n_embd, p.n_ff});
      continue;
    }
    b.weight(blk(il, "ffn_gate_inp.weight"), {p.n_expert, p.n_embd});
    if (p.exp_probs_b) b.f32_tensor(blk(il, "exp_probs_b.bias"), {p.n_expert}, 0.05f);
    b.weight(blk(il, "ffn_gate_exps.weight"), {p.n_expert, p.n_ff_exp, p.n_embd});
    b.weight(blk(il, "ffn_up_exps.weight"), {p.n_expert, p.n_ff_exp, p.n_embd});
    b.weight(blk(il, "ffn_down_exps.weight"), {p.n_expert, p.n_embd, p.n_ff_exp});
    const int64_t n_sh = p.n_ff_exp * p.n_expert_shared;
    b.weight(blk(il, "ffn_gate_shexp.weight"), {n_sh, p.n_embd});
    b.weight(blk(il, "ffn_up_shexp.weight"), {n_sh, p.n_embd});
    b.weight(blk(il, "ffn_down_shexp.weight"), {p.n_embd, n_sh});
  }
}

// gpt-oss (LLM_ARCH_OPENAI_MOE): post-attention norm as the FFN norm, q/k/v/o biases, attention sinks,
// router bias, stacked expert biases [n_expert, n_out]; sliding-window attention on alternate layers.
void build_gpt_oss(ModelBuilder& b, int64_t n_vocab) {
  const Preset& p = b.p();
  common_keys(b, p.n_head_kv);
  b.arch_u32("attention.key_length", p.head_dim);
  b.arch_u32("attention.value_length", p.head_dim);
  b.arch_u32("attention.sliding_window", p.sliding_window);
  b.arch_u32("expert_feed_forward_length", p.n_ff_exp);
  yarn_keys(b);
  b.arch_u32("vocab_size", n_vocab);
  global_tensors(b, n_vocab);
  const int64_t F = p.n_ff_exp;
  for (int64_t il = 0; il < p.n_layer; ++il) {
    b.weight(blk(il, "attn_norm.weight"), {p.n_embd}, true);
    b.weight(blk(il, "post_attention_norm.weight"), {p.n_embd}, true);
    mha(b, il, true);
    b.f32_tensor(blk(il, "attn_output.bias"), {p.n_embd}, 0.02f);
    b.f32_tensor(blk(il, "attn_sinks.weight"), {p.n_head}, 1.0f);
    routed_experts(b, il, F);
    b.f32_tensor(blk(il, "ffn_gate_inp.bias"), {p.n_expert}, 0.02f);
    b.f32_tensor(blk(il, "ffn_gate_exps.bias"), {p.n_expert, F}, 0.02f);
    b.f32_tensor(blk(il, "ffn_up_exps.bias"), {p.n_expert, F}, 0.02f);
    b.f32_tensor(blk(il, "ffn_down_exps.bias"), {p.n_expert, p.n_embd}, 0.02f);
  }
}

// GLM-4.5 (glm4moe, convert_hf_to_gguf.py Glm4MoeModel): partial rotary (rope.dimension_count =
// head_dim x partial_rotary_factor), Q/K/V biases, optional per-head Q/K norm, post_attention_norm as the
// FFN norm, leading dense layers, sigmoid routing with exp_probs_b, a shared expert n_ff_exp x
// n_expert_shared wide; block_count counts the trailing NextN layers, which hold a whole block plus the
// nextn.* tensors (eh_proj, enorm, hnorm, shared_head_norm).
void build_glm4moe(ModelBuilder& b, int64_t n_vocab) {
  const Preset& p = b.p();
  const int64_t n_blocks = p.n_layer + p.n_nextn;
  common_keys(b, p.n_head_kv);
  b.arch_u32("attention.key_length", p.head_dim);
  b.arch_u32("attention.value_length", p.head_dim);
  b.arch_u32("rope.dimension_count", p.n_rot > 0 ? p.n_rot : p.head_dim);
  b.arch_u32("expert_feed_forward_length", p.n_ff_exp);
  b.arch_u32("expert_shared_count", p.n_expert_shared);
  b.arch_u32("leading_dense_block_count", p.n_layer_dense_lead);
  b.arch_u32("expert_gating_func", p.gating_func);
  b.arch_f32("expert_weights_scale", p.expert_weights_scale);
  b.arch_bool("expert_weights_norm", p.expert_weights_norm);
  if (p.n_nextn > 0) b.arch_u32("nextn_predict_layers", p.n_nextn);
  b.arch_u32("vocab_size", n_vocab);
  global_tensors(b, n_vocab);
  const int64_t n_sh = p.n_ff_exp * p.n_expert_shared;
  for (int64_t il = 0; il < n_blocks; ++il) {
    b.weight(blk(il, "attn_norm.weight"), {p.n_embd}, true);
    mha(b, il, p.qkv_bias);
    if (p.qk_norm) {
      b.weight(blk(il, "attn_q_norm.weight"), {p.head_dim}, true);
      b.weight(blk(il, "attn_k_norm.weight"), {p.head_dim}, true);
    }
    b.weight(blk(il, "post_attention_norm.weight"), {p.n_embd}, true);
    if (il < p.n_layer_dense_lead) {
      b.weight(blk(il, "ffn_gate.weight"), {p.n_ff, p.n_embd});
      b.weight(blk(il, "ffn_up.weight"), {p.n_ff, p.n_embd});
      b.weight(blk(il, "ffn_down.weight"), {p.n_embd, p.n_ff});
    } else {
      routed_experts(b, il, p.n_ff_exp);
      if (p.exp_probs_b) b.f32_tensor(blk(il, "exp_probs_b.bias"), {p.n_expert}, 0.05f);
      b.weight(blk(il, "ffn_gate_shexp.weight"), {n_sh, p.n_embd});
      b.weight(blk(il, "ffn_up_shexp.weight"), {n_sh, p.n_embd});
      b.weight(blk(il, "ffn_down_shexp.weight"), {p.n_embd, n_sh});
    }
    if (il < p.n_layer) continue;
    b.weight(blk(il, "nextn.eh_proj.weight"), {p.n_embd, 2 * p.n_embd});
    b.weight(blk(il, "nextn.enorm.weight"), {p.n_embd}, true);
    b.weight(blk(il, "nextn.hnorm.weight"), {p.n_embd}, true);
    b.weight(blk(il, "nextn.shared_head_norm.weight"), {p.n_embd}, true);
  }
}

// MiniMax-M2 (convert_hf_to_gguf.py MiniMaxM2Model): Q/K RMSNorm over the whole projection (widths
// n_head x head_dim and n_head_kv x head_dim), rope.dimension_count = rotary_dim, sigmoid routing with
// exp_probs_b, experts expert_feed_forward_length wide, no shared expert, no dense layer.
void build_minimax_m2(ModelBuilder& b, int64_t n_vocab) {
  const Preset& p = b.p();
  common_keys(b, p.n_head_kv);
  b.arch_u32("attention.key_length", p.head_dim);
  b.arch_u32("attention.value_length", p.head_dim);
  b.arch_u32("rope.dimension_count", p.n_rot > 0 ? p.n_rot : p.head_dim);
  b.arch_u32("expert_feed_forward_length", p.n_ff_exp);
  b.arch_u32("expert_gating_func", p.gating_func);
  b.arch_u32("vocab_size", n_vocab);
  global_tensors(b, n_vocab);
  for (int64_t il = 0; il < p.n_layer; ++il) {
    b.weight(blk(il, "attn_norm.weight"), {p.n_embd}, true);
    mha(b, il, false);
    b.weight(blk(il, "attn_q_norm.weight"), {p.n_head * p.head_dim}, true);
    b.weight(blk(il, "attn_k_norm.weight"), {p.n_head_kv * p.head_dim}, true);
    b.weight(blk(il, "ffn_norm.weight"), {p.n_embd}, true);
    routed_experts(b, il, p.n_ff_exp);
    b.f32_tensor(blk(il, "exp_probs_b.bias"), {p.n_expert}, 0.05f);
  }
}

}  // namespace

void build_architecture(ModelBuilder& b, int64_t n_vocab) {
  const std::string& a = b.p().arch;
  if (a == "llama") return build_llama(b, n_vocab);
  if (a == "qwen3moe") return build_qwen3moe(b, n_vocab);
  if (a == "qwen2moe") return build_qwen2moe(b, n_vocab);
  if (a == "olmoe") return build_olmoe(b, n_vocab);
  if (a == "deepseek2") return build_deepseek2(b, n_vocab);
  if (a == "gpt-oss") return build_gpt_oss(b, n_vocab);
  if (a == "glm4moe") return build_glm4moe(b, n_vocab);
  if (a == "minimax-m2") return build_minimax_m2(b, n_vocab);
  fail("synth: no tensor layout for architecture {}", a);
}

}  // namespace moetier::synth::detail
