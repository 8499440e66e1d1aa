#include "runtime/synth/synth_presets.hpp"

#include "common/error.hpp"

namespace moetier::synth {
namespace {

std::vector<Preset> make_presets() {
  std::vector<Preset> v;

  // DeepSeek-V3 (and R1, same architecture):
  // https://huggingface.co/deepseek-ai/DeepSeek-V3/blob/main/config.json — hidden_size 7168,
  // num_hidden_layers 61 (the MTP layer is not converted), 128 heads, q_lora_rank 1536, kv_lora_rank 512,
  // qk_nope_head_dim 128, qk_rope_head_dim 64, v_head_dim 128, intermediate_size 18432,
  // moe_intermediate_size 2048, n_routed_experts 256, num_experts_per_tok 8, n_shared_experts 1,
  // first_k_dense_replace 3, scoring_func sigmoid, topk_method noaux_tc (e_score_correction_bias),
  // n_group 8, topk_group 4, norm_topk_prob true, routed_scaling_factor 2.5, vocab_size 129280,
  // max_position_embeddings 163840, rope_theta 10000, rope_scaling yarn factor 40,
  // original_max_position_embeddings 4096, mscale_all_dim 1.0, rms_norm_eps 1e-6, untied.
  {
    Preset p;
    p.name = "deepseek-v3";
    p.arch = "deepseek2";
    p.source = "https://huggingface.co/deepseek-ai/DeepSeek-V3/blob/main/config.json";
    p.n_vocab = 129280, p.n_ctx = 163840, p.n_embd = 7168, p.n_layer = 61, p.n_head = 128;
    p.n_head_kv = 128, p.n_ff = 18432, p.n_ff_exp = 2048, p.n_expert = 256, p.n_expert_used = 8;
    p.n_expert_shared = 1, p.n_layer_dense_lead = 3, p.rms_eps = 1e-6f, p.rope_freq_base = 10000.0f;
    p.yarn_factor = 40.0f, p.yarn_orig_ctx = 4096, p.yarn_log_mul = 0.1f;
    p.q_lora_rank = 1536, p.kv_lora_rank = 512, p.qk_nope_dim = 128, p.qk_rope_dim = 64, p.v_head_dim = 128;
    p.gating_func = 2, p.expert_weights_norm = true, p.expert_weights_scale = 2.5f;
    p.n_expert_groups = 8, p.n_group_used = 4, p.exp_probs_b = true;
    p.bos_id = 0, p.eos_id = 1;
    v.push_back(p);
  }
  // DeepSeek-V2-Lite: https://huggingface.co/deepseek-ai/DeepSeek-V2-Lite/blob/main/config.json —
  // hidden_size 2048, 27 layers, 16 heads, q_lora_rank null (attn_q directly), kv_lora_rank 512,
  // qk_nope 128, qk_rope 64, v_head 128, intermediate_size 10944, moe_intermediate_size 1408,
  // n_routed_experts 64, num_experts_per_tok 6, n_shared_experts 2, first_k_dense_replace 1,
  // scoring_func softmax, topk_method greedy, norm_topk_prob false, routed_scaling_factor 1.0,
  // vocab_size 102400, max_position_embeddings 163840, rope_theta 10000, yarn factor 40,
  // original_max_position_embeddings 4096, mscale_all_dim 0.707, rms_norm_eps 1e-6, untied.
  {
    Preset p;
    p.name = "deepseek-v2-lite";
    p.arch = "deepseek2";
    p.source = "https://huggingface.co/deepseek-ai/DeepSeek-V2-Lite/blob/main/config.json";
    p.n_vocab = 102400, p.n_ctx = 163840, p.n_embd = 2048, p.n_layer = 27, p.n_head = 16, p.n_head_kv = 16;
    p.n_ff = 10944, p.n_ff_exp = 1408, p.n_expert = 64, p.n_expert_used = 6, p.n_expert_shared = 2;
    p.n_layer_dense_lead = 1, p.rms_eps = 1e-6f, p.rope_freq_base = 10000.0f;
    p.yarn_factor = 40.0f, p.yarn_orig_ctx = 4096, p.yarn_log_mul = 0.0707f;
    p.q_lora_rank = 0, p.kv_lora_rank = 512, p.qk_nope_dim = 128, p.qk_rope_dim = 64, p.v_head_dim = 128;
    p.gating_func = 1, p.expert_weights_norm = false, p.expert_weights_scale = 1.0f;
    p.bos_id = 100000, p.eos_id = 100001;
    v.push_back(p);
  }
  // Qwen3-30B-A3B: https://huggingface.co/Qwen/Qwen3-30B-A3B/blob/main/config.json — hidden_size 2048,
  // 48 layers, 32 heads, 4 KV heads, head_dim 128, intermediate_size 6144, moe_intermediate_size 768,
  // num_experts 128, num_experts_per_tok 8, norm_topk_prob true, vocab_size 151936,
  // max_position_embeddings 40960, rope_theta 1e6, rms_norm_eps 1e-6, untied.
  {
    Preset p;
    p.name = "qwen3-30b-a3b";
    p.arch = "qwen3moe";
    p.source = "https://huggingface.co/Qwen/Qwen3-30B-A3B/blob/main/config.json";
    p.n_vocab = 151936, p.n_ctx = 40960, p.n_embd = 2048, p.n_layer = 48, p.n_head = 32, p.n_head_kv = 4;
    p.head_dim = 128, p.n_ff = 6144, p.n_ff_exp = 768, p.n_expert = 128, p.n_expert_used = 8;
    p.rms_eps = 1e-6f, p.rope_freq_base = 1e6f, p.bos_id = 151643, p.eos_id = 151645;
    v.push_back(p);
  }
  // Qwen3-235B-A22B: https://huggingface.co/Qwen/Qwen3-235B-A22B/blob/main/config.json — hidden_size
  // 4096, 94 layers, 64 heads, 4 KV heads, head_dim 128, intermediate_size 12288, moe_intermediate_size
  // 1536, num_experts 128, num_experts_per_tok 8, vocab_size 151936, max_position_embeddings 40960,
  // rope_theta 1e6, rms_norm_eps 1e-6, untied.
  {
    Preset p;
    p.name = "qwen3-235b-a22b";
    p.arch = "qwen3moe";
    p.source = "https://huggingface.co/Qwen/Qwen3-235B-A22B/blob/main/config.json";
    p.n_vocab = 151936, p.n_ctx = 40960, p.n_embd = 4096, p.n_layer = 94, p.n_head = 64, p.n_head_kv = 4;
    p.head_dim = 128, p.n_ff = 12288, p.n_ff_exp = 1536, p.n_expert = 128, p.n_expert_used = 8;
    p.rms_eps = 1e-6f, p.rope_freq_base = 1e6f, p.bos_id = 151643, p.eos_id = 151645;
    v.push_back(p);
  }
  // Mixtral-8x7B: https://huggingface.co/mistralai/Mixtral-8x7B-v0.1/blob/main/config.json — hidden_size
  // 4096, 32 layers, 32 heads, 8 KV heads (head_dim 128), intermediate_size 14336 (per expert),
  // num_local_experts 8, num_experts_per_tok 2, vocab_size 32000, max_position_embeddings 32768,
  // rope_theta 1e6, rms_norm_eps 1e-5, untied.
  {
    Preset p;
    p.name = "mixtral-8x7b";
    p.arch = "llama";
    p.source = "https://huggingface.co/mistralai/Mixtral-8x7B-v0.1/blob/main/config.json";
    p.n_vocab = 32000, p.n_ctx = 32768, p.n_embd = 4096, p.n_layer = 32, p.n_head = 32, p.n_head_kv = 8;
    p.head_dim = 128, p.n_ff = 14336, p.n_expert = 8, p.n_expert_used = 2;
    p.rms_eps = 1e-5f, p.rope_freq_base = 1e6f, p.bos_id = 1, p.eos_id = 2;
    v.push_back(p);
  }
  // OLMoE-1B-7B-0924: https://huggingface.co/allenai/OLMoE-1B-7B-0924/blob/main/config.json —
  // hidden_size 2048, 16 layers, 16 heads (16 KV heads), intermediate_size 1024 (per expert),
  // num_experts 64, num_experts_per_tok 8, norm_topk_prob false, vocab_size 50304,
  // max_position_embeddings 4096, rope_theta 10000, rms_norm_eps 1e-5, untied; q/k RMSNorm over n_embd.
  {
    Preset p;
    p.name = "olmoe-1b-7b";
    p.arch = "olmoe";
    p.source = "https://huggingface.co/allenai/OLMoE-1B-7B-0924/blob/main/config.json";
    p.n_vocab = 50304, p.n_ctx = 4096, p.n_embd = 2048, p.n_layer = 16, p.n_head = 16, p.n_head_kv = 16;
    p.head_dim = 128, p.n_ff = 1024, p.n_expert = 64, p.n_expert_used = 8;
    p.rms_eps = 1e-5f, p.rope_freq_base = 10000.0f, p.bos_id = -1, p.eos_id = 50279;
    v.push_back(p);
  }
  // gpt-oss-20b: https://huggingface.co/openai/gpt-oss-20b/blob/main/config.json — hidden_size 2880,
  // 24 layers, 64 heads, 8 KV heads, head_dim 64, intermediate_size 2880 (per expert),
  // num_local_experts 32, num_experts_per_tok 4, sliding_window 128, vocab_size 201088,
  // max_position_embeddings 131072, rope_theta 150000, rope_scaling yarn factor 32,
  // original_max_position_embeddings 4096, rms_norm_eps 1e-5, untied; attention sinks, biases.
  {
    Preset p;
    p.name = "gpt-oss-20b";
    p.arch = "gpt-oss";
    p.source = "https://huggingface.co/openai/gpt-oss-20b/blob/main/config.json";
    p.n_vocab = 201088, p.n_ctx = 131072, p.n_embd = 2880, p.n_layer = 24, p.n_head = 64, p.n_head_kv = 8;
    p.head_dim = 64, p.n_ff = 2880, p.n_ff_exp = 2880, p.n_expert = 32, p.n_expert_used = 4;
    p.rms_eps = 1e-5f, p.rope_freq_base = 150000.0f, p.yarn_factor = 32.0f, p.yarn_orig_ctx = 4096;
    p.sliding_window = 128, p.bos_id = 199998, p.eos_id = 200002;
    v.push_back(p);
  }
  // gpt-oss-120b: https://huggingface.co/openai/gpt-oss-120b/blob/main/config.json — as gpt-oss-20b
  // (hidden_size 2880, 64 heads, 8 KV heads, head_dim 64, intermediate_size 2880, num_experts_per_tok 4,
  // sliding_window 128, vocab_size 201088, rope_theta 150000, yarn factor 32 from 4096, rms_norm_eps 1e-5)
  // but num_hidden_layers 36 and num_local_experts 128.
  {
    Preset p = v.back();
    p.name = "gpt-oss-120b";
    p.source = "https://huggingface.co/openai/gpt-oss-120b/blob/main/config.json";
    p.n_layer = 36, p.n_expert = 128;
    v.push_back(p);
  }

  // GLM-4.5-Air: https://huggingface.co/zai-org/GLM-4.5-Air/blob/main/config.json — hidden_size 4096,
  // num_hidden_layers 46 (+ num_nextn_predict_layers 1, converted as blk.46), 96 heads, 8 KV heads,
  // head_dim 128, partial_rotary_factor 0.5 (64 rotated dims), attention_bias true, use_qk_norm false,
  // intermediate_size 10944, moe_intermediate_size 1408, n_routed_experts 128, num_experts_per_tok 8,
  // n_shared_experts 1, first_k_dense_replace 1, n_group 1, topk_group 1, norm_topk_prob true,
  // routed_scaling_factor 1.0, sigmoid scores with e_score_correction_bias, vocab_size 151552,
  // max_position_embeddings 131072, rope_theta 1e6, rms_norm_eps 1e-5, untied.
  {
    Preset p;
    p.name = "glm-4.5-air";
    p.arch = "glm4moe";
    p.source = "https://huggingface.co/zai-org/GLM-4.5-Air/blob/main/config.json";
    p.n_vocab = 151552, p.n_ctx = 131072, p.n_embd = 4096, p.n_layer = 46, p.n_nextn = 1, p.n_head = 96;
    p.n_head_kv = 8, p.head_dim = 128, p.n_rot = 64, p.qkv_bias = true, p.n_ff = 10944, p.n_ff_exp = 1408;
    p.n_expert = 128, p.n_expert_used = 8, p.n_expert_shared = 1, p.n_layer_dense_lead = 1;
    p.gating_func = 2, p.expert_weights_norm = true, p.expert_weights_scale = 1.0f, p.exp_probs_b = true;
    p.rms_eps = 1e-5f, p.rope_freq_base = 1e6f, p.bos_id = -1, p.eos_id = 151329;
    v.push_back(p);
  }
  // GLM-4.5: https://huggingface.co/zai-org/GLM-4.5/blob/main/config.json — hidden_size 5120,
  // num_hidden_layers 92 (+ 1 NextN layer, blk.92), 96 heads, 8 KV heads, head_dim 128,
  // partial_rotary_factor 0.5, attention_bias true, use_qk_norm true, intermediate_size 12288,
  // moe_intermediate_size 1536, n_routed_experts 160, num_experts_per_tok 8, n_shared_experts 1,
  // first_k_dense_replace 3, norm_topk_prob true, routed_scaling_factor 2.5, vocab_size 151552,
  // max_position_embeddings 131072, rope_theta 1e6, rms_norm_eps 1e-5, untied. (GLM-4.6 has the same
  // shapes with max_position_embeddings 202752.)
  {
    Preset p;
    p.name = "glm-4.5";
    p.arch = "glm4moe";
    p.source = "https://huggingface.co/zai-org/GLM-4.5/blob/main/config.json";
    p.n_vocab = 151552, p.n_ctx = 131072, p.n_embd = 5120, p.n_layer = 92, p.n_nextn = 1, p.n_head = 96;
    p.n_head_kv = 8, p.head_dim = 128, p.n_rot = 64, p.qkv_bias = true, p.qk_norm = true, p.n_ff = 12288;
    p.n_ff_exp = 1536, p.n_expert = 160, p.n_expert_used = 8, p.n_expert_shared = 1, p.n_layer_dense_lead = 3;
    p.gating_func = 2, p.expert_weights_norm = true, p.expert_weights_scale = 2.5f, p.exp_probs_b = true;
    p.rms_eps = 1e-5f, p.rope_freq_base = 1e6f, p.bos_id = -1, p.eos_id = 151329;
    v.push_back(p);
  }
  // Kimi-K2-Instruct: https://huggingface.co/moonshotai/Kimi-K2-Instruct/blob/main/config.json — the
  // DeepSeek-V3 architecture (deepseek2) with hidden_size 7168, 61 layers, 64 heads, q_lora_rank 1536,
  // kv_lora_rank 512, qk_nope 128, qk_rope 64, v_head 128, intermediate_size 18432,
  // moe_intermediate_size 2048, n_routed_experts 384, num_experts_per_tok 8, n_shared_experts 1,
  // first_k_dense_replace 1, n_group 1, topk_group 1, scoring_func sigmoid (noaux_tc), norm_topk_prob
  // true, routed_scaling_factor 2.827, vocab_size 163840, max_position_embeddings 131072, rope_theta
  // 50000, yarn factor 32, original_max_position_embeddings 4096, mscale_all_dim 1.0, beta_fast 1,
  // beta_slow 1, rms_norm_eps 1e-6, untied; bos 163584, eos 163585.
  {
    Preset p;
    p.name = "kimi-k2";
    p.arch = "deepseek2";
    p.source = "https://huggingface.co/moonshotai/Kimi-K2-Instruct/blob/main/config.json";
    p.n_vocab = 163840, p.n_ctx = 131072, p.n_embd = 7168, p.n_layer = 61, p.n_head = 64, p.n_head_kv = 64;
    p.n_ff = 18432, p.n_ff_exp = 2048, p.n_expert = 384, p.n_expert_used = 8, p.n_expert_shared = 1;
    p.n_layer_dense_lead = 1, p.rms_eps = 1e-6f, p.rope_freq_base = 50000.0f;
    p.yarn_factor = 32.0f, p.yarn_orig_ctx = 4096, p.yarn_log_mul = 0.1f;
    p.q_lora_rank = 1536, p.kv_lora_rank = 512, p.qk_nope_dim = 128, p.qk_rope_dim = 64, p.v_head_dim = 128;
    p.gating_func = 2, p.expert_weights_norm = true, p.expert_weights_scale = 2.827f, p.exp_probs_b = true;
    p.n_expert_groups = 1, p.n_group_used = 1, p.bos_id = 163584, p.eos_id = 163585;
    v.push_back(p);
  }
  // MiniMax-M2: https://huggingface.co/MiniMaxAI/MiniMax-M2/blob/main/config.json — hidden_size 3072,
  // num_hidden_layers 62, 48 heads, 8 KV heads, head_dim 128, rotary_dim 64, use_qk_norm (per layer,
  // over all heads), intermediate_size 1536 (per expert), num_local_experts 256, num_experts_per_tok 8,
  // scoring_func sigmoid with e_score_correction_bias, vocab_size 200064, max_position_embeddings 196608,
  // rope_theta 5e6, rms_norm_eps 1e-6, untied (its 3 MTP modules are not converted).
  {
    Preset p;
    p.name = "minimax-m2";
    p.arch = "minimax-m2";
    p.source = "https://huggingface.co/MiniMaxAI/MiniMax-M2/blob/main/config.json";
    p.n_vocab = 200064, p.n_ctx = 196608, p.n_embd = 3072, p.n_layer = 62, p.n_head = 48, p.n_head_kv = 8;
    p.head_dim = 128, p.n_rot = 64, p.n_ff = 1536, p.n_ff_exp = 1536, p.n_expert = 256, p.n_expert_used = 8;
    p.gating_func = 2, p.expert_weights_norm = true, p.exp_probs_b = true, p.qk_norm = true;
    p.rms_eps = 1e-6f, p.rope_freq_base = 5e6f;
    v.push_back(p);
  }

  // ---- tiny models: same architectures and tensor layouts, small dimensions ----
  auto tiny = [](std::string name, std::string arch) {
    Preset p;
    p.name = std::move(name);
    p.arch = std::move(arch);
    p.source = "tiny";
    p.tiny = true;
    p.n_vocab = 512, p.n_ctx = 4096, p.n_embd = 128, p.n_layer = 2, p.n_head = 4, p.n_head_kv = 2;
    p.head_dim = 32, p.rms_eps = 1e-5f, p.rope_freq_base = 10000.0f;
    return p;
  };
  {
    Preset p = tiny("tiny-mixtral", "llama");
    p.n_ff = 256, p.n_expert = 8, p.n_expert_used = 2, p.rope_freq_base = 1e6f;
    v.push_back(p);
  }
  {
    Preset p = tiny("tiny-qwen3moe", "qwen3moe");
    p.n_ff = 384, p.n_ff_exp = 256, p.n_expert = 16, p.n_expert_used = 4, p.rms_eps = 1e-6f;
    p.rope_freq_base = 1e6f;
    v.push_back(p);
  }
  {
    Preset p = tiny("tiny-qwen2moe", "qwen2moe");
    p.n_head_kv = 4, p.n_ff = 512, p.n_ff_exp = 128, p.n_ff_shexp = 256, p.n_expert = 16, p.n_expert_used = 4;
    p.n_expert_shared = 1, p.rms_eps = 1e-6f, p.rope_freq_base = 1e6f, p.qkv_bias = true;
    v.push_back(p);
  }
  {  // DeepSeek-V3-style: q_lora, sigmoid gating with score bias and grouped top-k, 1 dense layer
    Preset p = tiny("tiny-deepseek2", "deepseek2");
    p.n_layer = 3, p.n_head_kv = 4, p.n_ff = 256, p.n_ff_exp = 128, p.n_expert = 16, p.n_expert_used = 4;
    p.n_expert_shared = 1, p.n_layer_dense_lead = 1, p.rms_eps = 1e-6f;
    p.yarn_factor = 40.0f, p.yarn_orig_ctx = 4096, p.yarn_log_mul = 0.1f;
    p.q_lora_rank = 64, p.kv_lora_rank = 64, p.qk_nope_dim = 32, p.qk_rope_dim = 16, p.v_head_dim = 32;
    p.gating_func = 2, p.expert_weights_norm = true, p.expert_weights_scale = 2.5f;
    p.n_expert_groups = 4, p.n_group_used = 2, p.exp_probs_b = true;
    v.push_back(p);
  }
  {  // DeepSeek-V2-Lite-style: no q_lora, softmax gating, 2 shared experts
    Preset p = tiny("tiny-deepseek-v2-lite", "deepseek2");
    p.n_layer = 3, p.n_head_kv = 4, p.n_ff = 256, p.n_ff_exp = 128, p.n_expert = 16, p.n_expert_used = 4;
    p.n_expert_shared = 2, p.n_layer_dense_lead = 1, p.rms_eps = 1e-6f;
    p.yarn_factor = 40.0f, p.yarn_orig_ctx = 4096, p.yarn_log_mul = 0.0707f;
    p.q_lora_rank = 0, p.kv_lora_rank = 64, p.qk_nope_dim = 32, p.qk_rope_dim = 16, p.v_head_dim = 32;
    p.gating_func = 1, p.expert_weights_norm = false, p.expert_weights_scale = 1.0f;
    v.push_back(p);
  }
  {
    Preset p = tiny("tiny-olmoe", "olmoe");
    p.n_head_kv = 4, p.n_ff = 256, p.n_expert = 16, p.n_expert_used = 4;
    v.push_back(p);
  }
  {
    // sliding window 8 (the real models: 128) so that a short prompt plus a greedy continuation already
    // masks positions on the sliding (even) layers.
    Preset p = tiny("tiny-gpt-oss", "gpt-oss");
    p.n_ff = 256, p.n_ff_exp = 256, p.n_expert = 8, p.n_expert_used = 2, p.rope_freq_base = 150000.0f;
    p.yarn_factor = 32.0f, p.yarn_orig_ctx = 4096, p.sliding_window = 8;
    v.push_back(p);
  }
  {  // GLM-4.5-style: partial rotary (half of each head), Q/K/V biases, per-head Q/K norm, one dense
     // layer, sigmoid routing with a score bias, a shared expert, and a trailing NextN layer (ignored)
    Preset p = tiny("tiny-glm4moe", "glm4moe");
    p.n_layer = 3, p.n_nextn = 1, p.n_rot = 16, p.qkv_bias = true, p.qk_norm = true, p.n_ff = 256;
    p.n_ff_exp = 64, p.n_expert = 16, p.n_expert_used = 4, p.n_expert_shared = 1, p.n_layer_dense_lead = 1;
    p.gating_func = 2, p.expert_weights_norm = true, p.expert_weights_scale = 2.5f, p.exp_probs_b = true;
    p.rope_freq_base = 1e6f;
    v.push_back(p);
  }
  {  // Kimi-K2-style deepseek2 with more than 256 experts (384, as Kimi-K2), one group, sigmoid + bias
    Preset p = tiny("tiny-kimi-k2", "deepseek2");
    p.n_embd = 64, p.n_layer = 3, p.n_head_kv = 4, p.n_ff = 256, p.n_ff_exp = 16, p.n_expert = 384;
    p.n_expert_used = 8, p.n_expert_shared = 1, p.n_layer_dense_lead = 1, p.rms_eps = 1e-6f;
    p.rope_freq_base = 50000.0f, p.yarn_factor = 32.0f, p.yarn_orig_ctx = 4096, p.yarn_log_mul = 0.1f;
    // kv_lora_rank 512 and 64 rope dims as the real model: ik_llama.cpp (the reference) accepts MLA files
    // converted by mainline llama.cpp only with these widths.
    p.q_lora_rank = 32, p.kv_lora_rank = 512, p.qk_nope_dim = 16, p.qk_rope_dim = 64, p.v_head_dim = 16;
    p.gating_func = 2, p.expert_weights_norm = true, p.expert_weights_scale = 2.827f, p.exp_probs_b = true;
    v.push_back(p);
  }
  {  // MiniMax-M2-style: full-width Q/K norm, partial rotary, sigmoid routing with a score bias
    Preset p = tiny("tiny-minimax-m2", "minimax-m2");
    p.n_rot = 16, p.n_ff = 256, p.n_ff_exp = 256, p.n_expert = 16, p.n_expert_used = 4;
    p.gating_func = 2, p.expert_weights_norm = true, p.exp_probs_b = true, p.qk_norm = true;
    p.rms_eps = 1e-6f, p.rope_freq_base = 5e6f;
    v.push_back(p);
  }
  return v;
}

}  // namespace

const std::vector<Preset>& all_presets() {
  static const std::vector<Preset> kPresets = make_presets();
  return kPresets;
}

const Preset& find_preset(std::string_view name) {
  if (name == "deepseek-r1") name = "deepseek-v3";
  std::string names;
  for (const auto& p : all_presets()) {
    if (p.name == name) return p;
    names += (names.empty() ? "" : ", ") + p.name;
  }
  fail("unknown synth preset \"{}\" (presets: {}, deepseek-r1)", name, names);
}

}  // namespace moetier::synth
