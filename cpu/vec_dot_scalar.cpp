// Scalar reference dot products in the canonical order documented in vec_dot.hpp.
#include <bit>
#include <cmath>
#include <cstring>

#include "common/error.hpp"
#include "common/half.hpp"
#include "cpu/ggml_math.hpp"
#include "cpu/quant_blocks.hpp"
#include "cpu/vec_dot.hpp"

namespace moetier::cpu {
namespace {

uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// ---- 32-blocks with Q8_0 activations: the weight's levels of block b as int8 ----
void levels(const BlockQ4_0& x, int8_t* w) {
  for (int j = 0; j < 16; ++j) {
    w[j] = static_cast<int8_t>((x.qs[j] & 0xF) - 8);
    w[j + 16] = static_cast<int8_t>((x.qs[j] >> 4) - 8);
  }
}
void levels(const BlockQ5_0& x, int8_t* w) {
  const uint32_t qh = load_u32(x.qh);
  for (int j = 0; j < 16; ++j) {
    w[j] = static_cast<int8_t>(((x.qs[j] & 0xF) | (((qh >> j) & 1) << 4)) - 16);
    w[j + 16] = static_cast<int8_t>(((x.qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16);
  }
}
void levels(const BlockMxfp4& x, int8_t* w) {
  for (int j = 0; j < 16; ++j) {
    w[j] = kMxfp4Values[x.qs[j] & 0xF];
    w[j + 16] = kMxfp4Values[x.qs[j] >> 4];
  }
}
void levels(const BlockQ4_1& x, int8_t* w) {
  for (int j = 0; j < 16; ++j) {
    w[j] = static_cast<int8_t>(x.qs[j] & 0xF);
    w[j + 16] = static_cast<int8_t>(x.qs[j] >> 4);
  }
}
void levels(const BlockQ5_1& x, int8_t* w) {
  const uint32_t qh = load_u32(x.qh);
  for (int j = 0; j < 16; ++j) {
    w[j] = static_cast<int8_t>((x.qs[j] & 0xF) | (((qh >> j) & 1) << 4));
    w[j + 16] = static_cast<int8_t>((x.qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
  }
}

float scale(const BlockQ8_0& x) { return fp16_to_f32(x.d); }
float scale(const BlockQ4_0& x) { return fp16_to_f32(x.d); }
float scale(const BlockQ5_0& x) { return fp16_to_f32(x.d); }
float scale(const BlockMxfp4& x) { return std::bit_cast<float>(e8m0_to_f32_half_bits(x.e)); }
float scale(const BlockQ4_1& x) { return fp16_to_f32(x.d); }
float scale(const BlockQ5_1& x) { return fp16_to_f32(x.d); }

int dot32(const int8_t* w, const int8_t* a) {
  int s = 0;
  for (int j = 0; j < 32; ++j) s += w[j] * a[j];
  return s;
}

template <typename Block>
float dot_q8_0_family(const void* vw, const void* va, int64_t nb) {
  const auto* x = static_cast<const Block*>(vw);
  const auto* y = static_cast<const BlockQ8_0*>(va);
  float acc = 0.0f;
  int8_t w[32];
  for (int64_t b = 0; b < nb; ++b) {
    levels(x[b], w);
    const int isum = dot32(w, y[b].qs);
    const float dxy = scale(x[b]) * fp16_to_f32(y[b].d);
    acc = acc + static_cast<float>(isum) * dxy;
  }
  return acc;
}

template <typename Block>
float dot_q8_1_family(const void* vw, const void* va, int64_t nb) {
  const auto* x = static_cast<const Block*>(vw);
  const auto* y = static_cast<const BlockQ8_1*>(va);
  float acc = 0.0f;
  int8_t w[32];
  for (int64_t b = 0; b < nb; ++b) {
    levels(x[b], w);
    const int isum = dot32(w, y[b].qs);
    const float dxy = scale(x[b]) * fp16_to_f32(y[b].d);
    const float t = static_cast<float>(isum) * dxy + fp16_to_f32(x[b].m) * fp16_to_f32(y[b].s);
    acc = acc + t;
  }
  return acc;
}

// Q8_0 x Q8_0 in ggml's x86 order (ggml_vec_dot_q8_0_q8_0 AVX2/AVX-512 and tinyBLAS_Q0_AVX alike): per
// block, 8 int32 lanes of 4 consecutive products (vpdpbusd / maddubs+madd), converted to f32 and
// accumulated with acc[l] = fma(dx * dy, lane_l, acc[l]); at the end the 8-lane tree
// (acc[k] + acc[k+4]), then (s[0] + s[2]) + (s[1] + s[3]).
float dot_q8_0_ggml(const void* vw, const void* va, int64_t nb) {
  const auto* x = static_cast<const BlockQ8_0*>(vw);
  const auto* y = static_cast<const BlockQ8_0*>(va);
  float acc[8] = {};
  for (int64_t b = 0; b < nb; ++b) {
    const float d = fp16_to_f32(x[b].d) * fp16_to_f32(y[b].d);
    for (int l = 0; l < 8; ++l) {
      int s = 0;
      for (int i = 0; i < 4; ++i) s += x[b].qs[4 * l + i] * y[b].qs[4 * l + i];
      acc[l] = std::fma(d, static_cast<float>(s), acc[l]);
    }
  }
  float s4[4];
  for (int k = 0; k < 4; ++k) s4[k] = acc[k] + acc[k + 4];
  const float lo = s4[0] + s4[2], hi = s4[1] + s4[3];
  return lo + hi;
}

// ---- K-quants with Q8_K activations ----
float dot_q2_k(const void* vw, const void* va, int64_t nb) {
  const auto* x = static_cast<const BlockQ2_K*>(vw);
  const auto* y = static_cast<const BlockQ8_K*>(va);
  float acc = 0.0f;
  for (int64_t b = 0; b < nb; ++b) {
    int isum = 0, msum = 0;
    for (int e = 0; e < kQK_K; ++e) {
      const int h = e / 128, s = (e / 32) % 4, l = e % 32;
      const int q = (x[b].qs[32 * h + l] >> (2 * s)) & 3;
      isum += (x[b].scales[e / 16] & 0xF) * q * y[b].qs[e];
    }
    for (int j = 0; j < 16; ++j) msum += (x[b].scales[j] >> 4) * y[b].bsums[j];
    const float t = (y[b].d * fp16_to_f32(x[b].d)) * static_cast<float>(isum) -
                    (y[b].d * fp16_to_f32(x[b].dmin)) * static_cast<float>(msum);
    acc = acc + t;
  }
  return acc;
}

float dot_q3_k(const void* vw, const void* va, int64_t nb) {
  const auto* x = static_cast<const BlockQ3_K*>(vw);
  const auto* y = static_cast<const BlockQ8_K*>(va);
  float acc = 0.0f;
  for (int64_t b = 0; b < nb; ++b) {
    int8_t sc[16];
    unpack_q3_k_scales(x[b].scales, sc);
    int isum = 0;
    for (int e = 0; e < kQK_K; ++e) {
      const int h = e / 128, s = (e / 32) % 4, l = e % 32;
      const int low = (x[b].qs[32 * h + l] >> (2 * s)) & 3;
      const int q = low - (((x[b].hmask[l] >> (4 * h + s)) & 1) ? 0 : 4);
      isum += sc[e / 16] * q * y[b].qs[e];
    }
    acc = acc + (y[b].d * fp16_to_f32(x[b].d)) * static_cast<float>(isum);
  }
  return acc;
}

template <bool kHasHigh, typename Block>
float dot_q45_k(const void* vw, const void* va, int64_t nb) {
  const auto* x = static_cast<const Block*>(vw);
  const auto* y = static_cast<const BlockQ8_K*>(va);
  float acc = 0.0f;
  for (int64_t b = 0; b < nb; ++b) {
    int isum = 0, msum = 0;
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      get_scale_min_k4(j, x[b].scales, sc, m);
      const int c = j / 2, half = j % 2;
      int sub = 0;
      for (int l = 0; l < 32; ++l) {
        int q = half ? (x[b].qs[32 * c + l] >> 4) : (x[b].qs[32 * c + l] & 0xF);
        if constexpr (kHasHigh) q |= ((x[b].qh[l] >> j) & 1) << 4;
        sub += q * y[b].qs[32 * j + l];
      }
      isum += sc * sub;
      msum += m * (y[b].bsums[2 * j] + y[b].bsums[2 * j + 1]);
    }
    const float t = (y[b].d * fp16_to_f32(x[b].d)) * static_cast<float>(isum) -
                    (y[b].d * fp16_to_f32(x[b].dmin)) * static_cast<float>(msum);
    acc = acc + t;
  }
  return acc;
}

float dot_q6_k(const void* vw, const void* va, int64_t nb) {
  const auto* x = static_cast<const BlockQ6_K*>(vw);
  const auto* y = static_cast<const BlockQ8_K*>(va);
  float acc = 0.0f;
  for (int64_t b = 0; b < nb; ++b) {
    int isum = 0;
    for (int e = 0; e < kQK_K; ++e) {
      const int h = e / 128, g = (e / 32) % 4, l = e % 32;  // g: which of the 4 groups of 32 in the half
      const uint8_t ql = x[b].ql[64 * h + 32 * (g % 2) + l];
      const int low = g < 2 ? (ql & 0xF) : (ql >> 4);
      const int high = (x[b].qh[32 * h + l] >> (2 * g)) & 3;
      isum += x[b].scales[e / 16] * ((low | (high << 4)) - 32) * y[b].qs[e];
    }
    acc = acc + (y[b].d * fp16_to_f32(x[b].d)) * static_cast<float>(isum);
  }
  return acc;
}

// ---- float weights: 16-lane canonical order ----
template <typename Load>
float dot_lanes16(int64_t n, const float* a, Load load_w) {
  float p[16] = {};
  for (int64_t i = 0; i < n; ++i) p[i % 16] = p[i % 16] + load_w(i) * a[i];
  float s8[8], s4[4];
  for (int k = 0; k < 8; ++k) s8[k] = p[k] + p[k + 8];
  for (int k = 0; k < 4; ++k) s4[k] = s8[k] + s8[k + 4];
  const float s2_0 = s4[0] + s4[2], s2_1 = s4[1] + s4[3];
  return s2_0 + s2_1;
}

}  // namespace

GgmlType vec_dot_type_for(GgmlType weight_type) {
  switch (weight_type) {
    case GgmlType::F32: return GgmlType::F32;
    case GgmlType::F16: return GgmlType::F16;
    case GgmlType::BF16: return GgmlType::BF16;
    case GgmlType::Q4_0: case GgmlType::Q5_0: case GgmlType::Q8_0: case GgmlType::MXFP4: case GgmlType::IQ4_NL:
      return GgmlType::Q8_0;
    case GgmlType::Q4_1: case GgmlType::Q5_1: return GgmlType::Q8_1;
    case GgmlType::Q2_K: case GgmlType::Q3_K: case GgmlType::Q4_K: case GgmlType::Q5_K: case GgmlType::Q6_K:
    case GgmlType::IQ2_XXS: case GgmlType::IQ2_XS: case GgmlType::IQ2_S: case GgmlType::IQ3_XXS:
    case GgmlType::IQ3_S: case GgmlType::IQ1_S: case GgmlType::IQ1_M: case GgmlType::IQ4_XS:
      return GgmlType::Q8_K;
    default: fail("CPU matmul: weight type {} is not supported", ggml_type_name(weight_type));
  }
}

bool can_matmul(GgmlType weight_type) {
  switch (weight_type) {
    case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16: case GgmlType::Q4_0: case GgmlType::Q5_0:
    case GgmlType::Q8_0: case GgmlType::MXFP4: case GgmlType::Q4_1: case GgmlType::Q5_1: case GgmlType::Q2_K:
    case GgmlType::Q3_K: case GgmlType::Q4_K: case GgmlType::Q5_K: case GgmlType::Q6_K:
    case GgmlType::IQ2_XXS: case GgmlType::IQ2_XS: case GgmlType::IQ2_S: case GgmlType::IQ3_XXS:
    case GgmlType::IQ3_S: case GgmlType::IQ1_S: case GgmlType::IQ1_M: case GgmlType::IQ4_NL: case GgmlType::IQ4_XS:
      return true;
    default:
      return false;
  }
}

int64_t matmul_block_size(GgmlType weight_type) { return ggml_type_info(weight_type).block_size; }

float vec_dot_scalar(GgmlType weight_type, const void* w, const void* act, int64_t n) {
  const int64_t nb32 = n / 32, nbk = n / kQK_K;
  switch (weight_type) {
    case GgmlType::Q8_0: return dot_q8_0_ggml(w, act, nb32);
    case GgmlType::Q4_0: return dot_q8_0_family<BlockQ4_0>(w, act, nb32);
    case GgmlType::Q5_0: return dot_q8_0_family<BlockQ5_0>(w, act, nb32);
    case GgmlType::MXFP4: return dot_q8_0_family<BlockMxfp4>(w, act, nb32);
    case GgmlType::Q4_1: return dot_q8_1_family<BlockQ4_1>(w, act, nb32);
    case GgmlType::Q5_1: return dot_q8_1_family<BlockQ5_1>(w, act, nb32);
    case GgmlType::Q2_K: return dot_q2_k(w, act, nbk);
    case GgmlType::Q3_K: return dot_q3_k(w, act, nbk);
    case GgmlType::Q4_K: return dot_q45_k<false, BlockQ4_K>(w, act, nbk);
    case GgmlType::Q5_K: return dot_q45_k<true, BlockQ5_K>(w, act, nbk);
    case GgmlType::Q6_K: return dot_q6_k(w, act, nbk);
    case GgmlType::F32:  // ggml_vec_dot_f32's order (ggml_math.hpp)
      return ggml_dot_f32(F32DotOrder::kVecDot, static_cast<const float*>(w), static_cast<const float*>(act), n);
    case GgmlType::F16: {
      const auto* wh = static_cast<const uint16_t*>(w);
      return dot_lanes16(n, static_cast<const float*>(act), [wh](int64_t i) { return fp16_to_f32(wh[i]); });
    }
    case GgmlType::BF16: {
      const auto* wb = static_cast<const uint16_t*>(w);
      return dot_lanes16(n, static_cast<const float*>(act), [wb](int64_t i) { return bf16_to_f32(wb[i]); });
    }
    default: {
      float out;
      if (detail::vec_dot_iq(weight_type, w, act, n, out)) return out;
    }
      fail("vec_dot_scalar: weight type {} is not supported", ggml_type_name(weight_type));
  }
}

}  // namespace moetier::cpu
