// Element-wise and attention operators on f32 activations, reproducing ggml's x86 CPU backend bit for bit
// (AVX-512 build; operation orders in ggml_math.hpp): RMSNorm (ggml_rms_norm: sum of squares in double),
// RoPE (ggml_rope_ext: NORM and NEOX, YaRN; GCC's fma contraction of the rotation), softmax
// (ggml_soft_max: SIMD exp polynomial, 16-lane block sums added in double), SiLU/SwiGLU (ggml_v_silu), and
// causal attention with GQA over an f32 KV cache (llama.cpp's non-flash path: softmax(q·k * scale + mask)
// · v with ggml's dot-product orders), optional sliding window and attention sinks (gpt-oss).
// Single-threaded; callers split heads or tokens over workers.
#pragma once

#include <cstdint>

namespace moetier::cpu {

/// y[i] = x[i] / sqrt(mean(x^2) + eps) * (w ? w[i] : 1); x, y: [n] f32 (may alias). ggml_rms_norm + MUL.
void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps);

/// Parameters of ggml_rope_ext (mode NORM = adjacent pairs, NEOX = halves) incl. YaRN.
struct RopeParams {
  int n_rot = 0;               // rotated dimensions (<= head_dim); the rest is copied
  bool neox = false;
  float freq_base = 10000.0f;
  float freq_scale = 1.0f;     // 1 / scaling factor
  float ext_factor = 0.0f;     // YaRN extrapolation mix (1 with YaRN, 0 otherwise)
  float attn_factor = 1.0f;    // magnitude scale of cos/sin
  float beta_fast = 32.0f, beta_slow = 1.0f;
  int n_ctx_orig = 0;          // YaRN original context
};

/// cos/sin table for one position: cs[i0] = cos, cs[i0 + 1] = sin for i0 = 0, 2, ..., n_rot - 2
/// (ggml_rope_cache_init with rope_yarn; YaRN's mix and magnitude with ggml's fused multiply-adds).
/// cs: [n_rot] f32 (written).
void rope_cache(const RopeParams& p, int64_t pos, float* cs);

/// Rotates x: [n_heads, head_dim] f32 in place with the table of rope_cache:
/// (x0, x1) -> (fma(x0, c, -(x1 s)), fma(x0, s, x1 c)), ggml's rotate_pairs as GCC contracts it.
void rope_apply(const RopeParams& p, const float* cs, float* x, int64_t n_heads, int64_t head_dim);

/// In-place softmax of x: [n] f32 (ggml_soft_max without mask / scale): max, ggml_softmax_exp_sum,
/// then x[i] *= float(1 / sum).
void softmax(float* x, int64_t n);

/// silu(x) = x / (1 + expf(-x)) (ggml_silu_f32, the scalar form).
float silu(float x);

/// h[i] = silu(g[i]) * u[i]; g, u, h: [n] f32 (h may alias g). ggml_swiglu_split / ggml_vec_swiglu_f32
/// (16-element blocks through the SIMD exp, the n % 16 tail through expf; see ggml_swiglu).
void swiglu(const float* g, const float* u, float* h, int64_t n);

/// Causal multi-head attention with grouped KV heads for a batch of query tokens.
///   q:   [n_tokens, n_head, d_k] f32 (read), query token t sits at position pos0 + t
///   k:   key row of cache position j, KV head g at k + j * k_stride + g * d_k (f32, read)
///   v:   value row of cache position j, KV head g at v + j * v_stride + g * d_v (f32, read)
///   out: [n_tokens, n_head, d_v] f32 (written)
/// Query head h reads KV head h / (n_head / n_head_kv). Keys j <= pos are visible (and, with
/// window > 0, only j > pos - window). sinks: [n_head] extra logits in each softmax denominator
/// (gpt-oss) or nullptr. scratch: [attention_scratch_floats(a)] f32. Heads [h_begin, h_end) only.
/// Arithmetic as llama.cpp (F32 cache, flash attention off, KV view padded to 256 cells): scores
/// q·k in ggml_vec_dot_f32 order, times scale, softmax as ggml_soft_max_ext over the padded row, values
/// summed in tinyBLAS order when n_tokens >= 2 and d_v % 4 == 0, else ggml_vec_dot_f32 order
/// (ggml_weighted_sum). So a batch and token-by-token decoding may differ in the last bit, as in ggml.
struct AttentionArgs {
  const float* q = nullptr;
  int64_t n_tokens = 0, n_head = 0, n_head_kv = 0, d_k = 0, d_v = 0;
  const float* k = nullptr;
  int64_t k_stride = 0;
  const float* v = nullptr;
  int64_t v_stride = 0;
  int64_t pos0 = 0;
  float scale = 1.0f;
  int64_t window = 0;
  const float* sinks = nullptr;
  float* out = nullptr;
};
void attention(const AttentionArgs& a, int64_t h_begin, int64_t h_end, float* scratch);
/// Floats of attention()'s scratch: one score row of pos0 + n_tokens per query head of a KV group, then a
/// 16-column block of V over those positions (plus 16 floats of alignment).
inline int64_t attention_scratch_floats(const AttentionArgs& a) {
  return (a.n_head / a.n_head_kv + 16) * (a.pos0 + a.n_tokens) + 16;
}

}  // namespace moetier::cpu
