// IQ GEMV kernel bodies (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ4_XS with Q8_K activations),
// part of gemv_simd_impl.hpp: included by it (inside the ISA target region, in its anonymous namespace) and
// nowhere else. One row at a time; a super-block's 8 sub-blocks are decoded once (grid entries gathered
// from the iq_tables.hpp tables, signs as 0x00 / 0xFF byte masks) and reused for up to 8 tokens. Per 32
// elements vpmaddubsw on the unsigned grid magnitudes and the sign-adjusted activations, then the two
// half-sub-block scales by madd_acc; the f32 steps are vec_dot_iq.cpp's, in its order (bit-identical).
// Exactness: pair sums <= 2 * 62 * 127 (IQ3 grids), 2 * 127 * 127 (IQ4) < 2^15; |activations| <= 127.
#ifndef MOETIER_GEMV_VNNI
#error "include gemv_simd_impl.hpp, not this file"
#endif

// ---------------------------------------------------------------- IQ (one row, T tokens)

template <size_t N>
inline __m256i grid4(const std::array<uint64_t, N>& g, int i0, int i1, int i2, int i3) {
  return _mm256_setr_epi64x(static_cast<long long>(g[i0]), static_cast<long long>(g[i1]),
                            static_cast<long long>(g[i2]), static_cast<long long>(g[i3]));
}
template <size_t N>
inline __m256i grid8x4(const std::array<uint32_t, N>& g, const int* i) {
  return _mm256_setr_epi32(static_cast<int>(g[i[0]]), static_cast<int>(g[i[1]]), static_cast<int>(g[i[2]]),
                           static_cast<int>(g[i[3]]), static_cast<int>(g[i[4]]), static_cast<int>(g[i[5]]),
                           static_cast<int>(g[i[6]]), static_cast<int>(g[i[7]]));
}
// Sign operand for _mm256_sign_epi8 from four 7-bit sign codes: -1 where negated, +1 elsewhere.
inline __m256i signs4(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3) {
  const __m256i m = grid4(kIqSigns64, static_cast<int>(c0), static_cast<int>(c1), static_cast<int>(c2),
                          static_cast<int>(c3));
  return _mm256_or_si256(m, _mm256_set1_epi8(1));
}
// The same from the four 7-bit codes in bits 0-27 of aux, computed without tables: the codes spread to bytes,
// each byte's bit 7 set to the parity of its bits 0-6 (iq2_signs), then expanded. Used for IQ3_XXS, where it
// measured faster (AVX2, one core, CPU time: 2.5-2.8 vs 2.0-2.3 GB/s); for IQ2_XXS the table lookups did
// (2.1-2.2 vs 1.2-1.3 GB/s), for reasons not investigated.
inline __m256i signs_aux(uint32_t aux) {
  const uint32_t c = (aux & 0x7Fu) | ((aux << 1) & 0x7F00u) | ((aux << 2) & 0x7F0000u) | ((aux << 3) & 0x7F000000u);
  uint32_t p = c ^ (c >> 4);  // bit 0 of each byte ends as the xor of that byte's 8 bits (bit 7 is 0)
  p ^= p >> 2;
  p ^= p >> 1;
  const uint32_t bits = c | ((p & 0x01010101u) << 7);
  uint8_t b[4];
  __builtin_memcpy(b, &bits, 4);
  return _mm256_or_si256(bits32(b), _mm256_set1_epi8(1));
}
// The same from 32 explicit sign bits (bit i negates element i).
inline __m256i signs_bits(const uint8_t* p) { return _mm256_or_si256(bits32(p), _mm256_set1_epi8(1)); }
// madd multiplier: int16 lanes 0-7 (elements 0-15) = s0, lanes 8-15 = s1.
inline __m256i half_scales(int s0, int s1) {
  return _mm256_setr_m128i(_mm_set1_epi16(static_cast<int16_t>(s0)), _mm_set1_epi16(static_cast<int16_t>(s1)));
}

