// Row dequantisers (ggml formats -> f32) and the 32-element-block reference quantizers.
// Formulas and evaluation order follow ggml-quants.c (read, not copied): every product and sum below is
// rounded separately (cpu/ is built with -ffp-contract=off), as ggml-base is built without FMA.
#include "cpu/dequant.hpp"

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "common/error.hpp"
#include "common/half.hpp"
#include "cpu/cpu_features.hpp"
#include "cpu/quant_blocks.hpp"

namespace moetier::cpu {
namespace {

template <typename Block>
const Block* blocks(const void* p) {
  return static_cast<const Block*>(p);
}

float e8m0_half(uint8_t e) { return std::bit_cast<float>(e8m0_to_f32_half_bits(e)); }

}  // namespace

namespace detail {

void dequant_q4_0(const BlockQ4_0* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK4_0) {
    const float d = fp16_to_f32(x[i].d);
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      y[j] = static_cast<float>((x[i].qs[j] & 0xF) - 8) * d;
      y[j + kQK4_0 / 2] = static_cast<float>((x[i].qs[j] >> 4) - 8) * d;
    }
  }
}

}  // namespace detail

namespace {

void dequant_q4_1(const BlockQ4_1* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK4_1) {
    const float d = fp16_to_f32(x[i].d);
    const float m = fp16_to_f32(x[i].m);
    for (int j = 0; j < kQK4_1 / 2; ++j) {
      y[j] = static_cast<float>(x[i].qs[j] & 0xF) * d + m;
      y[j + kQK4_1 / 2] = static_cast<float>(x[i].qs[j] >> 4) * d + m;
    }
  }
}

uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

}  // namespace

namespace detail {

void dequant_q5_0(const BlockQ5_0* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK5_0) {
    const float d = fp16_to_f32(x[i].d);
    const uint32_t qh = load_u32(x[i].qh);
    for (int j = 0; j < kQK5_0 / 2; ++j) {
      const int hi0 = static_cast<int>((qh >> j) & 1) << 4;
      const int hi1 = static_cast<int>((qh >> (j + 16)) & 1) << 4;
      y[j] = static_cast<float>(((x[i].qs[j] & 0xF) | hi0) - 16) * d;
      y[j + kQK5_0 / 2] = static_cast<float>(((x[i].qs[j] >> 4) | hi1) - 16) * d;
    }
  }
}

}  // namespace detail

namespace {

void dequant_q5_1(const BlockQ5_1* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK5_1) {
    const float d = fp16_to_f32(x[i].d);
    const float m = fp16_to_f32(x[i].m);
    const uint32_t qh = load_u32(x[i].qh);
    for (int j = 0; j < kQK5_1 / 2; ++j) {
      const int hi0 = static_cast<int>((qh >> j) & 1) << 4;
      const int hi1 = static_cast<int>((qh >> (j + 16)) & 1) << 4;
      y[j] = static_cast<float>((x[i].qs[j] & 0xF) | hi0) * d + m;
      y[j + kQK5_1 / 2] = static_cast<float>((x[i].qs[j] >> 4) | hi1) * d + m;
    }
  }
}

}  // namespace

namespace detail {

void dequant_q8_0(const BlockQ8_0* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK8_0) {
    const float d = fp16_to_f32(x[i].d);
    for (int j = 0; j < kQK8_0; ++j) y[j] = static_cast<float>(x[i].qs[j]) * d;
  }
}

}  // namespace detail

namespace {

void dequant_mxfp4(const BlockMxfp4* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQKMxfp4) {
    const float d = e8m0_half(x[i].e);
    for (int j = 0; j < kQKMxfp4 / 2; ++j) {
      y[j] = static_cast<float>(kMxfp4Values[x[i].qs[j] & 0xF]) * d;
      y[j + kQKMxfp4 / 2] = static_cast<float>(kMxfp4Values[x[i].qs[j] >> 4]) * d;
    }
  }
}

void dequant_q2_k(const BlockQ2_K* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_f32(x[i].d);
    const float dmin = fp16_to_f32(x[i].dmin);
    for (int h = 0; h < 2; ++h) {
      const uint8_t* q = x[i].qs + 32 * h;
      for (int s = 0; s < 4; ++s) {
        for (int half = 0; half < 2; ++half) {
          const uint8_t sc = x[i].scales[8 * h + 2 * s + half];
          const float dl = d * static_cast<float>(sc & 0xF);
          const float ml = dmin * static_cast<float>(sc >> 4);
          for (int l = 16 * half; l < 16 * half + 16; ++l)
            *y++ = dl * static_cast<float>((q[l] >> (2 * s)) & 3) - ml;
        }
      }
    }
  }
}

