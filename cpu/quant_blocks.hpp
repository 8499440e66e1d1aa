// Packed block layouts of ggml's quantised weight and activation formats (ggml-common.h), with the few
// decoding helpers every reader of them needs (6-bit K-quant scales, MXFP4's e8m0 scale and e2m1 table).
// Layouts are byte-exact with GGUF files: little-endian, no padding (static_assert'ed), fp16 stored as bits.
#pragma once

#include <cstdint>

namespace moetier::cpu {

inline constexpr int kQK4_0 = 32;   // elements per Q4_0 block
inline constexpr int kQK4_1 = 32;
inline constexpr int kQK5_0 = 32;
inline constexpr int kQK5_1 = 32;
inline constexpr int kQK8_0 = 32;
inline constexpr int kQK8_1 = 32;
inline constexpr int kQKMxfp4 = 32;
inline constexpr int kQK_K = 256;   // elements per K-quant super-block
inline constexpr int kKScaleSize = 12;

#pragma pack(push, 1)

/// Q4_0: x = d * (q - 8); q: 4-bit, element j in the low nibble of qs[j], element j+16 in the high one.
struct BlockQ4_0 {
  uint16_t d;               // fp16 scale
  uint8_t qs[kQK4_0 / 2];   // nibbles
};

/// Q4_1: x = d * q + m; q: 4-bit unsigned, same nibble order as Q4_0.
struct BlockQ4_1 {
  uint16_t d;               // fp16 scale
  uint16_t m;               // fp16 min (added)
  uint8_t qs[kQK4_1 / 2];
};

/// Q5_0: x = d * (q - 16); q = nibble | (bit j of qh (little-endian u32)) << 4, nibbles as Q4_0.
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];            // 5th bit of element j is bit j of the little-endian u32
  uint8_t qs[kQK5_0 / 2];
};

/// Q5_1: x = d * q + m with the 5-bit q of Q5_0.
struct BlockQ5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[kQK5_1 / 2];
};

/// Q8_0: x = d * q; q int8.
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK8_0];
};

/// Q8_1 (activations only): x = d * q; s = fp16(d * sum(q)).
struct BlockQ8_1 {
  uint16_t d;
  uint16_t s;
  int8_t qs[kQK8_1];
};

/// MXFP4 (OCP microscaling): x = e8m0_to_f32_half(e) * kMxfp4Values[code]; code j in the low nibble of
/// qs[j], code j+16 in the high nibble.
struct BlockMxfp4 {
  uint8_t e;                // e8m0 shared exponent (bias 127)
  uint8_t qs[kQKMxfp4 / 2]; // e2m1 codes
};

/// Q2_K: 16 sub-blocks of 16; x = d * (sc & 15) * q - dmin * (sc >> 4); q 2-bit.
/// Element 128*h + 32*s + l (h < 2, s < 4, l < 32) is bits 2s..2s+1 of qs[32*h + l]; its sub-block is
/// (128*h + 32*s + l) / 16, whose scale byte is scales[sub-block].
struct BlockQ2_K {
  uint8_t scales[kQK_K / 16];  // low nibble: scale, high nibble: min
  uint8_t qs[kQK_K / 4];
  uint16_t d;                  // fp16 super-scale of the scales
  uint16_t dmin;               // fp16 super-scale of the mins
};

/// Q3_K: 16 sub-blocks of 16; x = d * (sc - 32) * (q - (hbit ? 0 : 4)); q 2-bit, sc 6-bit.
/// Low 2 bits as Q2_K; the high bit of element 128*h + 32*s + l is bit (4h + s) of hmask[l].
/// Scale j: low 4 bits in scales[j % 8] (j < 8: low nibble, else high nibble), high 2 bits are bits
/// 2*(j/4)..+1 of scales[8 + j % 4].
struct BlockQ3_K {
  uint8_t hmask[kQK_K / 8];
  uint8_t qs[kQK_K / 4];
  uint8_t scales[12];
  uint16_t d;
};

