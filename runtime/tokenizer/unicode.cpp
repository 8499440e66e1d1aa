// Unicode helpers: see unicode.hpp.
#include "runtime/tokenizer/unicode.hpp"

#include <unicode/uchar.h>

#include <array>

namespace moetier::tokenizer {
namespace {

uint16_t category_bits(uint32_t cpt) {
  switch (static_cast<UCharCategory>(u_charType(static_cast<UChar32>(cpt)))) {
    case U_UPPERCASE_LETTER:
    case U_LOWERCASE_LETTER:
    case U_TITLECASE_LETTER:
    case U_MODIFIER_LETTER:
    case U_OTHER_LETTER:
      return CodepointFlags::kLetter;
    case U_NON_SPACING_MARK:
    case U_ENCLOSING_MARK:
    case U_COMBINING_SPACING_MARK:
      return CodepointFlags::kMark;
    case U_DECIMAL_DIGIT_NUMBER:
    case U_LETTER_NUMBER:
    case U_OTHER_NUMBER:
      return CodepointFlags::kNumber;
    case U_SPACE_SEPARATOR:
    case U_LINE_SEPARATOR:
    case U_PARAGRAPH_SEPARATOR:
      return CodepointFlags::kSeparator;
    case U_DASH_PUNCTUATION:
    case U_START_PUNCTUATION:
    case U_END_PUNCTUATION:
    case U_CONNECTOR_PUNCTUATION:
    case U_OTHER_PUNCTUATION:
    case U_INITIAL_PUNCTUATION:
    case U_FINAL_PUNCTUATION:
      return CodepointFlags::kPunctuation;
    case U_MATH_SYMBOL:
    case U_CURRENCY_SYMBOL:
    case U_MODIFIER_SYMBOL:
    case U_OTHER_SYMBOL:
      return CodepointFlags::kSymbol;
    default:  // Cc, Cf, Cs, Co, Cn (unassigned)
      return CodepointFlags::kControl;
  }
}

uint16_t compute_flags(uint32_t cpt) {
  uint16_t bits = category_bits(cpt);
  if (u_isUWhiteSpace(static_cast<UChar32>(cpt))) bits |= CodepointFlags::kWhitespace;
  return bits;
}

struct ByteMap {
  std::array<uint32_t, 256> to_cpt{};
  std::array<std::string, 256> to_utf8{};
  std::array<int16_t, 256 + 68> from_cpt{};  // codepoint -> byte, -1 when unmapped
  ByteMap() {
    from_cpt.fill(-1);
    std::array<bool, 256> printable{};
    for (int b = 0; b < 256; ++b)
      printable[b] = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      to_cpt[b] = printable[b] ? static_cast<uint32_t>(b) : next++;
      append_utf8(to_utf8[b], to_cpt[b]);
      from_cpt[to_cpt[b]] = static_cast<int16_t>(b);
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap map;
  return map;
}

}  // namespace

CodepointFlags codepoint_flags(uint32_t cpt) {
  static const auto ascii = [] {
    std::array<uint16_t, 128> t{};
    for (uint32_t c = 0; c < 128; ++c) t[c] = compute_flags(c);
    return t;
  }();
  if (cpt < 128) return CodepointFlags{ascii[cpt]};
  if (cpt >= kMaxCodepoint) return CodepointFlags{CodepointFlags::kUndefined};
  return CodepointFlags{compute_flags(cpt)};
}

uint32_t codepoint_to_lower(uint32_t cpt) {
  if (cpt < 128) return (cpt >= 'A' && cpt <= 'Z') ? cpt + 32 : cpt;
  if (cpt >= kMaxCodepoint) return cpt;
  return static_cast<uint32_t>(u_tolower(static_cast<UChar32>(cpt)));
}

uint32_t decode_utf8_at(std::string_view s, size_t& offset) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  const auto cont = [&](size_t i) { return i < s.size() && (byte(i) & 0xC0) == 0x80; };
  const uint8_t b0 = byte(offset);
  if (!(b0 & 0x80)) {
    offset += 1;
    return b0;
  }
  if ((b0 & 0x40) && !(b0 & 0x20)) {
    if (cont(offset + 1)) {
      const uint32_t c = (uint32_t(b0 & 0x1F) << 6) | (byte(offset + 1) & 0x3F);
      offset += 2;
      return c;
    }
  } else if ((b0 & 0x40) && !(b0 & 0x10)) {
    if (cont(offset + 1) && cont(offset + 2)) {
      const uint32_t c = (uint32_t(b0 & 0x0F) << 12) | (uint32_t(byte(offset + 1) & 0x3F) << 6) |
                         (byte(offset + 2) & 0x3F);
      offset += 3;
      return c;
    }
  } else if ((b0 & 0x40) && !(b0 & 0x08)) {
    if (cont(offset + 1) && cont(offset + 2) && cont(offset + 3)) {
      const uint32_t c = (uint32_t(b0 & 0x07) << 18) | (uint32_t(byte(offset + 1) & 0x3F) << 12) |
                         (uint32_t(byte(offset + 2) & 0x3F) << 6) | (byte(offset + 3) & 0x3F);
      offset += 4;
      return c;
    }
  }
  offset += 1;
  return kReplacementChar;
}

std::vector<uint32_t> decode_utf8(std::string_view text) {
  std::vector<uint32_t> out;
  out.reserve(text.size());
  size_t off = 0;
  while (off < text.size()) out.push_back(decode_utf8_at(text, off));
  return out;
}

void append_utf8(std::string& out, uint32_t cpt) {
  if (cpt >= kMaxCodepoint) cpt = kReplacementChar;
  if (cpt < 0x80) {
    out.push_back(static_cast<char>(cpt));
  } else if (cpt < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cpt >> 6)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else if (cpt < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cpt >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cpt >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  }
}

uint32_t byte_to_codepoint(uint8_t byte) { return byte_map().to_cpt[byte]; }

const std::string& byte_to_utf8(uint8_t byte) { return byte_map().to_utf8[byte]; }

int codepoint_to_byte(uint32_t cpt) {
  const auto& m = byte_map().from_cpt;
  return cpt < m.size() ? m[cpt] : -1;
}

}  // namespace moetier::tokenizer
