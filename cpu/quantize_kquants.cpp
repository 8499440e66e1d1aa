// Reference quantizers for the K-quant super-block formats (Q2_K .. Q6_K): a small least-squares search per
// sub-block, then the sub-block scales quantised against one fp16 super-scale, then every element requantised
// with the scales as stored. moetier's own method; formats as in ggml-common.h, bits not those of ggml.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/half.hpp"
#include "cpu/dequant.hpp"
#include "cpu/quant_blocks.hpp"

namespace moetier::cpu::detail {

int nearest_int(float v) {
  // Adding 1.5 * 2^23 puts the integer part in the low mantissa bits (round to nearest even).
  const float shifted = v + 12582912.0f;
  int32_t bits;
  std::memcpy(&bits, &shifted, 4);
  return (bits & 0x007fffff) - 0x00400000;
}

namespace {

constexpr float kTiny = 1e-15f;

// Fits x[i] ~ scale * L[i] - min_out, L in [0, nmax], min_out >= 0, minimising sum w (error)^2 over a few
// candidate step sizes (each followed by a weighted least-squares refit). Returns scale (>= 0).
float fit_affine(int n, int nmax, const float* x, const float* w, uint8_t* L, float& min_out) {
  float lo = x[0], hi = x[0];
  for (int i = 1; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  lo = std::min(lo, 0.0f);
  if (hi - lo < kTiny) {
    std::fill(L, L + n, uint8_t{0});
    min_out = -lo;
    return 0.0f;
  }
  float sw = 0, sx = 0;
  for (int i = 0; i < n; ++i) {
    sw += w[i];
    sx += w[i] * x[i];
  }
  float best_scale = (hi - lo) / static_cast<float>(nmax), best_off = lo, best_err = INFINITY;
  uint8_t cand[32];
  for (int k = -10; k <= 10; ++k) {
    const float iscale = (static_cast<float>(nmax) + 0.1f * static_cast<float>(k)) / (hi - lo);
    float sl = 0, sl2 = 0, sxl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * (x[i] - lo)), 0, nmax);
      cand[i] = static_cast<uint8_t>(l);
      sl += w[i] * static_cast<float>(l);
      sl2 += w[i] * static_cast<float>(l * l);
      sxl += w[i] * static_cast<float>(l) * x[i];
    }
    const float det = sw * sl2 - sl * sl;
    if (det <= 0) continue;
    float scale = (sw * sxl - sx * sl) / det;
    float off = (sl2 * sx - sl * sxl) / det;
    if (off > 0) {  // the format can only subtract a min
      off = 0;
      scale = sxl / sl2;
    }
    if (scale <= 0) continue;
    float err = 0;
    for (int i = 0; i < n; ++i) {
      const float e = scale * static_cast<float>(cand[i]) + off - x[i];
      err += w[i] * e * e;
    }
    if (err < best_err) {
      best_err = err;
      best_scale = scale;
      best_off = off;
      std::copy(cand, cand + n, L);
    }
  }
  if (!(best_err < INFINITY)) {  // no candidate fitted: plain min/max grid
    const float iscale = static_cast<float>(nmax) / (hi - lo);
    for (int i = 0; i < n; ++i) L[i] = static_cast<uint8_t>(std::clamp(nearest_int(iscale * (x[i] - lo)), 0, nmax));
  }
  min_out = -best_off;
  return best_scale;
}

// Fits x[i] ~ scale * L[i], L in [-nmax, nmax - 1], minimising the squared error; the scale is signed so
// that the element of largest magnitude can use -nmax. Returns scale (0 for an all-zero sub-block).
float fit_symmetric(int n, int nmax, const float* x) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  if (amax < kTiny) return 0.0f;
  float best_scale = -max / static_cast<float>(nmax), best_err = INFINITY;
  for (int k = -9; k <= 9; ++k) {
    const float iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(k)) / max;
    float sxl = 0, sl2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
      sxl += x[i] * static_cast<float>(l);
      sl2 += static_cast<float>(l * l);
    }
    if (sl2 <= 0) continue;
    const float scale = sxl / sl2;
    if (scale == 0.0f) continue;
    float err = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(x[i] / scale), -nmax, nmax - 1);
      const float e = scale * static_cast<float>(l) - x[i];
      err += e * e;
    }
    if (err < best_err) {
      best_err = err;
      best_scale = scale;
    }
  }
  return best_scale;
}

// Affine sub-block fits for the Q2_K / Q4_K / Q5_K families, weights |x| + rms(x).
void fit_affine_subblocks(const float* x, int n_sub, int sub, int nmax, float* scales, float* mins, uint8_t* L) {
  float w[32];
  for (int j = 0; j < n_sub; ++j) {
    const float* xs = x + j * sub;
    float s2 = 0;
    for (int l = 0; l < sub; ++l) s2 += xs[l] * xs[l];
    const float rms = std::sqrt(s2 / static_cast<float>(sub));
    for (int l = 0; l < sub; ++l) w[l] = rms + std::fabs(xs[l]);
    scales[j] = fit_affine(sub, nmax, xs, w, L + j * sub, mins[j]);
  }
}

