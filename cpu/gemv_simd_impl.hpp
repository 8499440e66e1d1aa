// SIMD GEMV kernel bodies shared by gemv_avx2.cpp and gemv_avx512.cpp. Each includes this file inside its
// own `#pragma GCC target` region after defining MOETIER_GEMV_VNNI (0: AVX2 maddubs/madd for int8 dots;
// 1: AVX512_VNNI vpdpbusd on 256-bit EVEX registers). Everything here has internal linkage (anonymous
// namespace), so the two ISA builds never share a symbol.
//
// All kernels reproduce vec_dot_scalar bit for bit (canonical order in vec_dot.hpp): integer block sums are
// exact in any order (the maddubs pair sums stay below 32767: |signed weight| <= 128 via the sign trick,
// unsigned levels <= 63, activations |q| <= 127), and the f32 operations per (row, token) happen in the
// same sequence as in the scalar code.
//  * 32-element block formats: 8 rows at a time, one row per f32 lane; per block the 8 rows' integer dot
//    vectors are transposed-and-reduced into one vector of 8 block sums, then scaled and accumulated.
//  * K-quants: one row at a time; levels unpacked once per super-block, reused for up to 8 tokens.
//  * F16/BF16: one row at a time, two 8-lane accumulators = the 16 canonical lanes. (F32 weights follow
//    ggml's own F32 orders in ggml_math.cpp and do not come through the registry's SIMD kernels.)
// Requires: <immintrin.h>, cpu/kernel_registry.hpp, cpu/quant_blocks.hpp included before the pragma.
#ifndef MOETIER_GEMV_VNNI
#error "define MOETIER_GEMV_VNNI before including gemv_simd_impl.hpp"
#endif

namespace moetier::cpu {
namespace {

// ---------------------------------------------------------------- primitives

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }  // exact (F16C)

inline uint16_t load_u16(const void* p) {
  uint16_t v;
  __builtin_memcpy(&v, p, 2);
  return v;
}

// acc + sum over groups of 4 of u8(u) * s8(s), per int32 lane (exact: no pair sum reaches 2^15 here).
inline __m256i dot_acc(__m256i acc, __m256i u, __m256i s) {
#if MOETIER_GEMV_VNNI
  return _mm256_dpbusd_epi32(acc, u, s);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}

// Signed weights w (int8) times activations a (int8): |w| * (a with w's sign).
inline __m256i dot_u8s8(__m256i u, __m256i s) {
#if MOETIER_GEMV_VNNI
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}
inline __m256i dot_signed(__m256i w, __m256i a) { return dot_u8s8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w)); }

inline int hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

// Lane r of the result = sum of the 8 int32 lanes of p[r].
inline __m256i reduce8(const __m256i* p) {
  const __m256i ab = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
  const __m256i cd = _mm256_hadd_epi32(_mm256_hadd_epi32(p[4], p[5]), _mm256_hadd_epi32(p[6], p[7]));
  return _mm256_add_epi32(_mm256_permute2x128_si256(ab, cd, 0x20), _mm256_permute2x128_si256(ab, cd, 0x31));
}

// 16 packed nibbles -> 32 bytes: element j < 16 = low nibble of byte j, element 16 + j = high nibble.
inline __m256i nibbles32(const uint8_t* qs) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i both = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

// 32 bits (little-endian u32 at p) -> 32 bytes 0xFF / 0x00.
inline __m256i bits32(const uint8_t* p) {
  uint32_t v;
  __builtin_memcpy(&v, p, 4);
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(v)),
      _mm256_setr_epi64x(0x0000000000000000LL, 0x0101010101010101LL, 0x0202020202020202LL, 0x0303030303030303LL));
  const __m256i mask = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ULL));
  return _mm256_cmpeq_epi8(_mm256_and_si256(spread, mask), mask);
}

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// Weight streams are read once: prefetch this far ahead of the current position (bytes) so that more cache
// lines are in flight than the out-of-order window alone would request.
constexpr int kPrefetchBytes = 1024;
inline void prefetch_ahead(const void* p) {
  _mm_prefetch(static_cast<const char*>(p) + kPrefetchBytes, _MM_HINT_T0);
}

// ---------------------------------------------------------------- 32-element block formats

