// ModelHparams: the hyper-parameters of a MoE architecture read from GGUF metadata
// (`<arch>.<key>`), with each architecture's documented default where a file omits a key — never a
// silent zero or false. Defaults follow llama.cpp's llama-model.cpp load_hparams and the models'
// reference configurations (e.g. Qwen3-MoE files carry no norm_topk_prob key, yet top-k weights are
// normalised).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/gguf/gguf_value.hpp"
#include "scheduler/router.hpp"

namespace moetier::models {

/// Architectures moetier recognises (GGUF general.architecture strings).
enum class Arch { Llama, Qwen2Moe, Qwen3Moe, Deepseek2, Olmoe, GptOss, Glm4Moe, MinimaxM2 };

/// "llama", "qwen2moe", "qwen3moe", "deepseek2", "olmoe", "gpt-oss", "glm4moe", "minimax-m2".
const char* arch_name(Arch a);
/// Parses general.architecture; throws Error "FILE: unsupported architecture NAME (supported: ...)".
Arch arch_from_name(const std::string& name, const std::string& file);

/// Rotary embedding variants: NORM rotates adjacent pairs (x[2i], x[2i+1]); NEOX rotates halves
/// (x[i], x[i + n_rot/2]). Source: ggml_rope modes 0 and GGML_ROPE_TYPE_NEOX.
enum class RopeType { Norm, Neox };

/// Router gating: softmax over all experts before top-k; sigmoid per expert (DeepSeek-V3);
/// softmax over the chosen top-k logits only (gpt-oss). Source: llama.cpp llama_expert_gating_func_type.
using sched::Gating;

struct ModelHparams {
  Arch arch = Arch::Llama;
  std::string arch_str;
  int64_t n_vocab = 0;
  int64_t n_ctx_train = 0;
  int64_t n_embd = 0;
  int64_t n_layer = 0;        // transformer layers run by forward (block_count less the NextN layers)
  int64_t n_layer_nextn = 0;  // trailing NextN / MTP layers (glm4moe nextn_predict_layers): loaded-and-ignored
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim_k = 0;  // per-head key width (attention.key_length, default n_embd / n_head)
  int64_t head_dim_v = 0;  // per-head value width
  float rms_eps = 1e-5f;
  // RoPE
  RopeType rope_type = RopeType::Norm;
  int64_t n_rot = 0;  // rope.dimension_count (default head_dim_k)
  float rope_freq_base = 10000.0f;
  float rope_freq_scale = 1.0f;  // 1 / rope.scaling.factor for linear / yarn
  bool rope_yarn = false;
  float yarn_factor = 1.0f;
  int64_t yarn_orig_ctx = 0;
  float yarn_log_mul = 0.0f;  // rope.scaling.yarn_log_multiplier (DeepSeek: mscale_all_dim * 0.1)
  float yarn_ext_factor = 1.0f, yarn_attn_factor = 1.0f, yarn_beta_fast = 32.0f, yarn_beta_slow = 1.0f;
  // FFN / MoE
  int64_t n_ff = 0;             // dense FFN width (feed_forward_length)
  int64_t n_ff_exp = 0;         // routed expert width (expert_feed_forward_length, default n_ff)
  int64_t n_ff_shexp = 0;       // shared expert width
  int64_t n_expert = 0;
  int64_t n_expert_used = 0;
  int64_t n_expert_shared = 0;
  int64_t n_layer_dense_lead = 0;  // leading dense layers (DeepSeek)
  Gating gating = Gating::Softmax;
  bool norm_topk_prob = false;      // renormalise the chosen top-k weights to sum 1
  float expert_weights_scale = 1.0f;
  int64_t n_expert_groups = 1;      // grouped top-k (DeepSeek-V3): groups and groups kept
  int64_t n_group_used = 1;
  // MLA (DeepSeek-V2/V3)
  int64_t q_lora_rank = 0;   // 0: attn_q directly (V2-Lite)
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_dim = 0;   // per-head key width without rope
  int64_t qk_rope_dim = 0;
  int64_t v_head_dim_mla = 0;
  // gpt-oss
  int64_t sliding_window = 0;
  // derived
  bool is_moe_layer(int64_t il) const { return n_expert > 0 && il >= n_layer_dense_lead; }
};

/// Reads the hyper-parameters of the model described by `md` (file named for errors). Throws Error for
/// an unsupported architecture, a missing or non-positive required key (embedding_length, block_count,
/// head_count, deepseek2's kv_lora_rank) or a key of the wrong type. It does not check the values against
/// each other or the tensors: use load_checked_hparams (runtime/models/hparams_check.hpp) for that.
ModelHparams load_hparams(const gguf::Metadata& md, const std::string& file);

/// KV-cache bytes per token of context with an f32 (or `bytes_per_elem`) cache: 2 * n_layer * n_head_kv
/// * head_dim for ordinary attention; n_layer * (kv_lora_rank + qk_rope_dim) for MLA's compressed cache.
uint64_t kv_cache_bytes_per_token(const ModelHparams& hp, uint32_t bytes_per_elem = 4);

}  // namespace moetier::models
