// Q4_K / Q5_K prefill tile kernels on 512-bit registers (AVX-512 BW + VNNI), part of gemv_avx512.cpp:
// included by it after gemv_simd_impl.hpp (inside the target region, in its anonymous namespace) and
// nowhere else. They take 4..8 tokens (gemm_rows feeds batches in chunks of 8) and return exactly what
// row_q45_k returns (the canonical order of vec_dot.hpp), so a batch gives the same bits whichever kernel
// the registry picks:
//  * the integer sums are exact in any grouping: per token and 64 elements one vpmaddubsw (levels x Q8_K
//    activations, two sub-blocks in the two 256-bit halves) and one vpdpwssd with the two sub-blocks'
//    scales; 4 of each per super-block and token instead of 8 + 8 on 256-bit registers;
//  * the f32 tail of a super-block, (dy * d) * isum - (dy * dmin) * msum added to the row's accumulator,
//    runs once per row for all tokens, one token per f32 lane (the same operations in the same order per
//    lane as kquant_term), instead of once per token with horizontal adds;
//  * the tokens' side of the mins term (Q8_K block sums, paired per 32-element sub-block) and their d are
//    gathered once per call into a per-super-block table (tile_token_side), not once per row.
// What it buys (perf/bench_kernels --tokens 8, bench_prefill): see perf/README.md.
#ifndef MOETIER_GEMV_VNNI
#error "include gemv_avx512.cpp's includes first"
#endif

#include "cpu/k45_avx512.hpp"

namespace moetier::cpu {
namespace {

// ---------------------------------------------------------------- Q4_K / Q5_K tiles (one row, 4..8 tokens)

// Tokens' side of one super-block: lane t of bp[k] holds token t's int16 pair (p_2k, p_2k+1), with p_j the
// sum of the Q8_K sub-block j (bsums[2j] + bsums[2j+1]); lane t of dy is its d. Lanes >= n_tokens are 0.
struct alignas(32) TileTokenSide {
  __m256i bp[4];
  __m256 dy;
};

// Largest row length the tile kernels take (the token table lives on the stack: 160 B per super-block).
constexpr int64_t kTileMaxSuperBlocks = 160;  // n_in <= 40960

template <int T>
void tile_token_side(const GemvArgs& a, int64_t nsb, TileTokenSide* side) {
  for (int64_t sb = 0; sb < nsb; ++sb) {
    alignas(32) int32_t bp[4][8] = {};
    alignas(32) float dy[8] = {};
    for (int t = 0; t < T; ++t) {
      const BlockQ8_K& y = act_k(a, t, sb);
      alignas(16) int32_t pairs[4];  // int16 sums p_0 .. p_7, two per int32
      _mm_store_si128(reinterpret_cast<__m128i*>(pairs), q8k_sub_block_sums(y));
      for (int k = 0; k < 4; ++k) bp[k][t] = pairs[k];
      dy[t] = y.d;
    }
    for (int k = 0; k < 4; ++k) side[sb].bp[k] = _mm256_load_si256(reinterpret_cast<const __m256i*>(bp[k]));
    side[sb].dy = _mm256_load_ps(dy);
  }
}

inline __m512i load512(const void* p) { return _mm512_loadu_si512(p); }

// Q4_K (kHigh = false) and Q5_K (kHigh = true): rows [row_begin, row_end) for T tokens.
template <bool kHigh, int T>
void tile_q45_k(const GemvArgs& a) {
  using Block = std::conditional_t<kHigh, BlockQ5_K, BlockQ4_K>;
  const int64_t nsb = a.n_in / kQK_K;
  TileTokenSide side[kTileMaxSuperBlocks];
  tile_token_side<T>(a, nsb, side);
  const K45Unpack k45;
  for (int64_t r = a.row_begin; r < a.row_end; ++r) {
    const Block* x = reinterpret_cast<const Block*>(a.w + static_cast<size_t>(r) * a.w_row_bytes);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t sb = 0; sb < nsb; ++sb) {
      const Block& blk = x[sb];
      for (int off = 0; off < static_cast<int>(sizeof(Block)); off += 64) prefetch_ahead(reinterpret_cast<const char*>(&blk) + off);
      uint64_t sc8, mn8;
      k4_scales_mins(blk.scales, sc8, mn8);
      const __m512i sc16 = _mm512_zextsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(sc8))));
      const __m256i mins16 = _mm256_zextsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(mn8))));
      __m512i q[4], s[4];
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) {
        q[c] = k45.levels(blk, c);
        s[c] = k45.pair(sc16, c);
      }
      __m256i folded[8];