// Each format: Block type, Act (activation block), signed levels or not, decode(), scale(), and for the
// "_1" formats min() (added term m * s).
// 8 fp16 values (bits) -> 8 f32 lanes in one conversion.
inline __m256 f16x8(uint16_t h0, uint16_t h1, uint16_t h2, uint16_t h3, uint16_t h4, uint16_t h5, uint16_t h6,
                    uint16_t h7) {
  __m128i v = _mm_cvtsi32_si128(h0);
  v = _mm_insert_epi16(v, h1, 1);
  v = _mm_insert_epi16(v, h2, 2);
  v = _mm_insert_epi16(v, h3, 3);
  v = _mm_insert_epi16(v, h4, 4);
  v = _mm_insert_epi16(v, h5, 5);
  v = _mm_insert_epi16(v, h6, 6);
  v = _mm_insert_epi16(v, h7, 7);
  return _mm256_cvtph_ps(v);
}

struct FmtQ8_0 {
  using Block = BlockQ8_0;
  static constexpr bool kSigned = true, kHasMin = false;
  static __m256i decode(const Block& b) { return load256(b.qs); }
  static float scale(const Block& b) { return h2f(b.d); }
};
struct FmtQ4_0 {
  using Block = BlockQ4_0;
  static constexpr bool kSigned = true, kHasMin = false;
  static __m256i decode(const Block& b) { return _mm256_sub_epi8(nibbles32(b.qs), _mm256_set1_epi8(8)); }
  static float scale(const Block& b) { return h2f(b.d); }
};
struct FmtQ5_0 {
  using Block = BlockQ5_0;
  static constexpr bool kSigned = true, kHasMin = false;
  static __m256i decode(const Block& b) {
    const __m256i hi = _mm256_and_si256(bits32(b.qh), _mm256_set1_epi8(0x10));
    return _mm256_sub_epi8(_mm256_or_si256(nibbles32(b.qs), hi), _mm256_set1_epi8(16));
  }
  static float scale(const Block& b) { return h2f(b.d); }
};
struct FmtMxfp4 {
  using Block = BlockMxfp4;
  static constexpr bool kSigned = true, kHasMin = false;
  static __m256i decode(const Block& b) {
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kMxfp4Values)));
    return _mm256_shuffle_epi8(table, nibbles32(b.qs));
  }
  static float scale(const Block& b) {
    const uint32_t bits = e8m0_to_f32_half_bits(b.e);
    float f;
    __builtin_memcpy(&f, &bits, 4);
    return f;
  }
};
struct FmtQ4_1 {
  using Block = BlockQ4_1;
  static constexpr bool kSigned = false, kHasMin = true;
  static __m256i decode(const Block& b) { return nibbles32(b.qs); }
  static float scale(const Block& b) { return h2f(b.d); }
  static float min(const Block& b) { return h2f(b.m); }
};
struct FmtQ5_1 {
  using Block = BlockQ5_1;
  static constexpr bool kSigned = false, kHasMin = true;
  static __m256i decode(const Block& b) {
    return _mm256_or_si256(nibbles32(b.qs), _mm256_and_si256(bits32(b.qh), _mm256_set1_epi8(0x10)));
  }
  static float scale(const Block& b) { return h2f(b.d); }
  static float min(const Block& b) { return h2f(b.m); }
};

// Scales (and mins) of block b of 8 rows as one f32 vector (fp16 formats: one conversion).
template <class F>
inline __m256 scales8(const typename F::Block* const* w, int64_t b) {
  if constexpr (std::is_same_v<F, FmtMxfp4>) {  // e8m0_to_f32_half_bits on 8 lanes
    const __m256i e = _mm256_setr_epi32(w[0][b].e, w[1][b].e, w[2][b].e, w[3][b].e, w[4][b].e, w[5][b].e,
                                        w[6][b].e, w[7][b].e);
    const __m256i normal = _mm256_slli_epi32(_mm256_sub_epi32(e, _mm256_set1_epi32(1)), 23);
    const __m256i tiny = _mm256_sllv_epi32(_mm256_set1_epi32(0x00200000), e);  // e = 0, 1: subnormals
    const __m256i is_tiny = _mm256_cmpgt_epi32(_mm256_set1_epi32(2), e);
    return _mm256_castsi256_ps(_mm256_blendv_epi8(normal, tiny, is_tiny));
  } else {
    return f16x8(w[0][b].d, w[1][b].d, w[2][b].d, w[3][b].d, w[4][b].d, w[5][b].d, w[6][b].d, w[7][b].d);
  }
}
template <class F>
inline __m256 mins8(const typename F::Block* const* w, int64_t b) {
  return f16x8(w[0][b].m, w[1][b].m, w[2][b].m, w[3][b].m, w[4][b].m, w[5][b].m, w[6][b].m, w[7][b].m);
}

