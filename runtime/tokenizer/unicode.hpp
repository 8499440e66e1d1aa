// Unicode helpers for the tokenizers: UTF-8 decoding with llama.cpp's error behaviour, codepoint
// category flags (general category + White_Space, from ICU), and the GPT-2 byte <-> codepoint map used
// by byte-level BPE vocabularies.
// Behaviour reference: llama.cpp src/unicode.cpp / unicode.h (unicode_cpt_from_utf8,
// unicode_cpt_flags, unicode_byte_to_utf8); categories as Python `regex` \p{N} \p{L} \p{Z} \p{M} \p{P}
// \p{S} \p{C} and \s (Unicode White_Space), which is what llama.cpp's generated tables encode.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace moetier::tokenizer {

/// Largest valid codepoint + 1.
inline constexpr uint32_t kMaxCodepoint = 0x110000;
/// U+FFFD, produced for every byte that does not start a decodable UTF-8 sequence.
inline constexpr uint32_t kReplacementChar = 0xFFFD;

/// Category flags of one codepoint; bit values as llama.cpp's unicode_cpt_flags.
struct CodepointFlags {
  enum : uint16_t {
    kUndefined = 0x0001,    // codepoint >= 0x110000 (only reachable through lax UTF-8 decoding)
    kNumber = 0x0002,       // \p{N}
    kLetter = 0x0004,       // \p{L}
    kSeparator = 0x0008,    // \p{Z}
    kMark = 0x0010,         // \p{M}
    kPunctuation = 0x0020,  // \p{P}
    kSymbol = 0x0040,       // \p{S}
    kControl = 0x0080,      // \p{C} (Cc, Cf, Cs, Co and unassigned Cn)
    kCategoryMask = 0x00FF,
    kWhitespace = 0x0100,   // Unicode White_Space (Python regex \s)
  };
  uint16_t bits = 0;  // 0 = "no codepoint" (position outside the text)

  bool is_number() const { return bits & kNumber; }
  bool is_letter() const { return bits & kLetter; }
  bool is_mark() const { return bits & kMark; }
  bool is_punctuation() const { return bits & kPunctuation; }
  bool is_symbol() const { return bits & kSymbol; }
  bool is_whitespace() const { return bits & kWhitespace; }
  /// The category bits only (one of kUndefined..kControl for a real codepoint).
  uint16_t category() const { return bits & kCategoryMask; }
};

/// Flags of `cpt` (ICU general category and White_Space); kUndefined for cpt >= 0x110000.
CodepointFlags codepoint_flags(uint32_t cpt);

/// Simple lowercase mapping of `cpt` (ICU u_tolower); cpt itself when it has none.
uint32_t codepoint_to_lower(uint32_t cpt);

/// Length in bytes of the UTF-8 sequence a byte announces, from its high nibble only
/// (0x0-0xB -> 1, 0xC-0xD -> 2, 0xE -> 3, 0xF -> 4), as llama.cpp's unicode_len_utf8.
inline size_t utf8_sequence_length(char lead) {
  static constexpr uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLen[static_cast<uint8_t>(lead) >> 4];
}

/// Decodes the codepoint at `offset` and advances it. Like llama.cpp's unicode_cpts_from_utf8: a byte
/// that does not start a complete sequence (stray continuation byte, truncated sequence, bad
/// continuation, 0xF8-0xFF) yields U+FFFD and advances by one byte. Overlong forms and surrogates are
/// accepted as llama.cpp does; 4-byte forms can give values up to 0x1FFFFF.
uint32_t decode_utf8_at(std::string_view text, size_t& offset);

/// All codepoints of `text` (see decode_utf8_at).
std::vector<uint32_t> decode_utf8(std::string_view text);

/// Appends the UTF-8 encoding of `cpt`; values above 0x10FFFF are written as U+FFFD (llama.cpp throws
/// std::invalid_argument there).
void append_utf8(std::string& out, uint32_t cpt);

/// GPT-2 byte-level map: byte -> codepoint (printable Latin-1 bytes map to themselves, the other 68
/// bytes to U+0100.. in byte order). Source: OpenAI GPT-2 encoder.py bytes_to_unicode.
uint32_t byte_to_codepoint(uint8_t byte);
/// UTF-8 of byte_to_codepoint(byte).
const std::string& byte_to_utf8(uint8_t byte);
/// Inverse of byte_to_codepoint: the byte, or -1 when `cpt` is not in the map.
int codepoint_to_byte(uint32_t cpt);

}  // namespace moetier::tokenizer
