// Architectures with standard multi-head attention (GQA) and MoE FFNs: llama (Mixtral-style experts),
// qwen2moe, qwen3moe, olmoe, glm4moe, minimax-m2. Differences are tensor bindings: Q/K/V biases (qwen2moe; optional
// elsewhere), per-head Q/K RMSNorm (qwen3moe; glm4moe when the file has it) or full-width Q/K RMSNorm
// (olmoe, minimax-m2), RoPE type (NORM for llama, NEOX otherwise) over rope.dimension_count dims of each head
// (glm4moe, minimax-m2: half of them), the FFN norm's name (glm4moe: post_attention_norm). glm4moe's NextN layers
// (blk.n_layer.. ) are never bound. Source: llama.cpp src/models/{llama,qwen2moe,qwen3moe,olmoe,glm4-moe,minimax-m2}.cpp.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "common/error.hpp"
#include "cpu/ops.hpp"
#include "runtime/models/arch_factories.hpp"

namespace moetier::models {
namespace {

class StandardModel final : public Model {
 public:
  StandardModel(const gguf::GgufModel& g, ModelHparams hp) : Model(g, std::move(hp)) {
    const int64_t n_embd = hp_.n_embd, dk = hp_.head_dim_k, dv = hp_.head_dim_v;
    const int64_t nq = hp_.n_head * dk, nk = hp_.n_head_kv * dk, nv = hp_.n_head_kv * dv;
    auto name = [](int il, const char* n) { return fmt::format("blk.{}.{}.weight", il, n); };
    auto bias = [](int il, const char* n) { return fmt::format("blk.{}.{}.bias", il, n); };
    for (int il = 0; il < hp_.n_layer; ++il) {
      Layer L;
      L.wq = weight_2d(g, name(il, "attn_q"), nq, n_embd);
      L.wk = weight_2d(g, name(il, "attn_k"), nk, n_embd);
      L.wv = weight_2d(g, name(il, "attn_v"), nv, n_embd);
      L.wo = weight_2d(g, name(il, "attn_output"), n_embd, hp_.n_head * dv);
      if (hp_.arch == Arch::Qwen2Moe) {  // llama.cpp requires qwen2moe's Q/K/V biases
        L.bq = vector_f32(g, bias(il, "attn_q"), nq);
        L.bk = vector_f32(g, bias(il, "attn_k"), nk);
        L.bv = vector_f32(g, bias(il, "attn_v"), nv);
      } else {
        L.bq = optional_vector_f32(g, bias(il, "attn_q"), nq);
        L.bk = optional_vector_f32(g, bias(il, "attn_k"), nk);
        L.bv = optional_vector_f32(g, bias(il, "attn_v"), nv);
      }
      if (hp_.arch == Arch::Qwen3Moe) {
        L.q_norm = vector_f32(g, name(il, "attn_q_norm"), dk);
        L.k_norm = vector_f32(g, name(il, "attn_k_norm"), dk);
      } else if (hp_.arch == Arch::Olmoe || hp_.arch == Arch::MinimaxM2) {
        L.q_norm = vector_f32(g, name(il, "attn_q_norm"), nq);
        L.k_norm = vector_f32(g, name(il, "attn_k_norm"), nk);
        L.full_width_norm = true;
      } else if (hp_.arch == Arch::Glm4Moe) {  // GLM-4.5 (use_qk_norm); Air and 4.6 files have none
        L.q_norm = optional_vector_f32(g, name(il, "attn_q_norm"), dk);
        L.k_norm = L.q_norm ? vector_f32(g, name(il, "attn_k_norm"), dk) : nullptr;
      }
      layers_.push_back(L);
    }
    if (hp_.arch == Arch::Glm4Moe) ffn_norm_name_ = "post_attention_norm";
    rope_.n_rot = static_cast<int>(hp_.n_rot);
    rope_.neox = hp_.rope_type == RopeType::Neox;
    rope_.freq_base = hp_.rope_freq_base;
    rope_.freq_scale = hp_.rope_freq_scale;
    rope_.ext_factor = hp_.rope_yarn ? 1.0f : 0.0f;
    rope_.n_ctx_orig = static_cast<int>(hp_.rope_yarn ? hp_.yarn_orig_ctx : hp_.n_ctx_train);
    rope_.beta_fast = hp_.yarn_beta_fast;
    rope_.beta_slow = hp_.yarn_beta_slow;
    load_common();
  }

 protected:
  int64_t cache_k_width() const override { return hp_.n_head_kv * hp_.head_dim_k; }
  int64_t cache_v_width() const override { return hp_.n_head_kv * hp_.head_dim_v; }
  // q_, k_, v_, attn_ of attention().
  int64_t attention_floats_per_token() const override {
    return (hp_.n_head + hp_.n_head_kv) * hp_.head_dim_k + (hp_.n_head_kv + hp_.n_head) * hp_.head_dim_v;
  }