template <class F>
using ActBlockOf = std::conditional_t<F::kHasMin, BlockQ8_1, BlockQ8_0>;

template <class F>
inline __m256i block_dot(__m256i w, __m256i a) {
  if constexpr (F::kSigned) return dot_signed(w, a);
  else return dot_u8s8(w, a);
}

template <class F>
inline float act_sum(const ActBlockOf<F>& y) {
  if constexpr (F::kHasMin) return h2f(y.s);
  else return 0.0f;
}

// 8 rows r0..r0+7, T tokens.
template <class F, int T>
void rows8_q32(const GemvArgs& a, int64_t r0) {
  using Block = typename F::Block;
  using Act = ActBlockOf<F>;
  const int64_t nb = a.n_in / 32;
  const Block* w[8];
  for (int r = 0; r < 8; ++r) w[r] = reinterpret_cast<const Block*>(a.w + static_cast<size_t>(r0 + r) * a.w_row_bytes);
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const __m256 dx = scales8<F>(w, b);
    __m256 mx = _mm256_setzero_ps();
    if constexpr (F::kHasMin) mx = mins8<F>(w, b);
    if constexpr (T == 1) {  // decode and multiply at once: nothing to keep for other tokens
      const Act& y = reinterpret_cast<const Act*>(a.act)[b];
      const __m256i av = load256(y.qs);
      __m256i p[8];
#pragma GCC unroll 8
      for (int r = 0; r < 8; ++r) p[r] = block_dot<F>(F::decode(w[r][b]), av);
      __m256 tb = _mm256_mul_ps(_mm256_cvtepi32_ps(reduce8(p)), _mm256_mul_ps(dx, _mm256_set1_ps(h2f(y.d))));
      if constexpr (F::kHasMin) tb = _mm256_add_ps(tb, _mm256_mul_ps(mx, _mm256_set1_ps(act_sum<F>(y))));
      acc[0] = _mm256_add_ps(acc[0], tb);
    } else {
      __m256i wv[8];
#pragma GCC unroll 8
      for (int r = 0; r < 8; ++r) wv[r] = F::decode(w[r][b]);
      for (int t = 0; t < T; ++t) {
        const Act& y = reinterpret_cast<const Act*>(a.act + static_cast<size_t>(t) * a.act_stride)[b];
        const __m256i av = load256(y.qs);
        __m256i p[8];
#pragma GCC unroll 8
        for (int r = 0; r < 8; ++r) p[r] = block_dot<F>(wv[r], av);
        __m256 tb = _mm256_mul_ps(_mm256_cvtepi32_ps(reduce8(p)), _mm256_mul_ps(dx, _mm256_set1_ps(h2f(y.d))));
        if constexpr (F::kHasMin) tb = _mm256_add_ps(tb, _mm256_mul_ps(mx, _mm256_set1_ps(act_sum<F>(y))));
        acc[t] = _mm256_add_ps(acc[t], tb);
      }
    }
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(a.y + t * a.ldy + r0, acc[t]);
}