void dequant_q3_k(const BlockQ3_K* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_f32(x[i].d);
    int8_t sc[16];
    unpack_q3_k_scales(x[i].scales, sc);
    for (int h = 0; h < 2; ++h) {
      const uint8_t* q = x[i].qs + 32 * h;
      for (int s = 0; s < 4; ++s) {
        const uint8_t mask = static_cast<uint8_t>(1u << (4 * h + s));
        for (int half = 0; half < 2; ++half) {
          const float dl = d * static_cast<float>(sc[8 * h + 2 * s + half]);
          for (int l = 16 * half; l < 16 * half + 16; ++l) {
            const int v = ((q[l] >> (2 * s)) & 3) - ((x[i].hmask[l] & mask) ? 0 : 4);
            *y++ = dl * static_cast<float>(v);
          }
        }
      }
    }
  }
}

// Q4_K and Q5_K share the scale layout; `qh` is null for Q4_K.
void dequant_q45_k(uint16_t d16, uint16_t dmin16, const uint8_t* scales, const uint8_t* qs, const uint8_t* qh,
                   float* y) {
  const float d = fp16_to_f32(d16);
  const float dmin = fp16_to_f32(dmin16);
  for (int c = 0; c < 4; ++c) {
    for (int half = 0; half < 2; ++half) {
      uint8_t sc, m;
      get_scale_min_k4(2 * c + half, scales, sc, m);
      const float dl = d * static_cast<float>(sc);
      const float ml = dmin * static_cast<float>(m);
      for (int l = 0; l < 32; ++l) {
        int v = half ? (qs[32 * c + l] >> 4) : (qs[32 * c + l] & 0xF);
        if (qh && (qh[l] >> (2 * c + half)) & 1) v += 16;
        *y++ = dl * static_cast<float>(v) - ml;
      }
    }
  }
}

void dequant_q6_k(const BlockQ6_K* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK_K) {
    const float d = fp16_to_f32(x[i].d);
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = x[i].ql + 64 * h;
      const uint8_t* qh = x[i].qh + 32 * h;
      const int8_t* sc = x[i].scales + 8 * h;
      float* yh = y + 128 * h;
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        yh[l] = d * static_cast<float>(sc[is]) * static_cast<float>(q1);
        yh[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
        yh[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
        yh[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
      }
    }
  }
}

// ---- 32-element reference quantizers (ggml's quantize_row_*_ref semantics) ----

// Largest |x| of a block and the signed value it belongs to (first one on ties).
void abs_max(const float* x, int n, float& amax, float& max) {
  amax = 0.0f;
  max = 0.0f;
  for (int j = 0; j < n; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
}

void quant_q4_0(const float* x, BlockQ4_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK4_0) {
    float amax, max;
    abs_max(x, kQK4_0, amax, max);
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = f32_to_fp16(d);
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      // (int8_t)(v + 8.5f) truncates toward zero; v*id >= -8 up to rounding, so the sum is >= 0.
      const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>(x[j] * id + 8.5f)));
      const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>(x[j + 16] * id + 8.5f)));
      y[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void min_max(const float* x, int n, float& min, float& max) {
  min = FLT_MAX;
  max = -FLT_MAX;
  for (int j = 0; j < n; ++j) {
    min = std::min(min, x[j]);
    max = std::max(max, x[j]);
  }
}

void quant_q4_1(const float* x, BlockQ4_1* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK4_1) {
    float min, max;
    min_max(x, kQK4_1, min, max);
    const float d = (max - min) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = f32_to_fp16(d);
    y[i].m = f32_to_fp16(min);
    for (int j = 0; j < kQK4_1 / 2; ++j) {
      const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>((x[j] - min) * id + 0.5f)));
      const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>((x[j + 16] - min) * id + 0.5f)));
      y[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void quant_q5_0(const float* x, BlockQ5_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK5_0) {
    float amax, max;
    abs_max(x, kQK5_0, amax, max);
    const float d = max / -16.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = f32_to_fp16(d);
    uint32_t qh = 0;
    for (int j = 0; j < kQK5_0 / 2; ++j) {
      const int q0 = std::min(31, static_cast<int>(static_cast<int8_t>(x[j] * id + 16.5f)));
      const int q1 = std::min(31, static_cast<int>(static_cast<int8_t>(x[j + 16] * id + 16.5f)));
      y[i].qs[j] = static_cast<uint8_t>((q0 & 0xF) | ((q1 & 0xF) << 4));
      qh |= static_cast<uint32_t>((q0 >> 4) & 1) << j;
      qh |= static_cast<uint32_t>((q1 >> 4) & 1) << (j + 16);
    }
    std::memcpy(y[i].qh, &qh, 4);
  }
}

