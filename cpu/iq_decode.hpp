// Decoding of one 32-element sub-block of an IQ block (iq_blocks.hpp) into signed integer levels and its
// integer scale fields: the single reading of the formats shared by dequantize_row (dequant_iq.cpp) and the
// scalar dot products (vec_dot_iq.cpp). Levels: grid value times sign (IQ2 / IQ3), grid value -1/0/1
// (IQ1, the ±1/8 delta kept apart), table value (IQ4). Layouts as ggml-quants.c's dequantize_row_iq*.
#pragma once

#include <cstdint>
#include <cstring>

#include "cpu/iq_blocks.hpp"
#include "cpu/iq_tables.hpp"

namespace moetier::cpu::iq {

/// Sub-block b (0..7) of a 256-element block: w[32] levels; s[h] the raw scale field of elements 16h..16h+15
/// (IQ2/IQ3: 4 bits, IQ1: 3 bits, IQ4_XS: 6 bits); neg[g] (IQ1 only) true when group g (8 elements) has the
/// -1/8 delta.
struct Sub32 {
  int8_t w[32];
  uint8_t s[2];
  bool neg[4];
};

inline uint32_t rd32(const void* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint16_t rd16(const void* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

/// 8 unsigned grid bytes `grid` with the sign bits `signs` (bit j negates element j) into w[0..7].
inline void signed8(uint64_t grid, uint8_t signs, int8_t* w) {
  for (int j = 0; j < 8; ++j) {
    const int g = static_cast<int>((grid >> (8 * j)) & 0xff);
    w[j] = static_cast<int8_t>((signs >> j) & 1 ? -g : g);
  }
}
/// Two 4-byte grid entries (elements 0-3, 4-7) with sign bits.
inline void signed4x2(uint32_t g1, uint32_t g2, uint8_t signs, int8_t* w) {
  signed8(g1 | (static_cast<uint64_t>(g2) << 32), signs, w);
}

inline void decode(const BlockIQ2_XXS& x, int b, Sub32& o) {
  const uint8_t* p = reinterpret_cast<const uint8_t*>(&x) + 2 + 8 * b;  // qs[4b..4b+3]
  const uint32_t aux = rd32(p + 4);
  for (int l = 0; l < 4; ++l) signed8(kIq2xxsGrid[p[l]], iq2_signs((aux >> (7 * l)) & 127), o.w + 8 * l);
  o.s[0] = o.s[1] = static_cast<uint8_t>(aux >> 28);
}

inline void decode(const BlockIQ2_XS& x, int b, Sub32& o) {
  const uint8_t* p = reinterpret_cast<const uint8_t*>(&x) + 2 + 8 * b;  // qs[4b..4b+3]
  for (int l = 0; l < 4; ++l) {
    const uint16_t q = rd16(p + 2 * l);
    signed8(kIq2xsGrid[q & 511], iq2_signs(q >> 9), o.w + 8 * l);
  }
  o.s[0] = x.scales[b] & 15;
  o.s[1] = x.scales[b] >> 4;
}

inline void decode(const BlockIQ2_S& x, int b, Sub32& o) {
  for (int l = 0; l < 4; ++l) {
    const int idx = x.qs[4 * b + l] | (((x.qh[b] >> (2 * l)) & 3) << 8);
    signed8(kIq2sGrid[idx], x.qs[32 + 4 * b + l], o.w + 8 * l);
  }
  o.s[0] = x.scales[b] & 15;
  o.s[1] = x.scales[b] >> 4;
}

inline void decode(const BlockIQ3_XXS& x, int b, Sub32& o) {
  const uint32_t aux = rd32(x.qs + 64 + 4 * b);
  const uint8_t* q = x.qs + 8 * b;
  for (int l = 0; l < 4; ++l)
    signed4x2(kIq3xxsGrid[q[2 * l]], kIq3xxsGrid[q[2 * l + 1]], iq2_signs((aux >> (7 * l)) & 127), o.w + 8 * l);
  o.s[0] = o.s[1] = static_cast<uint8_t>(aux >> 28);
}

inline void decode(const BlockIQ3_S& x, int b, Sub32& o) {
  const uint8_t* q = x.qs + 8 * b;
  const int h = x.qh[b];
  for (int l = 0; l < 4; ++l) {
    const int i1 = q[2 * l] | (((h >> (2 * l)) & 1) << 8), i2 = q[2 * l + 1] | (((h >> (2 * l + 1)) & 1) << 8);
    signed4x2(kIq3sGrid[i1], kIq3sGrid[i2], x.signs[4 * b + l], o.w + 8 * l);
  }
  o.s[0] = o.s[1] = static_cast<uint8_t>(b % 2 ? x.scales[b / 2] >> 4 : x.scales[b / 2] & 15);
}

inline void grid1(int idx, int8_t* w) {
  const uint64_t g = kIq1sGrid[idx];
  std::memcpy(w, &g, 8);
}

inline void decode(const BlockIQ1_S& x, int b, Sub32& o) {
  const uint16_t h = x.qh[b];
  for (int l = 0; l < 4; ++l) grid1(x.qs[4 * b + l] | (((h >> (3 * l)) & 7) << 8), o.w + 8 * l);
  o.s[0] = o.s[1] = static_cast<uint8_t>((h >> 12) & 7);
  o.neg[0] = o.neg[1] = o.neg[2] = o.neg[3] = (h & 0x8000) != 0;
}

/// IQ1_M's fp16 super-scale bits (top nibble of each of the four u16 scale words).
inline uint16_t iq1m_scale_bits(const BlockIQ1_M& x) {
  uint16_t v = 0;
  for (int k = 0; k < 4; ++k) v |= static_cast<uint16_t>((rd16(x.scales + 2 * k) >> 12) << (4 * k));
  return v;
}

inline void decode(const BlockIQ1_M& x, int b, Sub32& o) {
  for (int l = 0; l < 4; ++l) {
    const int nib = (x.qh[2 * b + l / 2] >> (4 * (l % 2))) & 15;
    grid1(x.qs[4 * b + l] | ((nib & 7) << 8), o.w + 8 * l);
    o.neg[l] = (nib & 8) != 0;
  }
  const int sc = rd16(x.scales + 2 * (b / 2)) >> (6 * (b % 2));
  o.s[0] = static_cast<uint8_t>(sc & 7);
  o.s[1] = static_cast<uint8_t>((sc >> 3) & 7);
}

/// 16 nibble bytes of IQ4_NL / IQ4_XS into 32 table levels (low nibbles first).
inline void nl_levels(const uint8_t* qs, int8_t* w) {
  for (int j = 0; j < 16; ++j) {
    w[j] = kIq4nlValues[qs[j] & 15];
    w[j + 16] = kIq4nlValues[qs[j] >> 4];
  }
}

inline void decode(const BlockIQ4_XS& x, int b, Sub32& o) {
  nl_levels(x.qs + 16 * b, o.w);
  const int ls = ((x.scales_l[b / 2] >> (4 * (b % 2))) & 15) | (((x.scales_h >> (2 * b)) & 3) << 4);
  o.s[0] = o.s[1] = static_cast<uint8_t>(ls);
}

}  // namespace moetier::cpu::iq