// One row, T tokens (row tails): same f32 sequence as the 8-row path, integer sums by horizontal add.
template <class F, int T>
void row1_q32(const GemvArgs& a, int64_t r) {
  using Block = typename F::Block;
  using Act = ActBlockOf<F>;
  const int64_t nb = a.n_in / 32;
  const Block* w = reinterpret_cast<const Block*>(a.w + static_cast<size_t>(r) * a.w_row_bytes);
  float acc[T] = {};
  for (int64_t b = 0; b < nb; ++b) {
    const __m256i wv = F::decode(w[b]);
    const float dx = F::scale(w[b]);
    for (int t = 0; t < T; ++t) {
      const Act& y = reinterpret_cast<const Act*>(a.act + static_cast<size_t>(t) * a.act_stride)[b];
      const int isum = hsum_i32(block_dot<F>(wv, load256(y.qs)));
      float tb = static_cast<float>(isum) * (dx * h2f(y.d));
      if constexpr (F::kHasMin) tb = tb + F::min(w[b]) * act_sum<F>(y);
      acc[t] = acc[t] + tb;
    }
  }
  for (int t = 0; t < T; ++t) a.y[t * a.ldy + r] = acc[t];
}

template <class F, int T>
void run_q32(const GemvArgs& a) {
  int64_t r = a.row_begin;
  for (; r + 8 <= a.row_end; r += 8) rows8_q32<F, T>(a, r);
  for (; r < a.row_end; ++r) row1_q32<F, T>(a, r);
}

// ---------------------------------------------------------------- K-quants (one row, T tokens)

inline __m256i pair_scales(int lo, int hi) {  // int16 lanes 0-7 = lo, 8-15 = hi (sub-blocks of 16)
  return _mm256_set_m128i(_mm_set1_epi16(static_cast<int16_t>(hi)), _mm_set1_epi16(static_cast<int16_t>(lo)));
}

inline const BlockQ8_K& act_k(const GemvArgs& a, int t, int64_t sb) {
  return reinterpret_cast<const BlockQ8_K*>(a.act + static_cast<size_t>(t) * a.act_stride)[sb];
}

// Q4_K/Q5_K 6-bit scales and mins of the 8 sub-blocks, as bytes 0..7 of two u64 (get_scale_min_k4 done
// on whole words: no byte stores, so no store-forwarding stalls).
inline void k4_scales_mins(const uint8_t* s12, uint64_t& sc8, uint64_t& mn8) {
  uint32_t u0, u1, u2;
  __builtin_memcpy(&u0, s12, 4);
  __builtin_memcpy(&u1, s12 + 4, 4);
  __builtin_memcpy(&u2, s12 + 8, 4);
  const uint32_t s03 = u0 & 0x3f3f3f3fu, m03 = u1 & 0x3f3f3f3fu;
  const uint32_t s47 = (u2 & 0x0f0f0f0fu) | (((u0 >> 6) & 0x03030303u) << 4);
  const uint32_t m47 = ((u2 >> 4) & 0x0f0f0f0fu) | (((u1 >> 6) & 0x03030303u) << 4);
  sc8 = s03 | (static_cast<uint64_t>(s47) << 32);
  mn8 = m03 | (static_cast<uint64_t>(m47) << 32);
}

// Super-block term of Q4_K/Q5_K/Q2_K-style formats, vectorised but in the canonical f32 order:
// tb = (dy * d) * float(isum) - (dy * dmin) * float(msum). isum4/msum4 hold partial int sums (4 lanes each);
// dd = [d, dmin, ...] as f32. Returns tb in lane 0.
inline __m128 kquant_term(__m128i isum4, __m128i msum4, __m128 dd, float dy) {
  __m128i s = _mm_hadd_epi32(isum4, msum4);  // [i01, i23, m01, m23]
  s = _mm_hadd_epi32(s, s);                   // [isum, msum, isum, msum]
  const __m128 prod = _mm_mul_ps(_mm_cvtepi32_ps(s), _mm_mul_ps(dd, _mm_set1_ps(dy)));
  return _mm_sub_ss(prod, _mm_movehdup_ps(prod));
}

inline __m128i fold8(__m256i v) { return _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1)); }

