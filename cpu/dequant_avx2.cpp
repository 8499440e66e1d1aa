// AVX2 builds of dequantize_row for the 32-element block formats the prefill GEMM dequantises most (Q8_0,
// Q4_0, Q5_0: e.g. DeepSeek-V2-Lite's 1408-wide down projections, which are not K-quant sized). Each
// element is float(level - offset) * d, one f32 product as in dequant.cpp, so the bits are the same.
#include <immintrin.h>

#include <cstdint>

#include "cpu/dequant.hpp"
#include "cpu/quant_blocks.hpp"
#include "cpu/isa_target.hpp"

MOETIER_TARGET_PUSH("avx2,fma,f16c")

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

// 16 packed nibbles -> 32 bytes: element j < 16 = low nibble of byte j, element 16 + j = its high nibble.
inline __m256i nibbles(const uint8_t* qs) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i m = _mm_set1_epi8(0x0F);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m), _mm_and_si128(b, m));
}

inline float d_of(uint16_t h) { return _cvtsh_ss(h); }

}  // namespace

void dequant_q8_0_avx2(const BlockQ8_0* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK8_0)
    store_scaled(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs)), d_of(x[i].d), y);
}

void dequant_q4_0_avx2(const BlockQ4_0* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK4_0)
    store_scaled(_mm256_sub_epi8(nibbles(x[i].qs), _mm256_set1_epi8(8)), d_of(x[i].d), y);
}

void dequant_q5_0_avx2(const BlockQ5_0* x, float* y, int64_t nb) {
  const __m256i spread_idx = _mm256_setr_epi64x(0, 0x0101010101010101LL, 0x0202020202020202LL, 0x0303030303030303LL);
  const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ULL));
  for (int64_t i = 0; i < nb; ++i, y += kQK5_0) {
    uint32_t qh;
    __builtin_memcpy(&qh, x[i].qh, 4);
    // bit e of qh -> 0x10 in byte e (the 5th bit of element e)
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(qh)), spread_idx);
    const __m256i high = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(0x10));
    store_scaled(_mm256_sub_epi8(_mm256_or_si256(nibbles(x[i].qs), high), _mm256_set1_epi8(16)), d_of(x[i].d), y);
  }
}

}  // namespace moetier::cpu::detail

MOETIER_TARGET_POP()
