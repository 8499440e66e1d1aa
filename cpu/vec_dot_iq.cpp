// Scalar reference dot products of IQ weight rows with prepared activations, in the canonical orders of
// vec_dot.hpp (ggml's generic ggml_vec_dot_iq*_q8_K / iq4_nl_q8_0 of ggml-quants.c). Integer sums are
// exact, so only the f32 steps below fix the result.
#include <cstdint>

#include "common/half.hpp"
#include "cpu/iq_decode.hpp"
#include "cpu/quant_blocks.hpp"
#include "cpu/vec_dot.hpp"

namespace moetier::cpu::detail {
namespace {

int dot16(const int8_t* w, const int8_t* a) {
  int s = 0;
  for (int j = 0; j < 16; ++j) s += w[j] * a[j];
  return s;
}

/// IQ2_XXS / IQ2_XS / IQ2_S / IQ3_XXS / IQ3_S: per super-block bsum = sum over halves of (2s + 1) * dot;
/// acc = acc + (dx * dy) * float(bsum); result = factor * acc (1/8 for IQ2, 1/4 for IQ3_XXS, 1 for IQ3_S).
template <typename Block>
float dot_signed_grid(const void* vw, const void* va, int64_t nb, float factor) {
  const auto* x = static_cast<const Block*>(vw);
  const auto* y = static_cast<const BlockQ8_K*>(va);
  iq::Sub32 sb;
  float acc = 0.0f;
  for (int64_t i = 0; i < nb; ++i) {
    int bsum = 0;
    for (int b = 0; b < 8; ++b) {
      iq::decode(x[i], b, sb);
      const int8_t* q = y[i].qs + 32 * b;
      bsum += (2 * sb.s[0] + 1) * dot16(sb.w, q) + (2 * sb.s[1] + 1) * dot16(sb.w + 16, q + 16);
    }
    acc = acc + (fp16_to_f32(x[i].d) * y[i].d) * static_cast<float>(bsum);
  }
  return factor == 1.0f ? acc : factor * acc;
}

/// IQ1_S / IQ1_M: sumi = sum (2s + 1) * dot(grid, q), sumd = sum (2s + 1) * (±1) * sum(q) per 8-group;
/// acc = acc + (dx * dy) * (float(sumi) + 0.125f * float(sumd)).
template <typename Block>
float dot_iq1(const void* vw, const void* va, int64_t nb) {
  const auto* x = static_cast<const Block*>(vw);
  const auto* y = static_cast<const BlockQ8_K*>(va);
  iq::Sub32 sb;
  float acc = 0.0f;
  for (int64_t i = 0; i < nb; ++i) {
    int sumi = 0, sumd = 0;
    for (int b = 0; b < 8; ++b) {
      iq::decode(x[i], b, sb);
      const int8_t* q = y[i].qs + 32 * b;
      for (int h = 0; h < 2; ++h) {
        int dot = 0, dsum = 0;
        for (int g = 2 * h; g < 2 * h + 2; ++g) {
          int qs = 0;
          for (int j = 8 * g; j < 8 * g + 8; ++j) {
            dot += sb.w[j] * q[j];
            qs += q[j];
          }
          dsum += sb.neg[g] ? -qs : qs;
        }
        sumi += (2 * sb.s[h] + 1) * dot;
        sumd += (2 * sb.s[h] + 1) * dsum;
      }
    }
    float d;
    if constexpr (requires { x[i].d; })
      d = fp16_to_f32(x[i].d);
    else
      d = fp16_to_f32(iq::iq1m_scale_bits(x[i]));
    acc = acc + (d * y[i].d) * (static_cast<float>(sumi) + 0.125f * static_cast<float>(sumd));
  }
  return acc;
}

/// IQ4_XS: per 32-sub-block, acc = acc + ((dx * dy) * float(ls - 32)) * float(dot).
float dot_iq4_xs(const void* vw, const void* va, int64_t nb) {
  const auto* x = static_cast<const BlockIQ4_XS*>(vw);
  const auto* y = static_cast<const BlockQ8_K*>(va);
  iq::Sub32 sb;
  float acc = 0.0f;
  for (int64_t i = 0; i < nb; ++i) {
    const float dxy = fp16_to_f32(x[i].d) * y[i].d;
    for (int b = 0; b < 8; ++b) {
      iq::decode(x[i], b, sb);
      const int8_t* q = y[i].qs + 32 * b;
      const int dot = dot16(sb.w, q) + dot16(sb.w + 16, q + 16);
      acc = acc + (dxy * static_cast<float>(sb.s[0] - 32)) * static_cast<float>(dot);
    }
  }
  return acc;
}

/// IQ4_NL x Q8_0: as Q4_0 (vec_dot.hpp): acc = acc + float(isum) * (dx * dy).
float dot_iq4_nl(const void* vw, const void* va, int64_t nb) {
  const auto* x = static_cast<const BlockIQ4_NL*>(vw);
  const auto* y = static_cast<const BlockQ8_0*>(va);
  int8_t w[32];
  float acc = 0.0f;
  for (int64_t i = 0; i < nb; ++i) {
    iq::nl_levels(x[i].qs, w);
    const int isum = dot16(w, y[i].qs) + dot16(w + 16, y[i].qs + 16);
    acc = acc + static_cast<float>(isum) * (fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d));
  }
  return acc;
}

}  // namespace

bool vec_dot_iq(GgmlType weight_type, const void* w, const void* act, int64_t n, float& out) {
  const int64_t nbk = n / kQK_K;
  switch (weight_type) {
    case GgmlType::IQ2_XXS: out = dot_signed_grid<BlockIQ2_XXS>(w, act, nbk, 0.125f); return true;
    case GgmlType::IQ2_XS: out = dot_signed_grid<BlockIQ2_XS>(w, act, nbk, 0.125f); return true;
    case GgmlType::IQ2_S: out = dot_signed_grid<BlockIQ2_S>(w, act, nbk, 0.125f); return true;
    case GgmlType::IQ3_XXS: out = dot_signed_grid<BlockIQ3_XXS>(w, act, nbk, 0.25f); return true;
    case GgmlType::IQ3_S: out = dot_signed_grid<BlockIQ3_S>(w, act, nbk, 1.0f); return true;
    case GgmlType::IQ1_S: out = dot_iq1<BlockIQ1_S>(w, act, nbk); return true;
    case GgmlType::IQ1_M: out = dot_iq1<BlockIQ1_M>(w, act, nbk); return true;
    case GgmlType::IQ4_XS: out = dot_iq4_xs(w, act, nbk); return true;
    case GgmlType::IQ4_NL: out = dot_iq4_nl(w, act, n / kQK4_NL); return true;
    default: return false;
  }
}

}  // namespace moetier::cpu::detail