// Q4_K (kHigh = false) and Q5_K (kHigh = true). Per token: the 8 sub-block dots (int32 x 8 lanes each) are
// transposed-and-reduced to one vector of 8 sub-block sums, multiplied by the 8 scales, and summed.
template <bool kHigh, int T>
void row_q45_k(const GemvArgs& a, int64_t r) {
  using Block = std::conditional_t<kHigh, BlockQ5_K, BlockQ4_K>;
  const Block* x = reinterpret_cast<const Block*>(a.w + static_cast<size_t>(r) * a.w_row_bytes);
  const int64_t nsb = a.n_in / kQK_K;
  __m128 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm_setzero_ps();
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const Block& blk = x[sb];
    prefetch_ahead(&blk);
    prefetch_ahead(reinterpret_cast<const char*>(&blk) + 64);
    prefetch_ahead(reinterpret_cast<const char*>(&blk) + 128);
    uint64_t sc8, mn8;
    k4_scales_mins(blk.scales, sc8, mn8);
    const __m256i sc32 = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(sc8)));
    const __m128i mins16 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(mn8)));
    uint32_t dbits;
    __builtin_memcpy(&dbits, &blk.d, 4);  // d, dmin adjacent
    const __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(dbits)));
    __m256i qh;
    if constexpr (kHigh) qh = load256(blk.qh);
    __m256i q[8];
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      const __m256i raw = load256(blk.qs + 32 * c);
      q[2 * c] = _mm256_and_si256(raw, m4);
      q[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
      if constexpr (kHigh) {  // bit 2c / 2c+1 of qh[l] -> +16
        const __m256i h = _mm256_srli_epi16(qh, 2 * c);
        q[2 * c] = _mm256_or_si256(q[2 * c], _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi8(1)), 4));
        q[2 * c + 1] = _mm256_or_si256(q[2 * c + 1], _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi8(2)), 3));
      }
    }
    for (int t = 0; t < T; ++t) {
      const BlockQ8_K& y = act_k(a, t, sb);
      __m256i p[8];
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) p[j] = dot_u8s8(q[j], load256(y.qs + 32 * j));
      const __m128i isum4 = fold8(_mm256_mullo_epi32(reduce8(p), sc32));
      const __m256i bs = load256(y.bsums);
      const __m128i pairs = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
      const __m128i msum4 = _mm_madd_epi16(mins16, pairs);  // sum_j m_j * (bsums[2j] + bsums[2j+1])
      acc[t] = _mm_add_ss(acc[t], kquant_term(isum4, msum4, dd, y.d));
    }
  }
  for (int t = 0; t < T; ++t) a.y[t * a.ldy + r] = _mm_cvtss_f32(acc[t]);
}

template <int T>
void row_q6_k(const GemvArgs& a, int64_t r) {
  const BlockQ6_K* x = reinterpret_cast<const BlockQ6_K*>(a.w + static_cast<size_t>(r) * a.w_row_bytes);
  const int64_t nsb = a.n_in / kQK_K;
  float acc[T] = {};
  const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x03);
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const BlockQ6_K& blk = x[sb];
    __m256i q[8], sv[8];
    for (int h = 0; h < 2; ++h) {
      const __m256i ql0 = load256(blk.ql + 64 * h), ql1 = load256(blk.ql + 64 * h + 32);
      const __m256i qh = load256(blk.qh + 32 * h);
      const __m256i lows[4] = {_mm256_and_si256(ql0, m4), _mm256_and_si256(ql1, m4),
                               _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                               _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4)};
      for (int g = 0; g < 4; ++g) {
        const __m256i high = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * g), m2);
        q[4 * h + g] = _mm256_or_si256(lows[g], _mm256_slli_epi16(high, 4));
        sv[4 * h + g] = pair_scales(blk.scales[8 * h + 2 * g], blk.scales[8 * h + 2 * g + 1]);
      }
    }
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.scales)));
    const float d = h2f(blk.d);
    for (int t = 0; t < T; ++t) {
      const BlockQ8_K& y = act_k(a, t, sb);
      __m256i sumi = _mm256_setzero_si256();
      for (int k = 0; k < 8; ++k)
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], load256(y.qs + 32 * k)), sv[k]));
      const int offs = hsum_i32(_mm256_madd_epi16(load256(y.bsums), sc16));  // sum_j sc_j * bsum_j
      const int isum = hsum_i32(sumi) - 32 * offs;
      acc[t] = acc[t] + (y.d * d) * static_cast<float>(isum);
    }
  }
  for (int t = 0; t < T; ++t) a.y[t * a.ldy + r] = acc[t];
}