// Signed-grid formats: decode(x, b, g, s, sc): g = unsigned grid bytes, s = sign operand, sc = 2s + 1 halves.
struct IqIq2xxs {
  using Block = BlockIQ2_XXS;
  static constexpr float kFactor = 0.125f;
  static void decode(const Block& x, int b, __m256i& g, __m256i& s, __m256i& sc) {
    const uint8_t* p = reinterpret_cast<const uint8_t*>(&x) + 2 + 8 * b;
    uint32_t aux;
    __builtin_memcpy(&aux, p + 4, 4);
    g = grid4(kIq2xxsGrid, p[0], p[1], p[2], p[3]);
    s = signs4(aux & 127, (aux >> 7) & 127, (aux >> 14) & 127, (aux >> 21) & 127);
    const int ls = 2 * static_cast<int>(aux >> 28) + 1;
    sc = half_scales(ls, ls);
  }
};
struct IqIq2xs {
  using Block = BlockIQ2_XS;
  static constexpr float kFactor = 0.125f;
  static void decode(const Block& x, int b, __m256i& g, __m256i& s, __m256i& sc) {
    const uint8_t* p = reinterpret_cast<const uint8_t*>(&x) + 2 + 8 * b;
    uint16_t q[4];
    __builtin_memcpy(q, p, 8);
    g = grid4(kIq2xsGrid, q[0] & 511, q[1] & 511, q[2] & 511, q[3] & 511);
    s = signs4(q[0] >> 9, q[1] >> 9, q[2] >> 9, q[3] >> 9);
    sc = half_scales(2 * (x.scales[b] & 15) + 1, 2 * (x.scales[b] >> 4) + 1);
  }
};
struct IqIq2s {
  using Block = BlockIQ2_S;
  static constexpr float kFactor = 0.125f;
  static void decode(const Block& x, int b, __m256i& g, __m256i& s, __m256i& sc) {
    const uint8_t* q = x.qs + 4 * b;
    const int h = x.qh[b];
    g = grid4(kIq2sGrid, q[0] | ((h & 3) << 8), q[1] | (((h >> 2) & 3) << 8), q[2] | (((h >> 4) & 3) << 8),
              q[3] | (((h >> 6) & 3) << 8));
    s = signs_bits(x.qs + 32 + 4 * b);
    sc = half_scales(2 * (x.scales[b] & 15) + 1, 2 * (x.scales[b] >> 4) + 1);
  }
};
struct IqIq3xxs {
  using Block = BlockIQ3_XXS;
  static constexpr float kFactor = 0.25f;
  static void decode(const Block& x, int b, __m256i& g, __m256i& s, __m256i& sc) {
    const uint8_t* q = x.qs + 8 * b;
    const int idx[8] = {q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7]};
    uint32_t aux;
    __builtin_memcpy(&aux, x.qs + 64 + 4 * b, 4);
    g = grid8x4(kIq3xxsGrid, idx);
    s = signs_aux(aux);
    const int ls = 2 * static_cast<int>(aux >> 28) + 1;
    sc = half_scales(ls, ls);
  }
};
struct IqIq3s {
  using Block = BlockIQ3_S;
  static constexpr float kFactor = 1.0f;
  static void decode(const Block& x, int b, __m256i& g, __m256i& s, __m256i& sc) {
    const uint8_t* q = x.qs + 8 * b;
    const int h = x.qh[b];
    int idx[8];
    for (int k = 0; k < 8; ++k) idx[k] = q[k] | (((h >> k) & 1) << 8);
    g = grid8x4(kIq3sGrid, idx);
    s = signs_bits(x.signs + 4 * b);
    const int ls = 2 * ((b % 2 ? x.scales[b / 2] >> 4 : x.scales[b / 2]) & 15) + 1;
    sc = half_scales(ls, ls);
  }
};

