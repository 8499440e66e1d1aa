#include "runtime/models/hparams.hpp"

#include <cmath>
#include <limits>

#include "common/error.hpp"

namespace moetier::models {

const char* arch_name(Arch a) {
  switch (a) {
    case Arch::Llama: return "llama";
    case Arch::Qwen2Moe: return "qwen2moe";
    case Arch::Qwen3Moe: return "qwen3moe";
    case Arch::Deepseek2: return "deepseek2";
    case Arch::Olmoe: return "olmoe";
    case Arch::GptOss: return "gpt-oss";
    case Arch::Glm4Moe: return "glm4moe";
    case Arch::MinimaxM2: return "minimax-m2";
  }
  return "?";
}

Arch arch_from_name(const std::string& name, const std::string& file) {
  for (Arch a : {Arch::Llama, Arch::Qwen2Moe, Arch::Qwen3Moe, Arch::Deepseek2, Arch::Olmoe, Arch::GptOss,
                 Arch::Glm4Moe, Arch::MinimaxM2})
    if (name == arch_name(a)) return a;
  fail("{}: unsupported architecture {} (supported: llama, qwen2moe, qwen3moe, deepseek2, olmoe, gpt-oss, glm4moe, minimax-m2)", file,
       name);
}

ModelHparams load_hparams(const gguf::Metadata& md, const std::string& file) {
  ModelHparams hp;
  hp.arch_str = md.get_string("general.architecture").value_or("");
  if (hp.arch_str.empty()) fail("{}: missing metadata key general.architecture", file);
  hp.arch = arch_from_name(hp.arch_str, file);
  const std::string p = hp.arch_str + ".";
  auto get_i = [&](const char* k, int64_t def) { return md.get_int(p + k).value_or(def); };
  auto get_f = [&](const char* k, double def) {
    // Out-of-float-range doubles become +-inf (a plain cast would be undefined); NaN stays NaN. The
    // hparams_check table rejects what is not finite.
    const double d = md.get_float(p + k).value_or(def);
    if (std::isfinite(d) && std::fabs(d) > std::numeric_limits<float>::max())
      return d > 0 ? std::numeric_limits<float>::infinity() : -std::numeric_limits<float>::infinity();
    return static_cast<float>(d);
  };
  auto req_i = [&](const char* k) {
    auto v = md.get_int(p + k);
    if (!v) fail("{}: missing metadata key {}{}", file, p, k);
    if (*v <= 0) fail("{}: metadata key {}{} is {} (expected > 0)", file, p, k, *v);
    return *v;
  };

  hp.n_embd = req_i("embedding_length");
  hp.n_layer = req_i("block_count");
  hp.n_head = req_i("attention.head_count");
  hp.n_head_kv = get_i("attention.head_count_kv", hp.n_head);
  hp.n_ctx_train = get_i("context_length", 4096);
  hp.head_dim_k = get_i("attention.key_length", hp.n_embd / hp.n_head);
  hp.head_dim_v = get_i("attention.value_length", hp.n_embd / hp.n_head);
  hp.rms_eps = get_f("attention.layer_norm_rms_epsilon", 1e-5);
  hp.n_vocab = get_i("vocab_size", 0);
  if (hp.n_vocab == 0)
    if (const auto* toks = md.get_string_array("tokenizer.ggml.tokens")) hp.n_vocab = static_cast<int64_t>(toks->size());

  hp.rope_freq_base = get_f("rope.freq_base", 10000.0);
  hp.n_rot = get_i("rope.dimension_count", hp.head_dim_k);
  const std::string scaling = md.get_string(p + "rope.scaling.type").value_or("none");
  const float factor = get_f("rope.scaling.factor", 0.0);
  if (scaling == "linear" || scaling == "yarn") hp.rope_freq_scale = factor > 0 ? 1.0f / factor : 1.0f;
  if (scaling == "yarn") {
    hp.rope_yarn = true;
    hp.yarn_factor = factor > 0 ? factor : 1.0f;
    hp.yarn_orig_ctx = get_i("rope.scaling.original_context_length", hp.n_ctx_train);
    hp.yarn_log_mul = get_f("rope.scaling.yarn_log_multiplier", 0.0);
    hp.yarn_beta_fast = get_f("rope.scaling.yarn_beta_fast", 32.0);
    hp.yarn_beta_slow = get_f("rope.scaling.yarn_beta_slow", 1.0);
  } else if (scaling != "none" && scaling != "linear") {
    fail("{}: unsupported {}rope.scaling.type \"{}\" (expected none, linear or yarn)", file, p, scaling);
  }

  hp.n_ff = get_i("feed_forward_length", 0);
  hp.n_expert = get_i("expert_count", 0);
  hp.n_expert_used = get_i("expert_used_count", 0);
  hp.n_ff_exp = get_i("expert_feed_forward_length", hp.n_ff);
  hp.n_expert_shared = get_i("expert_shared_count", 0);
  hp.n_ff_shexp = get_i("expert_shared_feed_forward_length", hp.n_ff_exp);
  hp.n_layer_dense_lead = get_i("leading_dense_block_count", 0);
  hp.expert_weights_scale = get_f("expert_weights_scale", 1.0);
  hp.n_expert_groups = get_i("expert_group_count", 1);
  hp.n_group_used = get_i("expert_group_used_count", hp.n_expert_groups);
  if (hp.n_expert_groups <= 1) hp.n_expert_groups = hp.n_group_used = 1;  // 0 / 1 group: no grouped routing

  switch (hp.arch) {
    case Arch::Llama:  // Mixtral: softmax over experts, top-k renormalised
      hp.rope_type = RopeType::Norm;
      hp.norm_topk_prob = true;
      break;
    case Arch::Qwen2Moe:  // norm_topk_prob false in Qwen1.5/2-MoE configs; shared expert with sigmoid gate
      hp.rope_type = RopeType::Neox;
      hp.norm_topk_prob = md.get_bool(p + "expert_weights_norm").value_or(false);
      if (hp.n_ff_shexp == hp.n_ff_exp) hp.n_ff_shexp = get_i("expert_shared_feed_forward_length", hp.n_ff);
      break;
    case Arch::Qwen3Moe:  // config norm_topk_prob = true; not stored in GGUF
      hp.rope_type = RopeType::Neox;
      hp.norm_topk_prob = md.get_bool(p + "expert_weights_norm").value_or(true);
      break;
    case Arch::Olmoe:  // OLMoE-1B-7B: norm_topk_prob false
      hp.rope_type = RopeType::Neox;
      hp.norm_topk_prob = md.get_bool(p + "expert_weights_norm").value_or(false);
      break;
    case Arch::GptOss:  // softmax over the chosen top-k logits
      hp.rope_type = RopeType::Neox;
      hp.gating = Gating::SoftmaxWeight;
      hp.norm_topk_prob = false;
      hp.sliding_window = get_i("attention.sliding_window", 128);
      break;
    case Arch::Glm4Moe: {
      // GLM-4.5 / 4.5-Air / 4.6 (llama.cpp LLM_ARCH_GLM4_MOE): NEOX RoPE on the first
      // rope.dimension_count dims of each head (partial_rotary_factor 0.5), sigmoid routing (gating
      // func 0 or absent means sigmoid), routed_scaling_factor as expert_weights_scale, shared experts
      // expert_shared_count x expert width wide, and nextn_predict_layers trailing NextN (MTP) blocks that
      // block_count includes but the forward pass does not run.
      hp.rope_type = RopeType::Neox;
      const int64_t g = get_i("expert_gating_func", 2);
      if (g < 0 || g > 2) fail("{}: {}expert_gating_func {} (expected 1 softmax or 2 sigmoid)", file, p, g);
      hp.gating = g == 1 ? Gating::Softmax : Gating::Sigmoid;
      hp.norm_topk_prob = md.get_bool(p + "expert_weights_norm").value_or(false);
      if (!md.contains(p + "expert_shared_feed_forward_length")) {
        int64_t w = 0;
        hp.n_ff_shexp = __builtin_mul_overflow(hp.n_ff_exp, hp.n_expert_shared, &w) ? INT64_MAX : w;
      }
      // hparams_check's nextn_predict_layers rule rejects a count outside 0..block_count - 1.
      hp.n_layer_nextn = get_i("nextn_predict_layers", 0);
      if (hp.n_layer_nextn >= 0 && hp.n_layer_nextn < hp.n_layer) hp.n_layer -= hp.n_layer_nextn;
      break;
    }
    case Arch::MinimaxM2: {
      // MiniMax-M2 (llama.cpp LLM_ARCH_MINIMAX_M2): NEOX RoPE on rope.dimension_count (rotary_dim 64 of
      // head_dim 128) dims, sigmoid routing with exp_probs_b, top-k weights always renormalised and not
      // scaled (its graph passes norm_w = true, scale_w = false), no shared expert, no dense layer.
      hp.rope_type = RopeType::Neox;
      const int64_t g = get_i("expert_gating_func", 2);
      if (g < 0 || g > 2) fail("{}: {}expert_gating_func {} (expected 1 softmax or 2 sigmoid)", file, p, g);
      hp.gating = g == 1 ? Gating::Softmax : Gating::Sigmoid;
      hp.norm_topk_prob = true;
      hp.expert_weights_scale = 1.0f;
      break;
    }
    case Arch::Deepseek2: {
      hp.rope_type = RopeType::Norm;
      const int64_t g = get_i("expert_gating_func", 1);  // 1 softmax (V2), 2 sigmoid (V3)
      if (g != 1 && g != 2) fail("{}: {}expert_gating_func {} (expected 1 softmax or 2 sigmoid)", file, p, g);
      hp.gating = g == 2 ? Gating::Sigmoid : Gating::Softmax;
      hp.norm_topk_prob = md.get_bool(p + "expert_weights_norm").value_or(false);
      hp.q_lora_rank = get_i("attention.q_lora_rank", 0);
      hp.kv_lora_rank = req_i("attention.kv_lora_rank");
      hp.qk_rope_dim = hp.n_rot;
      // key_length_mla / value_length_mla are the per-head widths of the decompressed form; older files
      // store them directly in key_length / value_length.
      const int64_t k_mla = get_i("attention.key_length_mla", hp.head_dim_k);
      hp.v_head_dim_mla = get_i("attention.value_length_mla", hp.head_dim_v);
      // hparams_check's rope_dims requires >= 1 (saturated, not wrapped, for hostile values).
      if (__builtin_sub_overflow(k_mla, hp.qk_rope_dim, &hp.qk_nope_dim)) hp.qk_nope_dim = INT64_MIN;
      hp.head_dim_k = k_mla;
      hp.head_dim_v = hp.v_head_dim_mla;
      // llama.cpp: the shared experts of a deepseek2 layer are one FFN expert_shared_count x expert width wide.
      if (!md.contains(p + "expert_shared_feed_forward_length")) {
        int64_t w = 0;
        hp.n_ff_shexp = __builtin_mul_overflow(hp.n_ff_exp, hp.n_expert_shared, &w) ? INT64_MAX : w;
      }
      break;
    }
  }
  // Constraints between the values and against the tensors: runtime/models/hparams_check.cpp.
  return hp;
}

uint64_t kv_cache_bytes_per_token(const ModelHparams& hp, uint32_t bytes_per_elem) {
  if (hp.arch == Arch::Deepseek2)
    return static_cast<uint64_t>(hp.n_layer) * (hp.kv_lora_rank + hp.qk_rope_dim) * bytes_per_elem;
  return static_cast<uint64_t>(hp.n_layer) * hp.n_head_kv * (hp.head_dim_k + hp.head_dim_v) * bytes_per_elem;
}

}  // namespace moetier::models
