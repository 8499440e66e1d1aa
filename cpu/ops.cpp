#include "cpu/ops.hpp"

#include <algorithm>
#include <cstdint>
#include <cmath>
#include <limits>

#include "cpu/ggml_math.hpp"

namespace moetier::cpu {

void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  const float scale = 1.0f / std::sqrt(mean + eps);
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i] * scale;
    y[i] = w ? v * w[i] : v;
  }
}

namespace {

float yarn_corr_dim(int n_dims, int n_ctx_orig, float n_rot, float base) {
  return static_cast<float>(n_dims) * std::log(static_cast<float>(n_ctx_orig) / (n_rot * 2.0f * static_cast<float>(M_PI))) /
         (2.0f * std::log(base));
}

float yarn_ramp(float low, float high, int i0) {
  const float y = (static_cast<float>(i0 / 2) - low) / std::max(0.001f, high - low);
  return 1.0f - std::min(1.0f, std::max(0.0f, y));
}

}  // namespace

void rope_cache(const RopeParams& p, int64_t pos, float* cs) {
  const float theta_scale = std::pow(p.freq_base, -2.0f / static_cast<float>(p.n_rot));
  float corr0 = 0, corr1 = 0;
  if (p.ext_factor != 0.0f) {
    const float start = std::floor(yarn_corr_dim(p.n_rot, p.n_ctx_orig, p.beta_fast, p.freq_base));
    const float end = std::ceil(yarn_corr_dim(p.n_rot, p.n_ctx_orig, p.beta_slow, p.freq_base));
    corr0 = std::max(0.0f, start);
    corr1 = std::min(static_cast<float>(p.n_rot - 1), end);
  }
  float theta = static_cast<float>(pos);
  for (int i0 = 0; i0 < p.n_rot; i0 += 2) {
    const float theta_extrap = theta;
    const float theta_interp = p.freq_scale * theta_extrap;
    float t = theta_interp;
    float mscale = p.attn_factor;
    if (p.ext_factor != 0.0f) {
      // ggml's rope_yarn as GCC contracts it: the first product of each a*b + c*d is fused.
      const float ramp_mix = yarn_ramp(corr0, corr1, i0) * p.ext_factor;
      t = std::fma(theta_interp, 1 - ramp_mix, theta_extrap * ramp_mix);
      mscale *= std::fma(0.1f, std::log(1.0f / p.freq_scale), 1.0f);
    }
    cs[i0] = std::cos(t) * mscale;
    cs[i0 + 1] = std::sin(t) * mscale;
    theta *= theta_scale;
  }
}

void rope_apply(const RopeParams& p, const float* cs, float* x, int64_t n_heads, int64_t head_dim) {
  const int n = p.n_rot;
  for (int64_t h = 0; h < n_heads; ++h) {
    float* v = x + h * head_dim;
    for (int i0 = 0; i0 < n; i0 += 2) {
      const float c = cs[i0], s = cs[i0 + 1];
      const int a = p.neox ? i0 / 2 : i0;
      const int b = p.neox ? i0 / 2 + n / 2 : i0 + 1;
      const float x0 = v[a], x1 = v[b];
      // ggml rotate_pairs (x0 c - x1 s, x0 s + x1 c) with GCC's contraction of the first product.
      v[a] = std::fma(x0, c, -(x1 * s));
      v[b] = std::fma(x0, s, x1 * c);
    }
  }
}

void softmax(float* x, int64_t n) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  const double sum = ggml_softmax_exp_sum(x, x, n, mx);
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

float silu(float x) { return ggml_silu_scalar(x); }

void swiglu(const float* g, const float* u, float* h, int64_t n) { ggml_swiglu(g, u, h, n); }

void attention(const AttentionArgs& a, int64_t h_begin, int64_t h_end, float* scratch) {
  const int64_t group = a.n_head / a.n_head_kv;
  const int64_t row = a.pos0 + a.n_tokens;  // scratch row per head of a group
  // after the score rows: 64-byte aligned room for one packed 16-column block of V (ggml_weighted_sum_heads)
  float* pack = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(scratch + group * row) + 63) / 64 * 64);
  // llama.cpp's non-flash path: kq = mul_mat(k, q) with q not contiguous -> ggml_vec_dot_f32 per score;
  // soft_max_ext over the 256-padded KV row; kqv = mul_mat(v^T, kq) -> tinyBLAS for batches of >= 2
  // tokens (when d_v % 4 == 0), else ggml_vec_dot_f32 over the padded row. The heads of one KV group are
  // computed together (scores, then value sums), so their shared K and V rows are read once per group.
  const F32DotOrder kqv_order =
      a.n_tokens >= 2 && a.d_v % 4 == 0 ? F32DotOrder::kTiled : F32DotOrder::kVecDot;
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  for (int64_t t = 0; t < a.n_tokens; ++t) {
    const int64_t pos = a.pos0 + t;
    const int64_t j0 = a.window > 0 ? std::max<int64_t>(0, pos - a.window + 1) : 0;
    for (int64_t h0 = h_begin; h0 < h_end;) {
      const int64_t g = h0 / group;
      const int64_t nh = std::min(h_end, (g + 1) * group) - h0;
      ggml_dot_f32_keys(a.q + (t * a.n_head + h0) * a.d_k, a.d_k, nh, a.k + j0 * a.k_stride + g * a.d_k, a.k_stride,
                        pos + 1 - j0, a.d_k, scratch + j0, row);
      for (int64_t i = 0; i < nh; ++i) {
        float* s = scratch + i * row;
        float mx = kNegInf;
        for (int64_t j = 0; j < j0; ++j) s[j] = kNegInf;
        for (int64_t j = j0; j <= pos; ++j) {
          s[j] = s[j] * a.scale;
          mx = std::max(mx, s[j]);
        }
        if (a.sinks) mx = std::max(mx, a.sinks[h0 + i]);
        double sum = ggml_softmax_exp_sum_padded(s, s, pos + 1, mx);
        if (a.sinks) sum += static_cast<double>(std::exp(a.sinks[h0 + i] - mx));
        const float inv = static_cast<float>(1.0 / sum);
        for (int64_t j = 0; j <= pos; ++j) s[j] *= inv;
      }
      ggml_weighted_sum_heads(kqv_order, scratch, row, nh, pos + 1, a.v + g * a.d_v, a.v_stride, a.d_v,
                              a.out + (t * a.n_head + h0) * a.d_v, a.d_v, pack);
      h0 += nh;
    }
  }
}

}  // namespace moetier::cpu