  void attention(int il, const float* x, int64_t n, KvCache& cache, float* out) override {
    const AttnSeq one{0, n, &cache};
    attention_batch(il, x, std::span<const AttnSeq>(&one, 1), n, out);
  }

  // The Q/K/V and output projections run over every row of the batch at once; norms, RoPE, the cache
  // writes and attention itself per sequence, at its own positions.
  void attention_batch(int il, const float* x, std::span<const AttnSeq> seqs, int64_t n, float* out) override {
    const Layer& L = layers_[il];
    const int64_t dk = hp_.head_dim_k, dv = hp_.head_dim_v;
    const int64_t nq = hp_.n_head * dk, nk = hp_.n_head_kv * dk, nv = hp_.n_head_kv * dv;
    q_.resize(static_cast<size_t>(n * nq));
    k_.resize(static_cast<size_t>(n * nk));
    v_.resize(static_cast<size_t>(n * nv));
    lin_(L.wq, x, n, q_.data());
    lin_(L.wk, x, n, k_.data());
    lin_(L.wv, x, n, v_.data());
    add_bias(q_.data(), L.bq, n, nq);
    add_bias(k_.data(), L.bk, n, nk);
    add_bias(v_.data(), L.bv, n, nv);
    cs_.resize(static_cast<size_t>(rope_.n_rot));
    attn_.resize(static_cast<size_t>(n * hp_.n_head * dv));
    for (const AttnSeq& s : seqs) {
      KvCache& cache = *s.cache;
      for (int64_t t = 0; t < s.n; ++t) {
        float* q = q_.data() + (s.row0 + t) * nq;
        float* k = k_.data() + (s.row0 + t) * nk;
        if (L.q_norm) {
          if (L.full_width_norm) {
            cpu::rms_norm(q, L.q_norm, q, nq, hp_.rms_eps);
            cpu::rms_norm(k, L.k_norm, k, nk, hp_.rms_eps);
          } else {
            for (int64_t h = 0; h < hp_.n_head; ++h) cpu::rms_norm(q + h * dk, L.q_norm, q + h * dk, dk, hp_.rms_eps);
            for (int64_t h = 0; h < hp_.n_head_kv; ++h)
              cpu::rms_norm(k + h * dk, L.k_norm, k + h * dk, dk, hp_.rms_eps);
          }
        }
        cpu::rope_cache(rope_, cache.n_past + t, cs_.data());
        cpu::rope_apply(rope_, cs_.data(), q, hp_.n_head, dk);
        cpu::rope_apply(rope_, cs_.data(), k, hp_.n_head_kv, dk);
        std::copy_n(k, nk, cache.k[il].data() + (cache.n_past + t) * nk);
        std::copy_n(v_.data() + (s.row0 + t) * nv, nv, cache.v[il].data() + (cache.n_past + t) * nv);
      }
      cpu::AttentionArgs a;
      a.q = q_.data() + s.row0 * nq;
      a.n_tokens = s.n;
      a.n_head = hp_.n_head;
      a.n_head_kv = hp_.n_head_kv;
      a.d_k = dk;
      a.d_v = dv;
      a.k = cache.k[il].data();
      a.k_stride = nk;
      a.v = cache.v[il].data();
      a.v_stride = nv;
      a.pos0 = cache.n_past;
      a.scale = 1.0f / std::sqrt(static_cast<float>(dk));
      a.out = attn_.data() + s.row0 * hp_.n_head * dv;
      run_attention(a, hp_.n_head);
    }
    lin_(L.wo, attn_.data(), n, out);
  }

 private:
  struct Layer {
    Weight wq, wk, wv, wo;
    const float *bq = nullptr, *bk = nullptr, *bv = nullptr;
    const float *q_norm = nullptr, *k_norm = nullptr;
    bool full_width_norm = false;
  };
  static void add_bias(float* y, const float* b, int64_t n, int64_t width) {
    if (!b) return;
    for (int64_t t = 0; t < n; ++t)
      for (int64_t i = 0; i < width; ++i) y[t * width + i] += b[i];
  }
  std::vector<Layer> layers_;
  cpu::RopeParams rope_;
  std::vector<float> q_, k_, v_, cs_, attn_;
};

}  // namespace

std::unique_ptr<Model> make_standard_model(const gguf::GgufModel& g, ModelHparams hp) {
  return std::make_unique<StandardModel>(g, std::move(hp));
}

}  // namespace moetier::models
