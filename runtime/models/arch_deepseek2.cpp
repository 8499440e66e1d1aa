// deepseek2: DeepSeek-V2, V2-Lite, V3 and R1. Multi-head latent attention (MLA) in the absorbed form
// llama.cpp uses for files with attn_k_b / attn_v_b: the KV cache holds only the compressed latent
// (kv_lora_rank) plus the shared RoPE key (qk_rope_dim) per token; queries are projected into the latent
// space through attn_k_b, the attention output back through attn_v_b. YaRN RoPE on the rope dims with
// llama.cpp's pre-scaled attention factor. Leading dense layers, shared experts and grouped sigmoid
// routing come from the shared Model code. Source: llama.cpp src/models/deepseek2.cpp;
// DeepSeek-V2 paper section 2.1 (MLA).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "common/error.hpp"
#include "cpu/ops.hpp"
#include "runtime/models/arch_factories.hpp"

namespace moetier::models {
namespace {

class Deepseek2Model final : public Model {
 public:
  Deepseek2Model(const gguf::GgufModel& g, ModelHparams hp) : Model(g, std::move(hp)) {
    const int64_t n_embd = hp_.n_embd, nh = hp_.n_head;
    const int64_t nope = hp_.qk_nope_dim, rope = hp_.qk_rope_dim, lora = hp_.kv_lora_rank, vd = hp_.v_head_dim_mla;
    const int64_t dq = nope + rope;
    auto name = [](int il, const char* n) { return fmt::format("blk.{}.{}.weight", il, n); };
    if (!g.find(name(0, "attn_k_b")))
      fail("{}: missing tensor blk.0.attn_k_b.weight (deepseek2 files with only attn_kv_b are not supported; "
           "re-convert with a current convert_hf_to_gguf.py)", g.path());
    for (int il = 0; il < hp_.n_layer; ++il) {
      Layer L;
      if (hp_.q_lora_rank > 0) {
        L.wq_a = weight_2d(g, name(il, "attn_q_a"), hp_.q_lora_rank, n_embd);
        L.q_a_norm = vector_f32(g, name(il, "attn_q_a_norm"), hp_.q_lora_rank);
        L.wq_b = weight_2d(g, name(il, "attn_q_b"), nh * dq, hp_.q_lora_rank);
      } else {
        L.wq = weight_2d(g, name(il, "attn_q"), nh * dq, n_embd);
      }
      L.wkv_a = weight_2d(g, name(il, "attn_kv_a_mqa"), lora + rope, n_embd);
      L.kv_a_norm = vector_f32(g, name(il, "attn_kv_a_norm"), lora);
      L.wk_b = weight_3d(g, name(il, "attn_k_b"), nh, lora, nope);
      L.wv_b = weight_3d(g, name(il, "attn_v_b"), nh, vd, lora);
      L.wo = weight_2d(g, name(il, "attn_output"), n_embd, nh * vd);
      layers_.push_back(L);
    }
    rope_.n_rot = static_cast<int>(rope);
    rope_.neox = false;
    rope_.freq_base = hp_.rope_freq_base;
    rope_.freq_scale = hp_.rope_freq_scale;
    rope_.beta_fast = hp_.yarn_beta_fast;
    rope_.beta_slow = hp_.yarn_beta_slow;
    float mscale = 1.0f;
    if (hp_.rope_yarn) {
      // llama.cpp pre-scales: rope magnitude attn_factor / (1 + 0.1 ln(1/freq_scale)) cancels YaRN's
      // own factor; the softmax scale carries mscale^2 with mscale = 1 + log_mul * ln(1/freq_scale).
      rope_.ext_factor = 1.0f;
      rope_.n_ctx_orig = static_cast<int>(hp_.yarn_orig_ctx);
      rope_.attn_factor = 1.0f / (1.0f + 0.1f * std::log(1.0f / hp_.rope_freq_scale));
      mscale = 1.0f + hp_.yarn_log_mul * std::log(1.0f / hp_.rope_freq_scale);
    }
    kq_scale_ = mscale * mscale / std::sqrt(static_cast<float>(dq));
    load_common();
  }

 protected:
  int64_t cache_k_width() const override { return hp_.kv_lora_rank + hp_.qk_rope_dim; }
  int64_t cache_v_width() const override { return 0; }
  // q_, qa_, kv_, qabs_, nope_, tmp_, lat_, heads_, vout_ of attention().
  int64_t attention_floats_per_token() const override {
    const int64_t nh = hp_.n_head, nope = hp_.qk_nope_dim, rope = hp_.qk_rope_dim, lora = hp_.kv_lora_rank;
    const int64_t vd = hp_.v_head_dim_mla, kw = lora + rope;
    return nh * (nope + rope) + hp_.q_lora_rank + kw + nh * kw + nope + lora + nh * lora + nh * vd + vd;
  }

