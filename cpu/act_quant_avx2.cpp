// AVX2 build of quantize_row_q8_K's per-block loop (act_quant.hpp), bit-identical with the scalar code:
// the same max (first of the largest |x|), the same f32 products iscale * x, rounded half to even by
// vcvtps2dq as nearest_int rounds them (|iscale * x| <= 127.x, far inside its exact range), the same
// clamp at 127 and 1 / iscale. Selected at run time by quantize_row_q8_K when the CPU has AVX2.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "cpu/act_quant.hpp"
#include "cpu/quant_blocks.hpp"
#include "cpu/isa_target.hpp"

MOETIER_TARGET_PUSH("avx2,fma,f16c")

namespace moetier::cpu::detail {

void quantize_blocks_q8_K_avx2(const float* x, BlockQ8_K* y, int64_t n_blocks) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int64_t i = 0; i < n_blocks; ++i, x += kQK_K) {
    __m256 m = _mm256_setzero_ps();
    for (int j = 0; j < kQK_K; j += 8) m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(x + j), abs_mask));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    if (amax == 0.0f) {
      std::memset(&y[i], 0, sizeof y[i]);
      continue;
    }
    // the first element whose |x| is amax gives the sign (the scalar loop keeps the first on ties)
    const __m256 am = _mm256_set1_ps(amax);
    float max = 0.0f;
    for (int j = 0; j < kQK_K; j += 8) {
      const int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_and_ps(_mm256_loadu_ps(x + j), abs_mask), am, _CMP_EQ_OQ));
      if (hit) {
        max = x[j + __builtin_ctz(static_cast<unsigned>(hit))];
        break;
      }
    }
    const float iscale = -127.0f / max;
    if (!std::isfinite(iscale)) {  // amax below ~3.7e-37: iscale * x is inf or NaN; keep the scalar's integers
      quantize_blocks_q8_K_scalar(x, &y[i], 1);
      continue;
    }
    const __m256 is = _mm256_set1_ps(iscale);
    const __m256i c127 = _mm256_set1_epi32(127);
    for (int j = 0; j < kQK_K; j += 32) {
      __m256i q[4];
      for (int k = 0; k < 4; ++k)
        q[k] = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(is, _mm256_loadu_ps(x + j + 8 * k))), c127);
      // bsums of the two 16-element groups in these 32
      const __m256i s01 = _mm256_add_epi32(q[0], q[1]), s23 = _mm256_add_epi32(q[2], q[3]);
      const __m256i h = _mm256_hadd_epi32(s01, s23);  // [s01 pairs lo | s23 pairs lo | s01 hi | s23 hi]
      const __m256i h2 = _mm256_hadd_epi32(h, h);
      const __m128i f = _mm_add_epi32(_mm256_castsi256_si128(h2), _mm256_extracti128_si256(h2, 1));
      y[i].bsums[j / 16] = static_cast<int16_t>(_mm_cvtsi128_si32(f));
      y[i].bsums[j / 16 + 1] = static_cast<int16_t>(_mm_extract_epi32(f, 1));
      // int32 -> int8 in element order: packs interleave 128-bit lanes, the permute undoes it
      const __m256i p16 = _mm256_packs_epi32(q[0], q[1]), p16b = _mm256_packs_epi32(q[2], q[3]);
      const __m256i p8 = _mm256_packs_epi16(p16, p16b);
      const __m256i ordered = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs + j), ordered);
    }
    y[i].d = 1.0f / iscale;
  }
}

}  // namespace moetier::cpu::detail

MOETIER_TARGET_POP()
