// Packed block layouts of ggml's IQ ("importance") weight formats (ggml-common.h): IQ2_XXS, IQ2_XS, IQ2_S,
// IQ3_XXS, IQ3_S, IQ1_S, IQ1_M (256-element super-blocks of 8-element grid points) and IQ4_NL / IQ4_XS
// (4-bit indices into a 16-value non-linear table). Byte-exact with GGUF files: little-endian, no padding.
// How a block decodes to signed integer levels lives in iq_decode.hpp; the grids in iq_tables.hpp.
#pragma once

#include <cstdint>

namespace moetier::cpu {

inline constexpr int kQK4_NL = 32;  // elements per IQ4_NL block

#pragma pack(push, 1)

/// IQ2_XXS (2.06 bpw): per 32 elements, 4 bytes of grid indices (kIq2xxsGrid) then a u32 whose bits 7l..7l+6
/// pick the signs of group l (iq2_signs) and bits 28-31 the scale s: x = d * (0.5 + s) / 4 * grid * sign.
struct BlockIQ2_XXS {
  uint16_t d;        // fp16
  uint16_t qs[32];   // sub-block b: qs[4b], qs[4b+1] = 4 grid indices, qs[4b+2..3] = signs + scale
};

/// IQ2_XS (2.31 bpw): qs[4b + l]: bits 0-8 grid index (kIq2xsGrid), 9-15 signs; scales[b] low nibble scales
/// groups 0-1, high nibble groups 2-3: x = d * (0.5 + s) / 4 * grid * sign.
struct BlockIQ2_XS {
  uint16_t d;
  uint16_t qs[32];
  uint8_t scales[8];
};

/// IQ2_S (2.56 bpw): group l of sub-block b: grid index qs[4b + l] | bits 2l..2l+1 of qh[b] << 8
/// (kIq2sGrid), sign byte qs[32 + 4b + l] (bit j negates element j); scales as IQ2_XS.
struct BlockIQ2_S {
  uint16_t d;
  uint8_t qs[64];    // 32 grid index bytes, then 32 sign bytes
  uint8_t qh[8];
  uint8_t scales[8];
};

/// IQ3_XXS (3.06 bpw): groups of 4 elements; qs[0..63] grid indices (kIq3xxsGrid), two per 8 elements; per
/// sub-block b a u32 at qs[64 + 4b]: signs of group l in bits 7l..7l+6, scale s in bits 28-31:
/// x = d * (0.5 + s) / 2 * grid * sign.
struct BlockIQ3_XXS {
  uint16_t d;
  uint8_t qs[96];
};

/// IQ3_S (3.44 bpw): 4-element grid (kIq3sGrid, 512 points); in sub-block b, index k (0..7) is
/// qs[8b + k] | bit k of qh[b] << 8; signs[4b + l] negate the 8 elements of group l; scale nibble s of
/// scales[b / 2] (b even: low): x = d * (1 + 2s) * grid * sign.
struct BlockIQ3_S {
  uint16_t d;
  uint8_t qs[64];
  uint8_t qh[8];
  uint8_t signs[32];
  uint8_t scales[4];
};

/// IQ1_S (1.56 bpw): group l of sub-block b has grid index qs[4b + l] | bits 3l..3l+2 of qh[b] << 8
/// (kIq1sGrid, levels -1/0/1); qh[b] bits 12-14: scale s, bit 15: delta sign:
/// x = d * (2s + 1) * (grid ± 0.125).
struct BlockIQ1_S {
  uint16_t d;
  uint8_t qs[32];
  uint16_t qh[8];
};

/// IQ1_M (1.75 bpw): no d field; the fp16 super-scale is the top nibbles of the four u16 in scales (nibble
/// k from u16 k). Group l of sub-block b: index qs[4b + l] | 3 bits of qh[2b + l/2] (low nibble for even l,
/// high nibble for odd l) << 8; bit 3 of that nibble is the delta sign. Scales 3-bit: u16 scales[b/2] bits
/// 6(b%2)..+2 for groups 0-1, +3..+5 for groups 2-3: x = d * (2s + 1) * (grid ± 0.125).
struct BlockIQ1_M {
  uint8_t qs[32];
  uint8_t qh[16];
  uint8_t scales[8];
};

/// IQ4_NL: x = d * kIq4nlValues[nibble]; element j in the low nibble of qs[j], j + 16 in the high one.
struct BlockIQ4_NL {
  uint16_t d;
  uint8_t qs[kQK4_NL / 2];
};

/// IQ4_XS: 8 sub-blocks of 32 with 6-bit scales ls = low nibble (scales_l[b/2], b odd: high) | 2 bits
/// (scales_h >> 2b) << 4: x = d * (ls - 32) * kIq4nlValues[nibble], nibbles as IQ4_NL per 32 elements.
struct BlockIQ4_XS {
  uint16_t d;
  uint16_t scales_h;
  uint8_t scales_l[4];
  uint8_t qs[128];
};

#pragma pack(pop)

static_assert(sizeof(BlockIQ2_XXS) == 66);
static_assert(sizeof(BlockIQ2_XS) == 74);
static_assert(sizeof(BlockIQ2_S) == 82);
static_assert(sizeof(BlockIQ3_XXS) == 98);
static_assert(sizeof(BlockIQ3_S) == 110);
static_assert(sizeof(BlockIQ1_S) == 50);
static_assert(sizeof(BlockIQ1_M) == 56);
static_assert(sizeof(BlockIQ4_NL) == 18);
static_assert(sizeof(BlockIQ4_XS) == 136);

}  // namespace moetier::cpu