/// Q4_K: 8 sub-blocks of 32; x = d * sc * q - dmin * m; q 4-bit; sc, m 6-bit packed in scales[12]
/// (see get_scale_min_k4). Element 64*c + l (l < 32) is the low nibble of qs[32c + l], element 64*c + 32 + l
/// the high nibble; sub-block of element i is i / 32.
struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleSize];
  uint8_t qs[kQK_K / 2];
};

/// Q5_K: Q4_K plus a 5th bit: the high bit of element 64*c + l is bit 2c of qh[l], of element
/// 64*c + 32 + l bit 2c+1 of qh[l].
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleSize];
  uint8_t qh[kQK_K / 8];
  uint8_t qs[kQK_K / 2];
};

/// Q6_K: 16 sub-blocks of 16; x = d * sc * (q - 32); q 6-bit, sc int8. For half h (128 elements) and
/// l < 32: element 128h + l = ql[64h + l] low | qh[32h + l] bits 0-1; 128h + 32 + l = ql[64h + 32 + l] low |
/// bits 2-3; 128h + 64 + l = ql[64h + l] high | bits 4-5; 128h + 96 + l = ql[64h + 32 + l] high | bits 6-7.
struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];
  uint8_t qh[kQK_K / 4];
  int8_t scales[kQK_K / 16];
  uint16_t d;
};

/// Q8_K (activations only): x = d * q; bsums[j] = sum of qs[16j .. 16j+15].
struct BlockQ8_K {
  float d;
  int8_t qs[kQK_K];
  int16_t bsums[kQK_K / 16];
};

#pragma pack(pop)

static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ8_1) == 36);
static_assert(sizeof(BlockMxfp4) == 17);
static_assert(sizeof(BlockQ2_K) == 84);
static_assert(sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);
static_assert(sizeof(BlockQ8_K) == 292);

/// e2m1 values doubled (0, ±0.5, ±1, ±1.5, ±2, ±3, ±4, ±6 times 2) so that they are integers; the
/// halving lives in e8m0_to_f32_half. Index = 4-bit code (bit 3 = sign). As ggml's kvalues_mxfp4.
inline constexpr int8_t kMxfp4Values[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

/// e8m0 byte -> 2^(e - 127) / 2 = 2^(e - 128) as f32 bits; e = 0 and 1 give the subnormals 2^-128 and
/// 2^-127. Matches ggml_e8m0_to_fp32_half (e = 255 gives 2^127, not NaN).
constexpr uint32_t e8m0_to_f32_half_bits(uint8_t e) {
  return e < 2 ? (0x00200000u << e) : (static_cast<uint32_t>(e - 1) << 23);
}

/// Scale and min (6-bit each) of sub-block j (0..7) of a Q4_K / Q5_K block (ggml's get_scale_min_k4).
/// j < 4: sc = s[j] & 63, m = s[j+4] & 63; else sc = (s[j+4] & 15) | (s[j-4] >> 6) << 4,
/// m = (s[j+4] >> 4) | (s[j] >> 6) << 4.
inline void get_scale_min_k4(int j, const uint8_t* s, uint8_t& sc, uint8_t& m) {
  if (j < 4) {
    sc = s[j] & 63;
    m = s[j + 4] & 63;
  } else {
    sc = static_cast<uint8_t>((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
    m = static_cast<uint8_t>((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
  }
}

/// All 8 scales and mins of a Q4_K / Q5_K block at once (get_scale_min_k4 for j = 0..7 on whole words, no
/// byte stores): byte j of sc8 / mn8 = sc / m of sub-block j.
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

/// The 16 signed 6-bit scales of a Q3_K block, each already minus 32 (range -32..31).
inline void unpack_q3_k_scales(const uint8_t* s, int8_t out[16]) {
  for (int j = 0; j < 16; ++j) {
    const int low = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
    const int high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    out[j] = static_cast<int8_t>((low | (high << 4)) - 32);
  }
}

}  // namespace moetier::cpu