// Q2_K (kQ3 = false: levels 0..3, scale = low nibble, min = high nibble) and Q3_K (kQ3 = true: levels
// low2 | hbit << 2 in 0..7 minus 4, signed 6-bit scales).
template <bool kQ3, int T>
void row_q23_k(const GemvArgs& a, int64_t r) {
  using Block = std::conditional_t<kQ3, BlockQ3_K, BlockQ2_K>;
  const Block* x = reinterpret_cast<const Block*>(a.w + static_cast<size_t>(r) * a.w_row_bytes);
  const int64_t nsb = a.n_in / kQK_K;
  float acc[T] = {};
  const __m256i m2 = _mm256_set1_epi8(0x03);
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const Block& blk = x[sb];
    int8_t sc[16];
    int16_t mn16[16] = {};
    if constexpr (kQ3) {
      unpack_q3_k_scales(blk.scales, sc);
    } else {
      for (int j = 0; j < 16; ++j) {
        sc[j] = static_cast<int8_t>(blk.scales[j] & 0xF);
        mn16[j] = static_cast<int16_t>(blk.scales[j] >> 4);
      }
    }
    __m256i q[8], sv[8];
    for (int h = 0; h < 2; ++h) {
      const __m256i q2 = load256(blk.qs + 32 * h);
      for (int s = 0; s < 4; ++s) {
        __m256i v = _mm256_and_si256(_mm256_srli_epi16(q2, 2 * s), m2);
        if constexpr (kQ3) {
          const __m256i bit = _mm256_set1_epi8(static_cast<char>(1 << (4 * h + s)));
          const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(load256(blk.hmask), bit), bit);
          v = _mm256_or_si256(v, _mm256_and_si256(set, _mm256_set1_epi8(0x04)));
        }
        q[4 * h + s] = v;
        sv[4 * h + s] = pair_scales(sc[8 * h + 2 * s], sc[8 * h + 2 * s + 1]);
      }
    }
    __m256i sc16;
    if constexpr (kQ3) sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sc)));
    else sc16 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(mn16));
    const float d = h2f(blk.d);
    float dmin = 0.0f;
    if constexpr (!kQ3) dmin = h2f(blk.dmin);
    for (int t = 0; t < T; ++t) {
      const BlockQ8_K& y = act_k(a, t, sb);
      __m256i sumi = _mm256_setzero_si256();
      for (int k = 0; k < 8; ++k)
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], load256(y.qs + 32 * k)), sv[k]));
      const int side = hsum_i32(_mm256_madd_epi16(load256(y.bsums), sc16));
      float tb;
      if constexpr (kQ3) {
        tb = (y.d * d) * static_cast<float>(hsum_i32(sumi) - 4 * side);
      } else {
        tb = (y.d * d) * static_cast<float>(hsum_i32(sumi)) - (y.d * dmin) * static_cast<float>(side);
      }
      acc[t] = acc[t] + tb;
    }
  }
  for (int t = 0; t < T; ++t) a.y[t * a.ldy + r] = acc[t];
}

template <void (*Row)(const GemvArgs&, int64_t)>
void run_rows(const GemvArgs& a) {
  for (int64_t r = a.row_begin; r < a.row_end; ++r) Row(a, r);
}

// ---------------------------------------------------------------- float weights (16 canonical lanes)

