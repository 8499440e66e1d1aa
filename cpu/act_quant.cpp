// Scalar activation quantisers reproducing ggml's x86 results bit for bit (see act_quant.hpp).
#include "cpu/act_quant.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "common/half.hpp"
#include "cpu/cpu_features.hpp"
#include "cpu/dequant.hpp"

namespace moetier::cpu {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Whether x [n] holds only finite values: one pass over the exponent bits (vectorisable, no branches).
// ggml's quantisers drop non-finite values silently (max(amax, |NaN|) keeps amax; an all-NaN block gets
// d = 0, so every dot product with it is 0 and the logits come out finite and wrong). A row with a NaN or
// inf is therefore quantised to blocks whose scales d (and Q8_1's s) are NaN and whose quants are 0, so
// that every output of that token is NaN and Model::forward's finite check stops the run. Finite rows are
// quantised exactly as ggml quantises them.
bool all_finite(const float* x, int64_t n) {
  uint32_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t e = std::bit_cast<uint32_t>(x[i]) & 0x7f800000u;
    bad |= static_cast<uint32_t>(e == 0x7f800000u);
  }
  return bad == 0;
}

// Round half to even (the default MXCSR mode that _mm256_round_ps(_MM_ROUND_NEAREST) uses), then the
// int32 -> int8 saturation of _mm256_packs_*. (Never sees NaN: rows with one are poisoned instead; NaN
// would give -128 here, as cvtps2dq's INT32_MIN saturated by the packs on x86.)
int8_t round_even_sat8(float v) {
  const float r = std::nearbyint(v);
  if (!(r >= -128.0f)) return -128;
  return static_cast<int8_t>(std::min(r, 127.0f));
}

// Quantises one 32-element block with ggml's x86 rule; returns the f32 scale d (before fp16 rounding).
float q8_block(const float* x, int8_t* q) {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
  for (int j = 0; j < 32; ++j) q[j] = round_even_sat8(x[j] * id);
  return d;
}

}  // namespace

void quantize_row_q8_0(const float* x, BlockQ8_0* y, int64_t n) {
  if (!all_finite(x, n)) {
    for (int64_t i = 0; i < n / kQK8_0; ++i) {
      y[i].d = f32_to_fp16(kNaN);
      std::memset(y[i].qs, 0, sizeof y[i].qs);
    }
    return;
  }
  for (int64_t i = 0; i < n / kQK8_0; ++i, x += kQK8_0) y[i].d = f32_to_fp16(q8_block(x, y[i].qs));
}

void quantize_row_q8_1(const float* x, BlockQ8_1* y, int64_t n) {
  if (!all_finite(x, n)) {
    for (int64_t i = 0; i < n / kQK8_1; ++i) {
      y[i].d = y[i].s = f32_to_fp16(kNaN);
      std::memset(y[i].qs, 0, sizeof y[i].qs);
    }
    return;
  }
  for (int64_t i = 0; i < n / kQK8_1; ++i, x += kQK8_1) {
    const float d = q8_block(x, y[i].qs);
    int sum = 0;
    for (int j = 0; j < kQK8_1; ++j) sum += y[i].qs[j];
    y[i].d = f32_to_fp16(d);
    y[i].s = f32_to_fp16(d * static_cast<float>(sum));
  }
}

void quantize_row_q8_K(const float* x, BlockQ8_K* y, int64_t n) {
  if (!all_finite(x, n)) {
    for (int64_t i = 0; i < n / kQK_K; ++i) {
      std::memset(&y[i], 0, sizeof y[i]);
      y[i].d = kNaN;
    }
    return;
  }
  if (cpu_features().avx2)
    detail::quantize_blocks_q8_K_avx2(x, y, n / kQK_K);
  else
    detail::quantize_blocks_q8_K_scalar(x, y, n / kQK_K);
}

namespace detail {

void quantize_blocks_q8_K_scalar(const float* x, BlockQ8_K* y, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, x += kQK_K) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < kQK_K; ++j) {
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    if (amax == 0.0f) {
      std::memset(&y[i], 0, sizeof y[i]);
      continue;
    }
    const float iscale = -127.0f / max;
    for (int j = 0; j < kQK_K; ++j) y[i].qs[j] = static_cast<int8_t>(std::min(127, detail::nearest_int(iscale * x[j])));
    for (int j = 0; j < kQK_K / 16; ++j) {
      int sum = 0;
      for (int l = 0; l < 16; ++l) sum += y[i].qs[16 * j + l];
      y[i].bsums[j] = static_cast<int16_t>(sum);
    }
    y[i].d = 1.0f / iscale;
  }
}

}  // namespace detail

void round_row_to_f16(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = fp16_to_f32(f32_to_fp16(x[i]));
}

void round_row_to_bf16(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_f32(f32_to_bf16(x[i]));
}

}  // namespace moetier::cpu
