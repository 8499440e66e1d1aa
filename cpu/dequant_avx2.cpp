// AVX2 builds of dequantize_row for the 32-element block formats the prefill GEMM dequantises most (Q8_0,
// Q4_0, Q5_0: e.g. DeepSeek-V2-Lite's 1408-wide down projections, which are not K-quant sized). Each
// element is float(level - offset) * d, one f32 product as in dequant.cpp, so the bits are the same.
#include <immintrin.h>

#include <cstdint>

#include "cpu/dequant.hpp"
#include "cpu/quant_blocks.hpp"
#include "cpu/isa_target.hpp"

MOETIER_TARGET_PUSH("avx2,fma,f16c")
#include "cpu/block32_avx2.hpp"

namespace moetier::cpu::detail {
namespace {

// 32 signed levels (int8, element order) times d, stored as 32 f32.
inline void store_scaled(__m256i levels, float d, float* y) {
  const __m256 dv = _mm256_set1_ps(d);
  const __m128i lo = _mm256_castsi256_si128(levels), hi = _mm256_extracti128_si256(levels, 1);
  _mm256_storeu_ps(y, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), dv));
  _mm256_storeu_ps(y + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), dv));
  _mm256_storeu_ps(y + 16, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), dv));
  _mm256_storeu_ps(y + 24, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), dv));
}

inline float d_of(uint16_t h) { return _cvtsh_ss(h); }

}  // namespace

void dequant_q8_0_avx2(const BlockQ8_0* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK8_0)
    store_scaled(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs)), d_of(x[i].d), y);
}

void dequant_q4_0_avx2(const BlockQ4_0* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK4_0)
    store_scaled(_mm256_sub_epi8(unsigned_levels(x[i]), _mm256_set1_epi8(8)), d_of(x[i].d), y);
}

void dequant_q5_0_avx2(const BlockQ5_0* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK5_0)
    store_scaled(_mm256_sub_epi8(unsigned_levels(x[i]), _mm256_set1_epi8(16)), d_of(x[i].d), y);
}

}  // namespace moetier::cpu::detail

MOETIER_TARGET_POP()
