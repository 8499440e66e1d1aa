#include "runtime/models/gqa_model.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "cpu/ops.hpp"
#include "runtime/models/weights.hpp"

namespace moetier::models {

namespace {
void add_bias(float* y, const float* b, int64_t n, int64_t width) {
  if (!b) return;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < width; ++i) y[t * width + i] += b[i];
}
}  // namespace

GqaModel::GqaLayer GqaModel::bind_projections(int il) const {
  const int64_t n_embd = hp_.n_embd, dk = hp_.head_dim_k, dv = hp_.head_dim_v;
  const auto name = [il](const char* n) { return fmt::format("blk.{}.{}.weight", il, n); };
  GqaLayer L;
  L.wq = weight_2d(gguf_, name("attn_q"), hp_.n_head * dk, n_embd);
  L.wk = weight_2d(gguf_, name("attn_k"), hp_.n_head_kv * dk, n_embd);
  L.wv = weight_2d(gguf_, name("attn_v"), hp_.n_head_kv * dv, n_embd);
  L.wo = weight_2d(gguf_, name("attn_output"), n_embd, hp_.n_head * dv);
  return L;
}

void GqaModel::set_rope(bool neox) {
  rope_.n_rot = static_cast<int>(hp_.n_rot);
  rope_.neox = neox;
  rope_.freq_base = hp_.rope_freq_base;
  rope_.freq_scale = hp_.rope_freq_scale;
  rope_.ext_factor = hp_.rope_yarn ? 1.0f : 0.0f;
  rope_.n_ctx_orig = static_cast<int>(hp_.rope_yarn ? hp_.yarn_orig_ctx : hp_.n_ctx_train);
  rope_.beta_fast = hp_.yarn_beta_fast;
  rope_.beta_slow = hp_.yarn_beta_slow;
}

void GqaModel::attention(int il, const float* x, int64_t n, KvCache& cache, float* out) {
  const AttnSeq one{0, n, &cache};
  attention_batch(il, x, std::span<const AttnSeq>(&one, 1), n, out);
}

void GqaModel::attention_batch(int il, const float* x, std::span<const AttnSeq> seqs, int64_t n, float* out) {
  const GqaLayer& L = attn_layers_[static_cast<size_t>(il)];
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
          for (int64_t h = 0; h < hp_.n_head_kv; ++h) cpu::rms_norm(k + h * dk, L.k_norm, k + h * dk, dk, hp_.rms_eps);
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
    a.window = L.window;
    a.sinks = L.sinks;
    a.out = attn_.data() + s.row0 * hp_.n_head * dv;
    run_attention(a, hp_.n_head);
  }
  lin_(L.wo, attn_.data(), n, out);
  add_bias(out, L.bo, n, hp_.n_embd);
}

}  // namespace moetier::models