  void attention(int il, const float* x, int64_t n, KvCache& cache, float* out) override {
    const Layer& L = layers_[il];
    const int64_t nh = hp_.n_head, nope = hp_.qk_nope_dim, rope = hp_.qk_rope_dim;
    const int64_t lora = hp_.kv_lora_rank, vd = hp_.v_head_dim_mla, dq = nope + rope;
    const int64_t kw = lora + rope;  // absorbed key width per head (and the cache row)
    q_.resize(static_cast<size_t>(n * nh * dq));
    if (L.wq_a.valid()) {
      qa_.resize(static_cast<size_t>(n * hp_.q_lora_rank));
      lin_(L.wq_a, x, n, qa_.data());
      for (int64_t t = 0; t < n; ++t) {
        float* r = qa_.data() + t * hp_.q_lora_rank;
        cpu::rms_norm(r, L.q_a_norm, r, hp_.q_lora_rank, hp_.rms_eps);
      }
      lin_(L.wq_b, qa_.data(), n, q_.data());
    } else {
      lin_(L.wq, x, n, q_.data());
    }
    kv_.resize(static_cast<size_t>(n * kw));
    lin_(L.wkv_a, x, n, kv_.data());

    // Absorbed queries: per token and head [lora (q_nope through k_b) | rope (q_pe after RoPE)].
    qabs_.resize(static_cast<size_t>(n * nh * kw));
    nope_.resize(static_cast<size_t>(n * nope));
    tmp_.resize(static_cast<size_t>(n * lora));
    cs_.resize(static_cast<size_t>(rope));
    for (int64_t h = 0; h < nh; ++h) {
      for (int64_t t = 0; t < n; ++t)
        std::copy_n(q_.data() + (t * nh + h) * dq, nope, nope_.data() + t * nope);
      // ggml multiplies the non-contiguous q_nope view: vec_dot order for F32 weights.
      lin_(L.wk_b.at(h), nope_.data(), n, tmp_.data(), cpu::F32Path::kVecDot);
      for (int64_t t = 0; t < n; ++t) std::copy_n(tmp_.data() + t * lora, lora, qabs_.data() + (t * nh + h) * kw);
    }
    for (int64_t t = 0; t < n; ++t) {
      cpu::rope_cache(rope_, cache.n_past + t, cs_.data());
      for (int64_t h = 0; h < nh; ++h) {
        float* qpe = qabs_.data() + (t * nh + h) * kw + lora;
        std::copy_n(q_.data() + (t * nh + h) * dq + nope, rope, qpe);
        cpu::rope_apply(rope_, cs_.data(), qpe, 1, rope);
      }
      float* kvr = kv_.data() + t * kw;
      cpu::rms_norm(kvr, L.kv_a_norm, kvr, lora, hp_.rms_eps);
      cpu::rope_apply(rope_, cs_.data(), kvr + lora, 1, rope);
      std::copy_n(kvr, kw, cache.k[il].data() + (cache.n_past + t) * kw);
    }

    cpu::AttentionArgs a;
    a.q = qabs_.data();
    a.n_tokens = n;
    a.n_head = nh;
    a.n_head_kv = 1;
    a.d_k = kw;
    a.d_v = lora;
    a.k = cache.k[il].data();
    a.k_stride = kw;
    a.v = cache.k[il].data();  // values are the latent part of the cached key rows
    a.v_stride = kw;
    a.pos0 = cache.n_past;
    a.scale = kq_scale_;
    lat_.resize(static_cast<size_t>(n * nh * lora));
    a.out = lat_.data();
    run_attention(a, nh);

    heads_.resize(static_cast<size_t>(n * nh * vd));
    for (int64_t h = 0; h < nh; ++h) {
      for (int64_t t = 0; t < n; ++t) std::copy_n(lat_.data() + (t * nh + h) * lora, lora, tmp_.data() + t * lora);
      vout_.resize(static_cast<size_t>(n * vd));
      lin_(L.wv_b.at(h), tmp_.data(), n, vout_.data());
      for (int64_t t = 0; t < n; ++t) std::copy_n(vout_.data() + t * vd, vd, heads_.data() + (t * nh + h) * vd);
    }
    lin_(L.wo, heads_.data(), n, out);
  }

 private:
  struct Layer {
    Weight wq, wq_a, wq_b, wkv_a, wo;
    const float *q_a_norm = nullptr, *kv_a_norm = nullptr;
    StackedWeight wk_b, wv_b;
  };
  std::vector<Layer> layers_;
  cpu::RopeParams rope_;
  float kq_scale_ = 1.0f;
  std::vector<float> q_, qa_, kv_, qabs_, nope_, tmp_, cs_, lat_, heads_, vout_;
};

}  // namespace

std::unique_ptr<Model> make_deepseek2_model(const gguf::GgufModel& g, ModelHparams hp) {
  return std::make_unique<Deepseek2Model>(g, std::move(hp));
}

}  // namespace moetier::models