#pragma GCC unroll 8
      for (int t = 0; t < 8; ++t) {
        if (t >= T) {
          folded[t] = _mm256_setzero_si256();
          continue;
        }
        const int8_t* yq = act_k(a, t, sb).qs;
        __m512i sumi = _mm512_madd_epi16(_mm512_maddubs_epi16(q[0], load512(yq)), s[0]);
#pragma GCC unroll 3
        for (int c = 1; c < 4; ++c) sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(q[c], load512(yq + 64 * c)), s[c]);
        folded[t] = _mm256_add_epi32(_mm512_castsi512_si256(sumi), _mm512_extracti64x4_epi64(sumi, 1));
      }
      const __m256i isum = reduce8(folded);  // lane t = token t's integer sum
      const TileTokenSide& ts = side[sb];
      __m256i msum = _mm256_setzero_si256();  // lane t = sum_j m_j * p_j of token t
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k)
        msum = _mm256_dpwssd_epi32(msum, ts.bp[k], _mm256_permutexvar_epi32(_mm256_set1_epi32(k), mins16));
      uint32_t dbits;
      __builtin_memcpy(&dbits, &blk.d, 4);  // d, dmin adjacent
      const __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(dbits)));
      const __m256 d = _mm256_broadcastss_ps(dd), dmin = _mm256_broadcastss_ps(_mm_movehdup_ps(dd));
      const __m256 pi = _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(d, ts.dy));
      const __m256 pm = _mm256_mul_ps(_mm256_cvtepi32_ps(msum), _mm256_mul_ps(dmin, ts.dy));
      acc = _mm256_add_ps(acc, _mm256_sub_ps(pi, pm));
    }
    alignas(32) float out[8];
    _mm256_store_ps(out, acc);
    for (int t = 0; t < T; ++t) a.y[t * a.ldy + r] = out[t];
  }
}

// ---------------------------------------------------------------- Q4_K / Q5_K decode (1 token, 16 rows)