template <class F, int T>
void row_iq_grid(const GemvArgs& a, int64_t r) {
  const auto* x = reinterpret_cast<const typename F::Block*>(a.w + static_cast<size_t>(r) * a.w_row_bytes);
  const int64_t nbk = a.n_in / kQK_K;
  float acc[T] = {};
  __m256i g[8], s[8], sc[8];
  for (int64_t i = 0; i < nbk; ++i) {
    for (int b = 0; b < 8; ++b) F::decode(x[i], b, g[b], s[b], sc[b]);
    const float dx = h2f(x[i].d);
    for (int t = 0; t < T; ++t) {
      const BlockQ8_K& y = act_k(a, t, i);
      __m256i isum = _mm256_setzero_si256();
#pragma GCC unroll 8
      for (int b = 0; b < 8; ++b)
        isum = madd_acc(isum, _mm256_maddubs_epi16(g[b], _mm256_sign_epi8(load256(y.qs + 32 * b), s[b])), sc[b]);
      acc[t] = acc[t] + (dx * y.d) * static_cast<float>(hsum_i32(isum));
    }
  }
  for (int t = 0; t < T; ++t) a.y[t * a.ldy + r] = F::kFactor == 1.0f ? acc[t] : F::kFactor * acc[t];
}

// IQ1_S / IQ1_M: w = grid levels (-1, 0, 1), dl = delta sign per 8-group (+-1 bytes), sc = 2s + 1 halves.
// The delta term sums (2s + 1) * (+-1) * sum(a) per 8-group: by maddubs for IQ1_M, from Q8_K's bsums for IQ1_S
// (one sign and scale per sub-block, delta_scale).
inline __m256i delta4(bool n0, bool n1, bool n2, bool n3) {
  constexpr long long kPos = 0x0101010101010101LL, kNeg = -1LL;
  return _mm256_setr_epi64x(n0 ? kNeg : kPos, n1 ? kNeg : kPos, n2 ? kNeg : kPos, n3 ? kNeg : kPos);
}
struct IqIq1s {
  using Block = BlockIQ1_S;
  static constexpr bool kUniformDelta = true;  // one delta sign per sub-block: sum(a) from Q8_K's bsums
  static int delta_scale(const Block& x, int b) {
    const int h = x.qh[b];
    return (h & 0x8000 ? -1 : 1) * (2 * ((h >> 12) & 7) + 1);
  }
  static float scale(const Block& x) { return h2f(x.d); }
  static void decode(const Block& x, int b, __m256i& w, __m256i& dl, __m256i& sc) {
    const uint8_t* q = x.qs + 4 * b;
    const int h = x.qh[b];
    w = grid4(kIq1sGrid, q[0] | ((h & 7) << 8), q[1] | (((h >> 3) & 7) << 8), q[2] | (((h >> 6) & 7) << 8),
              q[3] | (((h >> 9) & 7) << 8));
    const bool neg = (h & 0x8000) != 0;
    dl = delta4(neg, neg, neg, neg);
    const int ls = 2 * ((h >> 12) & 7) + 1;
    sc = half_scales(ls, ls);
  }
};
struct IqIq1m {
  using Block = BlockIQ1_M;
  static constexpr bool kUniformDelta = false;
  static int delta_scale(const Block&, int) { return 0; }
  static float scale(const Block& x) { return h2f(iq::iq1m_scale_bits(x)); }
  static void decode(const Block& x, int b, __m256i& w, __m256i& dl, __m256i& sc) {
    const uint8_t* q = x.qs + 4 * b;
    const int h0 = x.qh[2 * b], h1 = x.qh[2 * b + 1];
    w = grid4(kIq1sGrid, q[0] | ((h0 & 7) << 8), q[1] | (((h0 >> 4) & 7) << 8), q[2] | ((h1 & 7) << 8),
              q[3] | (((h1 >> 4) & 7) << 8));
    dl = delta4(h0 & 0x08, h0 & 0x80, h1 & 0x08, h1 & 0x80);
    const int sw = load_u16(x.scales + 2 * (b / 2)) >> (6 * (b % 2));
    sc = half_scales(2 * (sw & 7) + 1, 2 * ((sw >> 3) & 7) + 1);
  }
};

