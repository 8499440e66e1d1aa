// Presets of `moetier synth`: the hyper-parameters of real MoE models (from each model's Hugging Face
// config.json, cited beside each entry in synth_presets.cpp) and of tiny models of the same
// architectures for tests and the demo. A preset fixes everything but the weight type, the seed and the
// tokenizer.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moetier::synth {

/// Hyper-parameters of one preset, named as the GGUF keys they become (`<arch>.<key>`).
struct Preset {
  std::string name;
  std::string arch;            // general.architecture: llama, qwen2moe, qwen3moe, deepseek2, olmoe, gpt-oss, glm4moe, minimax-m2
  std::string source;          // where the numbers come from (config.json URL, or "tiny")
  bool tiny = false;           // small test model (generated in tests)
  int64_t n_vocab = 0;         // vocabulary size of the real model (self-made vocab is padded to it)
  int64_t n_ctx = 0;           // context_length
  int64_t n_embd = 0;
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;        // per-head width (q/k/v) for non-MLA attention
  int64_t n_ff = 0;            // feed_forward_length: dense FFN width (Mixtral, OLMoE: the expert width)
  int64_t n_ff_exp = 0;        // expert_feed_forward_length (0: not written)
  int64_t n_ff_shexp = 0;      // expert_shared_feed_forward_length (qwen2moe; 0: not written)
  int64_t n_expert = 0;
  int64_t n_expert_used = 0;
  int64_t n_expert_shared = 0;
  int64_t n_layer_dense_lead = 0;
  float rms_eps = 1e-5f;
  float rope_freq_base = 10000.0f;
  // YaRN (0 factor: no rope scaling keys)
  float yarn_factor = 0.0f;
  int64_t yarn_orig_ctx = 0;
  float yarn_log_mul = 0.0f;   // rope.scaling.yarn_log_multiplier (deepseek2: 0.1 * mscale_all_dim; 0: not written)
  // DeepSeek-V2/V3 MLA and routing
  int64_t q_lora_rank = 0;     // 0: attn_q directly (V2-Lite)
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_dim = 0;
  int64_t qk_rope_dim = 0;
  int64_t v_head_dim = 0;
  int gating_func = 0;         // expert_gating_func: 1 softmax, 2 sigmoid (0: not written)
  bool expert_weights_norm = false;
  float expert_weights_scale = 0.0f;  // 0: not written
  int64_t n_expert_groups = 0;        // 0: not written
  int64_t n_group_used = 0;
  bool exp_probs_b = false;    // per-layer router score bias (DeepSeek-V3 noaux_tc)
  // other
  int64_t sliding_window = 0;  // gpt-oss
  bool qkv_bias = false;       // qwen2moe
  bool tied_output = false;    // no output.weight
  // glm4moe
  int64_t n_rot = 0;           // rope.dimension_count when < head_dim (partial rotary; 0: head_dim)
  bool qk_norm = false;        // per-head attn_q_norm / attn_k_norm (GLM-4.5 use_qk_norm)
  int64_t n_nextn = 0;         // trailing NextN (MTP) layers, included in block_count (nextn_predict_layers)
  int64_t bos_id = -1, eos_id = -1;  // ids of the real tokenizer (informational; self-made vocab sets its own)
};

/// Every preset, full-size first, then the tiny ones.
const std::vector<Preset>& all_presets();

/// The preset named `name` (aliases: "deepseek-r1" = "deepseek-v3"); throws Error listing the names if
/// unknown.
const Preset& find_preset(std::string_view name);

}  // namespace moetier::synth