struct WF16 {
  using Elem = uint16_t;
  static __m256 load8(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
};
struct WBF16 {
  using Elem = uint16_t;
  static __m256 load8(const uint16_t* p) {
    const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
  }
};

inline float reduce16(__m256 lo, __m256 hi) {
  const __m256 s8 = _mm256_add_ps(lo, hi);
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

// lo/hi[t] += w[0..16) * x_t[i..i+16) for the T tokens (the 16 canonical lanes as two 8-lane halves).
template <class W, int T>
inline void float_step(const GemvArgs& a, const typename W::Elem* wp, int64_t i, __m256* lo, __m256* hi) {
  const __m256 w0 = W::load8(wp), w1 = W::load8(wp + 8);
  for (int t = 0; t < T; ++t) {
    const float* x = reinterpret_cast<const float*>(a.act + static_cast<size_t>(t) * a.act_stride) + i;
    lo[t] = _mm256_add_ps(lo[t], _mm256_mul_ps(w0, _mm256_loadu_ps(x)));
    hi[t] = _mm256_add_ps(hi[t], _mm256_mul_ps(w1, _mm256_loadu_ps(x + 8)));
  }
}

template <class W, int T>
void row_float(const GemvArgs& a, int64_t r) {
  using Elem = typename W::Elem;
  const Elem* w = reinterpret_cast<const Elem*>(a.w + static_cast<size_t>(r) * a.w_row_bytes);
  const int64_t n = a.n_in, n16 = n / 16 * 16;
  __m256 lo[T], hi[T];
  for (int t = 0; t < T; ++t) lo[t] = hi[t] = _mm256_setzero_ps();
  for (int64_t i = 0; i < n16; i += 16) {
    if (i % 32 == 0) prefetch_ahead(w + i);  // one line per 64 bytes of weights
    float_step<W, T>(a, w + i, i, lo, hi);
  }
  if (n16 < n) {  // tail: zero weights beyond n (activation rows are zero-padded to 16)
    Elem tail[16] = {};
    __builtin_memcpy(tail, w + n16, static_cast<size_t>(n - n16) * sizeof(Elem));
    float_step<W, T>(a, tail, n16, lo, hi);
  }
  for (int t = 0; t < T; ++t) a.y[t * a.ldy + r] = reduce16(lo[t], hi[t]);
}

// ---------------------------------------------------------------- token-count dispatch

template <template <int> class K>
void by_tokens(const GemvArgs& a) {
  switch (a.n_tokens) {
    case 1: K<1>::run(a); break;
    case 2: K<2>::run(a); break;
    case 3: K<3>::run(a); break;
    case 4: K<4>::run(a); break;
    case 5: K<5>::run(a); break;
    case 6: K<6>::run(a); break;
    case 7: K<7>::run(a); break;
    default: K<8>::run(a); break;
  }
}

template <class F> struct Q32 { template <int T> struct K { static void run(const GemvArgs& a) { run_q32<F, T>(a); } }; };
template <class W> struct Flt { template <int T> struct K { static void run(const GemvArgs& a) { run_rows<row_float<W, T>>(a); } }; };
template <int T> struct KQ4K { static void run(const GemvArgs& a) { run_rows<row_q45_k<false, T>>(a); } };
template <int T> struct KQ5K { static void run(const GemvArgs& a) { run_rows<row_q45_k<true, T>>(a); } };
template <int T> struct KQ6K { static void run(const GemvArgs& a) { run_rows<row_q6_k<T>>(a); } };
template <int T> struct KQ2K { static void run(const GemvArgs& a) { run_rows<row_q23_k<false, T>>(a); } };
template <int T> struct KQ3K { static void run(const GemvArgs& a) { run_rows<row_q23_k<true, T>>(a); } };

void gemv_q8_0(const GemvArgs& a) { by_tokens<Q32<FmtQ8_0>::K>(a); }
void gemv_q4_0(const GemvArgs& a) { by_tokens<Q32<FmtQ4_0>::K>(a); }
void gemv_q5_0(const GemvArgs& a) { by_tokens<Q32<FmtQ5_0>::K>(a); }
void gemv_mxfp4(const GemvArgs& a) { by_tokens<Q32<FmtMxfp4>::K>(a); }
void gemv_q4_1(const GemvArgs& a) { by_tokens<Q32<FmtQ4_1>::K>(a); }
void gemv_q5_1(const GemvArgs& a) { by_tokens<Q32<FmtQ5_1>::K>(a); }
void gemv_q2_k(const GemvArgs& a) { by_tokens<KQ2K>(a); }
void gemv_q3_k(const GemvArgs& a) { by_tokens<KQ3K>(a); }
void gemv_q4_k(const GemvArgs& a) { by_tokens<KQ4K>(a); }
void gemv_q5_k(const GemvArgs& a) { by_tokens<KQ5K>(a); }
void gemv_q6_k(const GemvArgs& a) { by_tokens<KQ6K>(a); }
void gemv_f16(const GemvArgs& a) { by_tokens<Flt<WF16>::K>(a); }
void gemv_bf16(const GemvArgs& a) { by_tokens<Flt<WBF16>::K>(a); }

}  // namespace
}  // namespace moetier::cpu