// Quantises non-negative values v[0..n) to integers in [0, qmax] against one step; returns the step.
float quantize_nonneg(const float* v, int n, int qmax, uint8_t* q) {
  float max = 0;
  for (int j = 0; j < n; ++j) max = std::max(max, v[j]);
  const float step = max / static_cast<float>(qmax);
  const float inv = max > 0 ? static_cast<float>(qmax) / max : 0.0f;
  for (int j = 0; j < n; ++j) q[j] = static_cast<uint8_t>(std::clamp(nearest_int(inv * v[j]), 0, qmax));
  return step;
}

// Requantises one affine sub-block with its stored scale dl and min ml: L = round((x + ml) / dl).
void requant_affine(const float* x, int sub, float dl, float ml, int nmax, uint8_t* L) {
  if (dl == 0.0f) {
    std::fill(L, L + sub, uint8_t{0});
    return;
  }
  for (int l = 0; l < sub; ++l) L[l] = static_cast<uint8_t>(std::clamp(nearest_int((x[l] + ml) / dl), 0, nmax));
}

// Packs 6-bit scale/min pairs of 8 sub-blocks into the Q4_K / Q5_K 12-byte layout (inverse of
// get_scale_min_k4).
void pack_scale_min_k4(const uint8_t* ls, const uint8_t* lm, uint8_t* s) {
  std::memset(s, 0, kKScaleSize);
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      s[j] = ls[j];
      s[j + 4] = lm[j];
    } else {
      s[j + 4] = static_cast<uint8_t>((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
      s[j - 4] |= static_cast<uint8_t>((ls[j] >> 4) << 6);
      s[j] |= static_cast<uint8_t>((lm[j] >> 4) << 6);
    }
  }
}

// Shared by Q4_K and Q5_K: fills d, dmin, scales and the levels L[256] (0..nmax).
void quantize_q45_k_block(const float* x, int nmax, uint16_t& d16, uint16_t& dmin16, uint8_t* scales, uint8_t* L) {
  float sc[8], mn[8];
  fit_affine_subblocks(x, 8, 32, nmax, sc, mn, L);
  uint8_t ls[8], lm[8];
  d16 = f32_to_fp16(quantize_nonneg(sc, 8, 63, ls));
  dmin16 = f32_to_fp16(quantize_nonneg(mn, 8, 63, lm));
  pack_scale_min_k4(ls, lm, scales);
  const float d = fp16_to_f32(d16), dmin = fp16_to_f32(dmin16);
  for (int j = 0; j < 8; ++j) {
    uint8_t s, m;
    get_scale_min_k4(j, scales, s, m);
    requant_affine(x + 32 * j, 32, d * static_cast<float>(s), dmin * static_cast<float>(m), nmax, L + 32 * j);
  }
}

}  // namespace

void quantize_row_q2_k_ref(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<BlockQ2_K*>(vy);
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
    uint8_t L[kQK_K];
    float sc[16], mn[16];
    fit_affine_subblocks(x, 16, 16, 3, sc, mn, L);
    uint8_t ls[16], lm[16];
    y[i].d = f32_to_fp16(quantize_nonneg(sc, 16, 15, ls));
    y[i].dmin = f32_to_fp16(quantize_nonneg(mn, 16, 15, lm));
    const float d = fp16_to_f32(y[i].d), dmin = fp16_to_f32(y[i].dmin);
    for (int j = 0; j < 16; ++j) {
      y[i].scales[j] = static_cast<uint8_t>(ls[j] | (lm[j] << 4));
      requant_affine(x + 16 * j, 16, d * static_cast<float>(ls[j]), dmin * static_cast<float>(lm[j]), 3, L + 16 * j);
    }
    for (int h = 0; h < 2; ++h)
      for (int l = 0; l < 32; ++l) {
        const uint8_t* Lh = L + 128 * h + l;
        y[i].qs[32 * h + l] = static_cast<uint8_t>(Lh[0] | (Lh[32] << 2) | (Lh[64] << 4) | (Lh[96] << 6));
      }
  }
}