void quant_q5_1(const float* x, BlockQ5_1* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK5_1) {
    float min, max;
    min_max(x, kQK5_1, min, max);
    const float d = (max - min) / 31.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = f32_to_fp16(d);
    y[i].m = f32_to_fp16(min);
    uint32_t qh = 0;
    for (int j = 0; j < kQK5_1 / 2; ++j) {
      const int q0 = static_cast<uint8_t>((x[j] - min) * id + 0.5f);
      const int q1 = static_cast<uint8_t>((x[j + 16] - min) * id + 0.5f);
      y[i].qs[j] = static_cast<uint8_t>((q0 & 0xF) | ((q1 & 0xF) << 4));
      qh |= static_cast<uint32_t>((q0 >> 4) & 1) << j;
      qh |= static_cast<uint32_t>((q1 >> 4) & 1) << (j + 16);
    }
    std::memcpy(y[i].qh, &qh, 4);
  }
}

void quant_q8_0(const float* x, BlockQ8_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK8_0) {
    float amax = 0.0f;
    for (int j = 0; j < kQK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = f32_to_fp16(d);
    for (int j = 0; j < kQK8_0; ++j) y[i].qs[j] = static_cast<int8_t>(std::round(x[j] * id));  // half away
  }
}

// Index of the doubled e2m1 value nearest to x / d (first one on ties), as ggml's best_index_mxfp4.
int mxfp4_best_index(float x, float d) {
  int best = 0;
  float best_err = std::fabs(static_cast<float>(kMxfp4Values[0]) * d - x);
  for (int k = 1; k < 16; ++k) {
    const float err = std::fabs(static_cast<float>(kMxfp4Values[k]) * d - x);
    if (err < best_err) {
      best = k;
      best_err = err;
    }
  }
  return best;
}

void quant_mxfp4(const float* x, BlockMxfp4* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQKMxfp4) {
    float amax = 0.0f;
    for (int j = 0; j < kQKMxfp4; ++j) amax = std::max(amax, std::fabs(x[j]));
    // Shared exponent as ggml: e = floor(log2(amax)) - 2 + 127, so amax / 2^(e-127) lies in [4, 8) and the
    // largest e2m1 magnitude (6) lands near it. Clamped to the e8m0 range (ggml leaves that undefined).
    int e = 0;
    if (amax > 0.0f) e = std::clamp(static_cast<int>(std::floor(std::log2(amax))) - 2 + 127, 0, 255);
    y[i].e = static_cast<uint8_t>(e);
    const float d = e8m0_half(static_cast<uint8_t>(e));
    for (int j = 0; j < kQKMxfp4 / 2; ++j)
      y[i].qs[j] = static_cast<uint8_t>(mxfp4_best_index(x[j], d) | (mxfp4_best_index(x[j + 16], d) << 4));
  }
}

void check_row(GgmlType type, int64_t n, const char* what) {
  const auto& info = ggml_type_info(type);
  if (n < 0 || n % info.block_size != 0)
    fail("{}: row of {} elements is not a multiple of the {} block size {}", what, n, info.name, info.block_size);
}

}  // namespace

bool can_dequantize(GgmlType type) {
  switch (type) {
    case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16: case GgmlType::Q4_0: case GgmlType::Q4_1:
    case GgmlType::Q5_0: case GgmlType::Q5_1: case GgmlType::Q8_0: case GgmlType::Q2_K: case GgmlType::Q3_K:
    case GgmlType::Q4_K: case GgmlType::Q5_K: case GgmlType::Q6_K: case GgmlType::MXFP4:
      return true;
    default:
      return is_iq_type(type);
  }
}

bool can_quantize(GgmlType type) { return can_dequantize(type) && !is_iq_type(type); }

bool is_iq_type(GgmlType type) {
  switch (type) {
    case GgmlType::IQ2_XXS: case GgmlType::IQ2_XS: case GgmlType::IQ2_S: case GgmlType::IQ3_XXS:
    case GgmlType::IQ3_S: case GgmlType::IQ1_S: case GgmlType::IQ1_M: case GgmlType::IQ4_NL: case GgmlType::IQ4_XS:
      return true;
    default:
      return false;
  }
}

