// Constant tables of ggml's IQ formats (ggml-common.h): the E8-lattice-derived grids of IQ2 / IQ3 / IQ1 (each
// entry is 8 or 4 unsigned levels, one per byte, little-endian: byte j is element j of the group), the IQ2
// sign patterns and IQ4's non-linear value table. The grids are facts of the format (a file's indices point
// into them); iq_tables.cpp stores them packed per element and expands them at compile time.
#pragma once

#include <array>
#include <cstdint>

namespace moetier::cpu {

/// IQ2_XXS grid: 256 entries of 8 bytes, each 8, 25 or 43.
extern const std::array<uint64_t, 256> kIq2xxsGrid;
/// IQ2_XS grid: 512 entries of 8 bytes (8, 25, 43).
extern const std::array<uint64_t, 512> kIq2xsGrid;
/// IQ2_S grid: 1024 entries of 8 bytes (8, 25, 43).
extern const std::array<uint64_t, 1024> kIq2sGrid;
/// IQ3_XXS grid: 256 entries of 4 bytes, each one of 4, 12, 20, 28, 36, 44, 52, 62.
extern const std::array<uint32_t, 256> kIq3xxsGrid;
/// IQ3_S grid: 512 entries of 4 bytes, each odd 1..15.
extern const std::array<uint32_t, 512> kIq3sGrid;
/// IQ1_S / IQ1_M grid: 2048 entries of 8 int8 bytes, each -1, 0 or 1.
extern const std::array<uint64_t, 2048> kIq1sGrid;
/// Sign masks of the 128 IQ2/IQ3 7-bit sign codes: byte j is 0xFF when element j is negated (iq2_signs).
extern const std::array<uint64_t, 128> kIqSigns64;

/// IQ4_NL / IQ4_XS non-linear levels (ggml's kvalues_iq4nl).
inline constexpr int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                            1,    13,   25,  38,  53,  69,  89,  113};

/// The 8 sign bits of a 7-bit IQ2/IQ3 sign code (ggml's ksigns_iq2xs): bits 0-6 as given, bit 7 set when
/// bits 0-6 have odd parity, so that every group has an even number of negated elements.
constexpr uint8_t iq2_signs(uint32_t code7) {
  return static_cast<uint8_t>(code7 | ((__builtin_popcount(code7 & 127) & 1) << 7));
}

}  // namespace moetier::cpu