void quantize_row_q3_k_ref(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<BlockQ3_K*>(vy);
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
    float sc[16];
    float amax = 0, max = 0;
    for (int j = 0; j < 16; ++j) {
      sc[j] = fit_symmetric(16, 4, x + 16 * j);
      if (std::fabs(sc[j]) > amax) {
        amax = std::fabs(sc[j]);
        max = sc[j];
      }
    }
    std::memset(y[i].scales, 0, sizeof y[i].scales);
    const float dsup = max / -32.0f;  // the largest scale maps to -32, the most negative 6-bit value
    const float inv = dsup != 0.0f ? 1.0f / dsup : 0.0f;
    for (int j = 0; j < 16; ++j) {
      const int l = std::clamp(nearest_int(inv * sc[j]), -32, 31) + 32;
      if (j < 8)
        y[i].scales[j] = static_cast<uint8_t>(l & 0xF);
      else
        y[i].scales[j - 8] |= static_cast<uint8_t>((l & 0xF) << 4);
      y[i].scales[8 + j % 4] |= static_cast<uint8_t>((l >> 4) << (2 * (j / 4)));
    }
    y[i].d = f32_to_fp16(dsup);
    const float d = fp16_to_f32(y[i].d);
    int8_t s6[16];
    unpack_q3_k_scales(y[i].scales, s6);
    uint8_t L[kQK_K];
    for (int j = 0; j < 16; ++j) {
      const float dl = d * static_cast<float>(s6[j]);
      for (int l = 0; l < 16; ++l)
        L[16 * j + l] = dl != 0.0f ? static_cast<uint8_t>(std::clamp(nearest_int(x[16 * j + l] / dl), -4, 3) + 4) : 4;
    }
    std::memset(y[i].hmask, 0, sizeof y[i].hmask);
    for (int e = 0; e < kQK_K; ++e) {  // element 128h + 32s + l: high bit in hmask[l] bit 4h + s
      if (L[e] > 3) {
        y[i].hmask[e % 32] |= static_cast<uint8_t>(1u << (e / 32));
        L[e] -= 4;
      }
    }
    for (int h = 0; h < 2; ++h)
      for (int l = 0; l < 32; ++l) {
        const uint8_t* Lh = L + 128 * h + l;
        y[i].qs[32 * h + l] = static_cast<uint8_t>(Lh[0] | (Lh[32] << 2) | (Lh[64] << 4) | (Lh[96] << 6));
      }
  }
}

void quantize_row_q4_k_ref(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<BlockQ4_K*>(vy);
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
    uint8_t L[kQK_K];
    quantize_q45_k_block(x, 15, y[i].d, y[i].dmin, y[i].scales, L);
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l)
        y[i].qs[32 * c + l] = static_cast<uint8_t>(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
  }
}

void quantize_row_q5_k_ref(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<BlockQ5_K*>(vy);
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
    uint8_t L[kQK_K];
    quantize_q45_k_block(x, 31, y[i].d, y[i].dmin, y[i].scales, L);
    std::memset(y[i].qh, 0, sizeof y[i].qh);
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l) {
        const int lo = L[64 * c + l], hi = L[64 * c + 32 + l];
        y[i].qs[32 * c + l] = static_cast<uint8_t>((lo & 0xF) | ((hi & 0xF) << 4));
        y[i].qh[l] |= static_cast<uint8_t>(((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
      }
  }
}

void quantize_row_q6_k_ref(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<BlockQ6_K*>(vy);
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
    float sc[16];
    float amax = 0, max = 0;
    for (int j = 0; j < 16; ++j) {
      sc[j] = fit_symmetric(16, 32, x + 16 * j);
      if (std::fabs(sc[j]) > amax) {
        amax = std::fabs(sc[j]);
        max = sc[j];
      }
    }
    std::memset(&y[i], 0, sizeof y[i]);
    if (amax < kTiny) {
      // all-zero block: q = 32 (value 0) everywhere, scales 0
      std::memset(y[i].ql, 0, sizeof y[i].ql);
      std::memset(y[i].qh, 0xAA, sizeof y[i].qh);  // high bits 2 -> q = 32
      continue;
    }
    const float dsup = max / -128.0f;
    const float inv = 1.0f / dsup;
    for (int j = 0; j < 16; ++j) y[i].scales[j] = static_cast<int8_t>(std::clamp(nearest_int(inv * sc[j]), -128, 127));
    y[i].d = f32_to_fp16(dsup);
    const float d = fp16_to_f32(y[i].d);
    uint8_t L[kQK_K];
    for (int j = 0; j < 16; ++j) {
      const float dl = d * static_cast<float>(y[i].scales[j]);
      for (int l = 0; l < 16; ++l)
        L[16 * j + l] = dl != 0.0f ? static_cast<uint8_t>(std::clamp(nearest_int(x[16 * j + l] / dl), -32, 31) + 32) : 32;
    }
    for (int h = 0; h < 2; ++h)
      for (int l = 0; l < 32; ++l) {
        const uint8_t* Lh = L + 128 * h + l;
        y[i].ql[64 * h + l] = static_cast<uint8_t>((Lh[0] & 0xF) | ((Lh[64] & 0xF) << 4));
        y[i].ql[64 * h + 32 + l] = static_cast<uint8_t>((Lh[32] & 0xF) | ((Lh[96] & 0xF) << 4));
        y[i].qh[32 * h + l] =
            static_cast<uint8_t>((Lh[0] >> 4) | ((Lh[32] >> 4) << 2) | ((Lh[64] >> 4) << 4) | ((Lh[96] >> 4) << 6));
      }
  }
}

}  // namespace moetier::cpu::detail
