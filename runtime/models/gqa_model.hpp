// GqaModel: the grouped-query attention shared by arch_standard.cpp (llama, qwen2moe, qwen3moe, olmoe,
// glm4moe, minimax-m2) and arch_gptoss.cpp: Q/K/V projections with optional biases, optional per-head or
// full-width Q/K RMSNorm, RoPE over rope_.n_rot dims of each head, the f32 KV cache, cpu::attention with
// an optional sliding window and sink logits, the output projection with an optional bias. Over a batch
// of several sequences (Model::forward_batch) the four projections run over every row at once (one read
// of the weights per step) and RoPE, the cache writes and attention per sequence at its own positions.
// Source: llama.cpp src/models/{llama,qwen2moe,qwen3moe,olmoe,glm4-moe,minimax-m2,openai-moe}.cpp.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "runtime/models/model.hpp"

namespace moetier::models {

class GqaModel : public Model {
 protected:
  /// One layer's attention tensors; optional ones are null (window 0: full causal attention).
  struct GqaLayer {
    Weight wq, wk, wv, wo;
    const float *bq = nullptr, *bk = nullptr, *bv = nullptr, *bo = nullptr;
    const float *q_norm = nullptr, *k_norm = nullptr;  // [head_dim_k] per head, or full width
    bool full_width_norm = false;
    const float* sinks = nullptr;  // [n_head]
    int64_t window = 0;
  };

  GqaModel(const gguf::GgufModel& g, ModelHparams hp) : Model(g, std::move(hp)) {}
  /// wq [n_head * head_dim_k, n_embd], wk / wv [n_head_kv * head_dim, n_embd], wo [n_embd, n_head *
  /// head_dim_v] of layer il (Error naming a missing tensor or a wrong shape).
  GqaLayer bind_projections(int il) const;
  /// rope_ from the hyper-parameters (YaRN when the file says so); `neox`: NEOX rotation (else NORM).
  void set_rope(bool neox);

  int64_t cache_k_width() const override { return hp_.n_head_kv * hp_.head_dim_k; }
  int64_t cache_v_width() const override { return hp_.n_head_kv * hp_.head_dim_v; }
  // q_, k_, v_, attn_ of attention_batch().
  int64_t attention_floats_per_token() const override {
    return (hp_.n_head + hp_.n_head_kv) * hp_.head_dim_k + (hp_.n_head_kv + hp_.n_head) * hp_.head_dim_v;
  }
  void attention(int il, const float* x, int64_t n, KvCache& cache, float* out) override;
  void attention_batch(int il, const float* x, std::span<const AttnSeq> seqs, int64_t n_rows, float* out) override;

  std::vector<GqaLayer> attn_layers_;
  cpu::RopeParams rope_;

 private:
  std::vector<float> q_, k_, v_, cs_, attn_;
};

}  // namespace moetier::models