// One token, rows in groups of 16: each row is read sequentially (one weight stream at a time) and its
// super-blocks' integer sums isum and msum stored; then the f32 term of each super-block runs for the 16
// rows at once, one row per lane (the operations of kquant_term, in its order, per lane). Per super-block
// and row: 4 vpmaddubsw + 4 vpdpwssd on 512-bit registers and an integer reduction, instead of 8 + 8 and
// the horizontal f32 tail of row_q45_k.
template <bool kHigh>
void rows16_q45_k(const GemvArgs& a) {
  using Block = std::conditional_t<kHigh, BlockQ5_K, BlockQ4_K>;
  const int64_t nsb = a.n_in / kQK_K;
  alignas(64) int32_t isum[kTileMaxSuperBlocks][16];
  alignas(64) int32_t msum[kTileMaxSuperBlocks][16];
  alignas(64) uint32_t dd[kTileMaxSuperBlocks][16];  // fp16 d | fp16 dmin << 16
  const K45Unpack k45;
  for (int64_t r0 = a.row_begin; r0 < a.row_end; r0 += 16) {
    const int nr = static_cast<int>(std::min<int64_t>(16, a.row_end - r0));
    for (int i = 0; i < 16; ++i) {
      if (i >= nr) {
        for (int64_t sb = 0; sb < nsb; ++sb) {
          isum[sb][i] = msum[sb][i] = 0;
          dd[sb][i] = 0;
        }
        continue;
      }
      const Block* x = reinterpret_cast<const Block*>(a.w + static_cast<size_t>(r0 + i) * a.w_row_bytes);
      for (int64_t sb = 0; sb < nsb; ++sb) {
        const Block& blk = x[sb];
        for (int off = 0; off < static_cast<int>(sizeof(Block)); off += 64) prefetch_ahead(reinterpret_cast<const char*>(&blk) + off);
        const BlockQ8_K& y = act_k(a, 0, sb);
        uint64_t sc8, mn8;
        k4_scales_mins(blk.scales, sc8, mn8);
        const __m512i sc16 = _mm512_zextsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(sc8))));
        __m512i sumi = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int c = 0; c < 4; ++c)
          sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(k45.levels(blk, c), load512(y.qs + 64 * c)), k45.pair(sc16, c));
        const __m256i s8 = _mm256_add_epi32(_mm512_castsi512_si256(sumi), _mm512_extracti64x4_epi64(sumi, 1));
        isum[sb][i] = hsum_i32(s8);
        const __m128i pairs = q8k_sub_block_sums(y);
        const __m128i mins16 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(mn8)));
        const __m128i m4s = _mm_madd_epi16(mins16, pairs);
        const __m128i m2 = _mm_add_epi32(m4s, _mm_unpackhi_epi64(m4s, m4s));
        msum[sb][i] = _mm_cvtsi128_si32(_mm_add_epi32(m2, _mm_shuffle_epi32(m2, 0xB1)));
        __builtin_memcpy(&dd[sb][i], &blk.d, 4);
      }
    }
    __m512 acc = _mm512_setzero_ps();
    for (int64_t sb = 0; sb < nsb; ++sb) {
      const __m512 dy = _mm512_set1_ps(act_k(a, 0, sb).d);
      const __m512i ddv = _mm512_load_si512(dd[sb]);
      const __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(ddv));
      const __m512 dmin = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(ddv, 16)));
      const __m512 pi = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(isum[sb])), _mm512_mul_ps(d, dy));
      const __m512 pm = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(msum[sb])), _mm512_mul_ps(dmin, dy));
      acc = _mm512_add_ps(acc, _mm512_sub_ps(pi, pm));
    }
    alignas(64) float out[16];
    _mm512_store_ps(out, acc);
    for (int i = 0; i < nr; ++i) a.y[r0 + i] = out[i];
  }
}

template <int T> struct KTileQ4K { static void run(const GemvArgs& a) { tile_q45_k<false, T>(a); } };
template <int T> struct KTileQ5K { static void run(const GemvArgs& a) { tile_q45_k<true, T>(a); } };

template <template <int> class K, template <int> class Fallback>
void by_tokens_tile(const GemvArgs& a) {
  if (a.n_in / kQK_K > kTileMaxSuperBlocks) return by_tokens<Fallback>(a);
  switch (a.n_tokens) {
    case 4: K<4>::run(a); break;
    case 5: K<5>::run(a); break;
    case 6: K<6>::run(a); break;
    case 7: K<7>::run(a); break;
    case 8: K<8>::run(a); break;
    default: by_tokens<Fallback>(a); break;
  }
}

void gemv_q4_k_tile(const GemvArgs& a) { by_tokens_tile<KTileQ4K, KQ4K>(a); }
void gemv_q4_k_rows16(const GemvArgs& a) {
  if (a.n_tokens != 1 || a.n_in / kQK_K > kTileMaxSuperBlocks) return by_tokens<KQ4K>(a);
  rows16_q45_k<false>(a);
}
void gemv_q5_k_rows16(const GemvArgs& a) {
  if (a.n_tokens != 1 || a.n_in / kQK_K > kTileMaxSuperBlocks) return by_tokens<KQ5K>(a);
  rows16_q45_k<true>(a);
}
void gemv_q5_k_tile(const GemvArgs& a) { by_tokens_tile<KTileQ5K, KQ5K>(a); }

}  // namespace
}  // namespace moetier::cpu

// The tile kernels of the AVX-512 table, ahead of the GEMV kernels of the same type (which keep 2..3 tokens):
// K(type, name, min tokens, max tokens).
#define MOETIER_GEMV_TILE_KERNEL_LIST(K) \
  K(Q4_K, q4_k_tile, 4, 8), K(Q5_K, q5_k_tile, 4, 8), K(Q4_K, q4_k_rows16, 1, 1), K(Q5_K, q5_k_rows16, 1, 1)
