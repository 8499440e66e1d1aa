// IQ dequantisers (see dequant.hpp): bit-exact with ggml's dequantize_row_iq* (ggml-quants.c). With levels
// w = grid * sign, ggml's `db * grid * sign` equals db * float(w) exactly (rounding is sign-symmetric); the
// IQ1 `dl * (grid + delta)` adds the exact ±0.125 first. Scale products are evaluated in ggml's order.
#include <cstdint>

#include "common/half.hpp"
#include "cpu/dequant.hpp"
#include "cpu/iq_decode.hpp"

namespace moetier::cpu::detail {
namespace {

// Scale of half h of a sub-block (raw field s) as ggml computes it from the fp16 super-scale d.
struct Iq2Scale {  // IQ2_XXS / IQ2_XS / IQ2_S: d * (0.5f + s) * 0.25f
  float operator()(float d, int s) const { return d * (0.5f + static_cast<float>(s)) * 0.25f; }
};
struct Iq3xxsScale {  // d * (0.5f + s) * 0.5f
  float operator()(float d, int s) const { return d * (0.5f + static_cast<float>(s)) * 0.5f; }
};
struct Iq3sScale {  // d * (1 + 2s)
  float operator()(float d, int s) const { return d * static_cast<float>(1 + 2 * s); }
};

template <typename Block, typename Scale>
void dequant_signed_grid(const void* src, float* y, int64_t nb) {
  const auto* x = static_cast<const Block*>(src);
  iq::Sub32 sb;
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_f32(x[i].d);
    for (int b = 0; b < 8; ++b, y += 32) {
      iq::decode(x[i], b, sb);
      const float db[2] = {Scale{}(d, sb.s[0]), Scale{}(d, sb.s[1])};
      for (int j = 0; j < 32; ++j) y[j] = db[j / 16] * static_cast<float>(sb.w[j]);
    }
  }
}

template <typename Block>
void dequant_iq1(const void* src, float* y, int64_t nb) {
  const auto* x = static_cast<const Block*>(src);
  iq::Sub32 sb;
  for (int64_t i = 0; i < nb; ++i) {
    float d;
    if constexpr (requires { x[i].d; })
      d = fp16_to_f32(x[i].d);
    else
      d = fp16_to_f32(iq::iq1m_scale_bits(x[i]));
    for (int b = 0; b < 8; ++b, y += 32) {
      iq::decode(x[i], b, sb);
      const float dl[2] = {d * static_cast<float>(2 * sb.s[0] + 1), d * static_cast<float>(2 * sb.s[1] + 1)};
      for (int j = 0; j < 32; ++j)
        y[j] = dl[j / 16] * (static_cast<float>(sb.w[j]) + (sb.neg[j / 8] ? -0.125f : 0.125f));
    }
  }
}

void dequant_iq4_nl(const void* src, float* y, int64_t nb) {
  const auto* x = static_cast<const BlockIQ4_NL*>(src);
  int8_t w[32];
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const float d = fp16_to_f32(x[i].d);
    iq::nl_levels(x[i].qs, w);
    for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(w[j]);
  }
}

void dequant_iq4_xs(const void* src, float* y, int64_t nb) {
  const auto* x = static_cast<const BlockIQ4_XS*>(src);
  iq::Sub32 sb;
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_f32(x[i].d);
    for (int b = 0; b < 8; ++b, y += 32) {
      iq::decode(x[i], b, sb);
      const float dl = d * static_cast<float>(sb.s[0] - 32);
      for (int j = 0; j < 32; ++j) y[j] = dl * static_cast<float>(sb.w[j]);
    }
  }
}

}  // namespace

bool dequantize_row_iq(GgmlType type, const void* src, float* dst, int64_t n) {
  const int64_t nb = n / ggml_type_info(type).block_size;
  switch (type) {
    case GgmlType::IQ2_XXS: dequant_signed_grid<BlockIQ2_XXS, Iq2Scale>(src, dst, nb); return true;
    case GgmlType::IQ2_XS: dequant_signed_grid<BlockIQ2_XS, Iq2Scale>(src, dst, nb); return true;
    case GgmlType::IQ2_S: dequant_signed_grid<BlockIQ2_S, Iq2Scale>(src, dst, nb); return true;
    case GgmlType::IQ3_XXS: dequant_signed_grid<BlockIQ3_XXS, Iq3xxsScale>(src, dst, nb); return true;
    case GgmlType::IQ3_S: dequant_signed_grid<BlockIQ3_S, Iq3sScale>(src, dst, nb); return true;
    case GgmlType::IQ1_S: dequant_iq1<BlockIQ1_S>(src, dst, nb); return true;
    case GgmlType::IQ1_M: dequant_iq1<BlockIQ1_M>(src, dst, nb); return true;
    case GgmlType::IQ4_NL: dequant_iq4_nl(src, dst, nb); return true;
    case GgmlType::IQ4_XS: dequant_iq4_xs(src, dst, nb); return true;
    default: return false;
  }
}

}  // namespace moetier::cpu::detail
