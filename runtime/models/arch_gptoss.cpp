// gpt-oss (gpt-oss-20b, gpt-oss-120b; llama.cpp LLM_ARCH_OPENAI_MOE): grouped-query attention with
// q/k/v/o biases, a learned per-head sink logit in every softmax denominator (attn_sinks), sliding-window
// attention (attention.sliding_window positions) on the even layers 0, 2, 4, ... and full causal attention
// on the odd ones, NEOX RoPE with YaRN (ggml's magnitude 1 + 0.1 ln(factor), no extra log multiplier on the
// softmax scale, which stays 1 / sqrt(head_dim)). The FFN side is shared Model code configured here:
// post_attention_norm as the FFN norm (model.cpp), router with bias and a softmax over the chosen top-k
// logits (Gating::SoftmaxWeight, hparams.cpp), expert biases and the clamped SwiGLU
// (FfnAct::SwiGLUClampedOss: x = min(gate, 7), y = clamp(up, -7, 7), x * sigmoid(1.702 x) * (y + 1)).
// Source: llama.cpp / ik_llama.cpp graph for "gpt-oss" (build_openai_moe: sliding_window_pattern 2,
// is_sliding = il % 2 < 1; SWA mask pos - j >= n_swa); openai/gpt-oss model.py (AttentionBlock sinks,
// sliding_window on even layers, swiglu alpha 1.702 limit 7).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "common/error.hpp"
#include "cpu/ops.hpp"
#include "runtime/models/arch_factories.hpp"

namespace moetier::models {
namespace {

class GptOssModel final : public Model {
 public:
  GptOssModel(const gguf::GgufModel& g, ModelHparams hp) : Model(g, std::move(hp)) {
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
      // llama.cpp requires all four biases and the sinks for gpt-oss.
      L.bq = vector_f32(g, bias(il, "attn_q"), nq);
      L.bk = vector_f32(g, bias(il, "attn_k"), nk);
      L.bv = vector_f32(g, bias(il, "attn_v"), nv);
      L.bo = vector_f32(g, bias(il, "attn_output"), n_embd);
      L.sinks = vector_f32(g, name(il, "attn_sinks"), hp_.n_head);
      L.window = il % 2 == 0 ? hp_.sliding_window : 0;
      layers_.push_back(L);
    }
    rope_.n_rot = static_cast<int>(hp_.n_rot);
    rope_.neox = true;
    rope_.freq_base = hp_.rope_freq_base;
    rope_.freq_scale = hp_.rope_freq_scale;
    rope_.ext_factor = hp_.rope_yarn ? 1.0f : 0.0f;
    rope_.n_ctx_orig = static_cast<int>(hp_.rope_yarn ? hp_.yarn_orig_ctx : hp_.n_ctx_train);
    rope_.beta_fast = hp_.yarn_beta_fast;
    rope_.beta_slow = hp_.yarn_beta_slow;
    ffn_act_ = FfnAct::SwiGLUClampedOss;
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
    for (int64_t t = 0; t < n; ++t) {
      float* q = q_.data() + t * nq;
      float* k = k_.data() + t * nk;
      cpu::rope_cache(rope_, cache.n_past + t, cs_.data());
      cpu::rope_apply(rope_, cs_.data(), q, hp_.n_head, dk);
      cpu::rope_apply(rope_, cs_.data(), k, hp_.n_head_kv, dk);
      std::copy_n(k, nk, cache.k[il].data() + (cache.n_past + t) * nk);
      std::copy_n(v_.data() + t * nv, nv, cache.v[il].data() + (cache.n_past + t) * nv);
    }
    cpu::AttentionArgs a;
    a.q = q_.data();
    a.n_tokens = n;
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
    a.window = L.window;
    a.sinks = L.sinks;
    attn_.resize(static_cast<size_t>(n * hp_.n_head * dv));
    a.out = attn_.data();
    run_attention(a, hp_.n_head);
    lin_(L.wo, attn_.data(), n, out);
    add_bias(out, L.bo, n, hp_.n_embd);
  }

 private:
  struct Layer {
    Weight wq, wk, wv, wo;
    const float *bq = nullptr, *bk = nullptr, *bv = nullptr, *bo = nullptr;
    const float* sinks = nullptr;  // [n_head]
    int64_t window = 0;            // 0: full causal attention
  };
  static void add_bias(float* y, const float* b, int64_t n, int64_t width) {
    for (int64_t t = 0; t < n; ++t)
      for (int64_t i = 0; i < width; ++i) y[t * width + i] += b[i];
  }
  std::vector<Layer> layers_;
  cpu::RopeParams rope_;
  std::vector<float> q_, k_, v_, cs_, attn_;
};

}  // namespace

std::unique_ptr<Model> make_gptoss_model(const gguf::GgufModel& g, ModelHparams hp) {
  return std::make_unique<GptOssModel>(g, std::move(hp));
}

}  // namespace moetier::models