void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n) {
  check_row(type, n, "dequantize_row");
  const int64_t nb = n / ggml_type_info(type).block_size;
  switch (type) {
    case GgmlType::F32: std::memcpy(dst, src, static_cast<size_t>(n) * 4); return;
    case GgmlType::F16: {
      const auto* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_f32(s[i]);
      return;
    }
    case GgmlType::BF16: {
      const auto* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
      return;
    }
    case GgmlType::Q4_0:
      (cpu_features().avx2 ? detail::dequant_q4_0_avx2 : detail::dequant_q4_0)(blocks<BlockQ4_0>(src), dst, nb);
      return;
    case GgmlType::Q4_1: dequant_q4_1(blocks<BlockQ4_1>(src), dst, nb); return;
    case GgmlType::Q5_0:
      (cpu_features().avx2 ? detail::dequant_q5_0_avx2 : detail::dequant_q5_0)(blocks<BlockQ5_0>(src), dst, nb);
      return;
    case GgmlType::Q5_1: dequant_q5_1(blocks<BlockQ5_1>(src), dst, nb); return;
    case GgmlType::Q8_0:
      (cpu_features().avx2 ? detail::dequant_q8_0_avx2 : detail::dequant_q8_0)(blocks<BlockQ8_0>(src), dst, nb);
      return;
    case GgmlType::MXFP4: dequant_mxfp4(blocks<BlockMxfp4>(src), dst, nb); return;
    case GgmlType::Q2_K: dequant_q2_k(blocks<BlockQ2_K>(src), dst, nb); return;
    case GgmlType::Q3_K: dequant_q3_k(blocks<BlockQ3_K>(src), dst, nb); return;
    case GgmlType::Q4_K: {
      const auto* b = blocks<BlockQ4_K>(src);
      for (int64_t i = 0; i < nb; ++i) dequant_q45_k(b[i].d, b[i].dmin, b[i].scales, b[i].qs, nullptr, dst + i * kQK_K);
      return;
    }
    case GgmlType::Q5_K: {
      const auto* b = blocks<BlockQ5_K>(src);
      for (int64_t i = 0; i < nb; ++i) dequant_q45_k(b[i].d, b[i].dmin, b[i].scales, b[i].qs, b[i].qh, dst + i * kQK_K);
      return;
    }
    case GgmlType::Q6_K: dequant_q6_k(blocks<BlockQ6_K>(src), dst, nb); return;
    default:
      if (detail::dequantize_row_iq(type, src, dst, n)) return;
      fail("dequantize_row: type {} is not supported", ggml_type_name(type));
  }
}

void quantize_row_ref(GgmlType type, const float* src, void* dst, int64_t n) {
  check_row(type, n, "quantize_row_ref");
  const int64_t nb = n / ggml_type_info(type).block_size;
  switch (type) {
    case GgmlType::F32: std::memcpy(dst, src, static_cast<size_t>(n) * 4); return;
    case GgmlType::F16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_fp16(src[i]);
      return;
    }
    case GgmlType::BF16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
      return;
    }
    case GgmlType::Q4_0: quant_q4_0(src, static_cast<BlockQ4_0*>(dst), nb); return;
    case GgmlType::Q4_1: quant_q4_1(src, static_cast<BlockQ4_1*>(dst), nb); return;
    case GgmlType::Q5_0: quant_q5_0(src, static_cast<BlockQ5_0*>(dst), nb); return;
    case GgmlType::Q5_1: quant_q5_1(src, static_cast<BlockQ5_1*>(dst), nb); return;
    case GgmlType::Q8_0: quant_q8_0(src, static_cast<BlockQ8_0*>(dst), nb); return;
    case GgmlType::MXFP4: quant_mxfp4(src, static_cast<BlockMxfp4*>(dst), nb); return;
    case GgmlType::Q2_K: detail::quantize_row_q2_k_ref(src, dst, n); return;
    case GgmlType::Q3_K: detail::quantize_row_q3_k_ref(src, dst, n); return;
    case GgmlType::Q4_K: detail::quantize_row_q4_k_ref(src, dst, n); return;
    case GgmlType::Q5_K: detail::quantize_row_q5_k_ref(src, dst, n); return;
    case GgmlType::Q6_K: detail::quantize_row_q6_k_ref(src, dst, n); return;
    default: fail("quantize_row_ref: type {} is not supported", ggml_type_name(type));
  }
}

}  // namespace moetier::cpu