template <class F, int T>
void row_iq1(const GemvArgs& a, int64_t r) {
  const auto* x = reinterpret_cast<const typename F::Block*>(a.w + static_cast<size_t>(r) * a.w_row_bytes);
  const int64_t nbk = a.n_in / kQK_K;
  float acc[T] = {};
  __m256i w[8], wu[8], dl[8], sc[8];
  int ds[8];
  const __m256i ones = _mm256_set1_epi8(1);
  for (int64_t i = 0; i < nbk; ++i) {
    for (int b = 0; b < 8; ++b) {
      F::decode(x[i], b, w[b], dl[b], sc[b]);
      wu[b] = _mm256_sign_epi8(w[b], w[b]);
      ds[b] = F::delta_scale(x[i], b);
    }
    const float d = F::scale(x[i]);
    for (int t = 0; t < T; ++t) {
      const BlockQ8_K& y = act_k(a, t, i);
      __m256i isum = _mm256_setzero_si256(), dsum = _mm256_setzero_si256();
      int sumd = 0;
#pragma GCC unroll 8
      for (int b = 0; b < 8; ++b) {
        const __m256i av = load256(y.qs + 32 * b);
        isum = madd_acc(isum, _mm256_maddubs_epi16(wu[b], _mm256_sign_epi8(av, w[b])), sc[b]);
        if constexpr (F::kUniformDelta)
          sumd += ds[b] * (y.bsums[2 * b] + y.bsums[2 * b + 1]);
        else
          dsum = madd_acc(dsum, _mm256_maddubs_epi16(ones, _mm256_sign_epi8(av, dl[b])), sc[b]);
      }
      if constexpr (!F::kUniformDelta) sumd = hsum_i32(dsum);
      acc[t] = acc[t] + (d * y.d) * (static_cast<float>(hsum_i32(isum)) + 0.125f * static_cast<float>(sumd));
    }
  }
  for (int t = 0; t < T; ++t) a.y[t * a.ldy + r] = acc[t];
}

// IQ4_XS: levels from the 16-value table; per 32-block f32 term ((dx * dy) * float(ls - 32)) * float(dot)
// (one row: the tail of rows8_iq4_xs).
alignas(16) constexpr int8_t kIq4nlTable[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                                1,    13,   25,  38,  53,  69,  89,  113};
inline __m256i iq4_levels(const uint8_t* qs) {
  const __m256i table = _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(kIq4nlTable)));
  return _mm256_shuffle_epi8(table, nibbles32(qs));
}

template <int T>
void row_iq4_xs(const GemvArgs& a, int64_t r) {
  const auto* x = reinterpret_cast<const BlockIQ4_XS*>(a.w + static_cast<size_t>(r) * a.w_row_bytes);
  const int64_t nbk = a.n_in / kQK_K;
  float acc[T] = {};
  __m256i w[8], wu[8];
  float ls[8];
  for (int64_t i = 0; i < nbk; ++i) {
    for (int b = 0; b < 8; ++b) {
      w[b] = iq4_levels(x[i].qs + 16 * b);
      wu[b] = _mm256_sign_epi8(w[b], w[b]);
      const int l = ((x[i].scales_l[b / 2] >> (4 * (b % 2))) & 15) | (((x[i].scales_h >> (2 * b)) & 3) << 4);
      ls[b] = static_cast<float>(l - 32);
    }
    const float dx = h2f(x[i].d);
    for (int t = 0; t < T; ++t) {
      const BlockQ8_K& y = act_k(a, t, i);
      __m256i p[8];
#pragma GCC unroll 8
      for (int b = 0; b < 8; ++b) p[b] = dot_u8s8(wu[b], _mm256_sign_epi8(load256(y.qs + 32 * b), w[b]));
      alignas(32) int32_t sums[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(sums), reduce8(p));
      const float dxy = dx * y.d;
      float at = acc[t];
      for (int b = 0; b < 8; ++b) at = at + (dxy * ls[b]) * static_cast<float>(sums[b]);
      acc[t] = at;
    }
  }
  for (int t = 0; t < T; ++t) a.y[t * a.ldy + r] = acc[t];
}

// IQ4_XS, 8 rows at a time (one row per f32 lane, as rows8_q32): per 32-block the 8 rows' integer dots are
// reduced into one vector, then acc = acc + ((dx * dy) * float(ls - 32)) * float(dot) lane by lane, which is
// row_iq4_xs's sequence for each row.
inline int iq4_xs_ls(const BlockIQ4_XS& x, int b) {
  return (((x.scales_l[b / 2] >> (4 * (b % 2))) & 15) | (((x.scales_h >> (2 * b)) & 3) << 4)) - 32;
}
template <int T>
void rows8_iq4_xs(const GemvArgs& a, int64_t r0) {
  const BlockIQ4_XS* w[8];
  for (int r = 0; r < 8; ++r)
    w[r] = reinterpret_cast<const BlockIQ4_XS*>(a.w + static_cast<size_t>(r0 + r) * a.w_row_bytes);
  const int64_t nbk = a.n_in / kQK_K;
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t i = 0; i < nbk; ++i) {
    const __m256 dx = f16x8(w[0][i].d, w[1][i].d, w[2][i].d, w[3][i].d, w[4][i].d, w[5][i].d, w[6][i].d, w[7][i].d);
    __m256 dxy[T];
    for (int t = 0; t < T; ++t) dxy[t] = _mm256_mul_ps(dx, _mm256_set1_ps(act_k(a, t, i).d));
    for (int b = 0; b < 8; ++b) {
      __m256i wv[8], wu[8];
#pragma GCC unroll 8
      for (int r = 0; r < 8; ++r) {
        wv[r] = iq4_levels(w[r][i].qs + 16 * b);
        wu[r] = _mm256_sign_epi8(wv[r], wv[r]);
      }
      const __m256 ls = _mm256_cvtepi32_ps(_mm256_setr_epi32(iq4_xs_ls(w[0][i], b), iq4_xs_ls(w[1][i], b),
          iq4_xs_ls(w[2][i], b), iq4_xs_ls(w[3][i], b), iq4_xs_ls(w[4][i], b), iq4_xs_ls(w[5][i], b),
          iq4_xs_ls(w[6][i], b), iq4_xs_ls(w[7][i], b)));
      for (int t = 0; t < T; ++t) {
        const __m256i av = load256(act_k(a, t, i).qs + 32 * b);
        __m256i p[8];
#pragma GCC unroll 8
        for (int r = 0; r < 8; ++r) p[r] = dot_u8s8(wu[r], _mm256_sign_epi8(av, wv[r]));
        acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(_mm256_mul_ps(dxy[t], ls), _mm256_cvtepi32_ps(reduce8(p))));
      }
    }
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(a.y + t * a.ldy + r0, acc[t]);
}
template <int T>
void run_iq4_xs(const GemvArgs& a) {
  int64_t r = a.row_begin;
  for (; r + 8 <= a.row_end; r += 8) rows8_iq4_xs<T>(a, r);
  for (; r < a.row_end; ++r) row_iq4_xs<T>(a, r);
}

// IQ4_NL: a 32-element format with signed table levels and Q8_0 activations (the Q4_0 path of rows8_q32).
struct FmtIQ4_NL {
  using Block = BlockIQ4_NL;
  static constexpr bool kSigned = true, kHasMin = false;
  static constexpr int kOffset = 0;
  static __m256i decode(const Block& b) { return iq4_levels(b.qs); }
  static float scale(const Block& b) { return h2f(b.d); }
};
