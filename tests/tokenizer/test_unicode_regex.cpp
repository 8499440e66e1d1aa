// Unit tests of the tokenizer's pieces: UTF-8 decoding, codepoint flags, the GPT-2 byte map, the
// pre-tokenizer regex matcher (ECMAScript semantics, collapsed / wide views) and the pre-tokenizers.
#include <doctest/doctest.h>

#include <set>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "runtime/tokenizer/pretokenizer.hpp"
#include "runtime/tokenizer/split_regex.hpp"
#include "runtime/tokenizer/unicode.hpp"

using namespace moetier::tokenizer;
using Words = std::vector<std::string>;

namespace {

// Splits `text` with one pattern, as a pre-tokenizer step over the whole text.
Words regex_words(const char* pattern, std::string_view text) {
  const SplitRegex re = SplitRegex::compile(pattern);
  const std::vector<uint32_t> cpts = decode_utf8(text);
  const std::vector<uint32_t> sym = SplitRegex::to_symbols(cpts, re.input());
  const std::vector<size_t> whole = {cpts.size()};
  Words out;
  size_t start = 0;
  for (const size_t len : re.split(sym, whole)) {
    std::string w;
    for (size_t i = start; i < start + len; ++i) append_utf8(w, cpts[i]);
    out.push_back(w);
    start += len;
  }
  return out;
}

Words pre_words(PreType type, std::string_view text) { return PreTokenizer(type).split_utf8(text); }

}  // namespace

TEST_CASE("UTF-8 decoding follows llama.cpp (invalid bytes -> U+FFFD, one byte at a time)") {
  CHECK(decode_utf8("a\xC3\xA9") == std::vector<uint32_t>{'a', 0xE9});
  CHECK(decode_utf8("\xF0\x9F\x8C\x8D") == std::vector<uint32_t>{0x1F30D});
  CHECK(decode_utf8("\x80") == std::vector<uint32_t>{kReplacementChar});
  CHECK(decode_utf8("\xE2\x82") == std::vector<uint32_t>{kReplacementChar, kReplacementChar});
  CHECK(decode_utf8("\xE2\x82z") == std::vector<uint32_t>{kReplacementChar, kReplacementChar, 'z'});
  CHECK(decode_utf8("\xF8\x41") == std::vector<uint32_t>{kReplacementChar, 'A'});
  CHECK(decode_utf8("\xC0\x80") == std::vector<uint32_t>{0});  // overlong forms are accepted
  std::string s;
  for (const uint32_t c : {0x41u, 0xE9u, 0x4E2Du, 0x1F30Du}) append_utf8(s, c);
  CHECK(s == "A\xC3\xA9\xE4\xB8\xAD\xF0\x9F\x8C\x8D");
  CHECK(utf8_sequence_length('\xF0') == 4);
  CHECK(utf8_sequence_length('\x80') == 1);
}

TEST_CASE("codepoint flags: general categories and White_Space") {
  CHECK(codepoint_flags('a').is_letter());
  CHECK(codepoint_flags('5').is_number());
  CHECK(codepoint_flags('$').is_symbol());
  CHECK(codepoint_flags('~').is_symbol());
  CHECK(codepoint_flags('!').is_punctuation());
  CHECK(codepoint_flags(' ').is_whitespace());
  CHECK(codepoint_flags(' ').category() == CodepointFlags::kSeparator);
  CHECK(codepoint_flags('\n').is_whitespace());
  CHECK(codepoint_flags('\n').category() == CodepointFlags::kControl);
  CHECK_FALSE(codepoint_flags(0x1C).is_whitespace());  // Python str.isspace() says yes, White_Space no
  CHECK(codepoint_flags(0x85).is_whitespace());
  CHECK(codepoint_flags(0xA0).is_whitespace());
  CHECK(codepoint_flags(0x3000).is_whitespace());
  CHECK(codepoint_flags(0x4E2D).is_letter());       // 中
  CHECK(codepoint_flags(0x3002).is_punctuation());  // 。
  CHECK(codepoint_flags(0x0301).is_mark());
  CHECK(codepoint_flags(0x00B2).is_number());  // ²
  CHECK(codepoint_flags(0xE000).category() == CodepointFlags::kControl);    // private use
  CHECK(codepoint_flags(0x10FFFF).category() == CodepointFlags::kControl);  // unassigned
  CHECK(codepoint_flags(0x110000).category() == CodepointFlags::kUndefined);
  CHECK(codepoint_to_lower('Q') == 'q');
  CHECK(codepoint_to_lower(0xC9) == 0xE9);
}

TEST_CASE("GPT-2 byte map") {
  std::set<uint32_t> seen;
  for (int b = 0; b < 256; ++b) {
    const uint32_t c = byte_to_codepoint(static_cast<uint8_t>(b));
    CHECK(codepoint_to_byte(c) == b);
    seen.insert(c);
    std::string utf8;
    append_utf8(utf8, c);
    CHECK(byte_to_utf8(static_cast<uint8_t>(b)) == utf8);
    const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    if (printable) CHECK(c == static_cast<uint32_t>(b));
    else CHECK(c >= 256);
  }
  CHECK(seen.size() == 256);
  CHECK(*seen.rbegin() == 256 + 67);
  CHECK(byte_to_codepoint(' ') == 0x120);   // 'Ġ'
  CHECK(byte_to_codepoint('\n') == 0x10A);  // 'Ċ'
  CHECK(codepoint_to_byte(' ') == -1);
  CHECK(codepoint_to_byte(0x4E2D) == -1);
}

TEST_CASE("SplitRegex: ECMAScript backtracking semantics") {
  // Greedy \s+ gives back one space so that (?!\S) holds; the last space falls to the 2nd alternative.
  CHECK(regex_words("\\s+(?!\\S)|\\s+", "a   b") == Words{"a", "  ", " ", "b"});
  // First alternative wins even when a later one would match more.
  CHECK(regex_words("a|ab", "ab") == Words{"a", "b"});
  CHECK(regex_words("\\p{N}{1,3}", "12345") == Words{"123", "45"});
  CHECK(regex_words("x{2}", "xxxxx") == Words{"xx", "xx", "x"});
  // $ only at the end of the current piece.
  CHECK(regex_words("\\s+$", "a  b  ") == Words{"a  b", "  "});
  // Lookahead + class repetition (the o200k / gpt-4o word pattern).
  const char* camel = "((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+";
  CHECK(regex_words(camel, "helloWorld") == Words{"hello", "World"});
  CHECK(regex_words(camel, "HTMLParser") == Words{"HTMLParser"});
  // In the collapsed view a non-ASCII letter is both "not a-z" and "not A-Z".
  CHECK(regex_words(camel, "\xC3\x89t\xC3\xA9") == Words{"\xC3\x89t\xC3\xA9"});
  CHECK(regex_words("(?:ab)+", "ababa") == Words{"abab", "a"});
  CHECK(regex_words("[^\\s]+", "ab cd") == Words{"ab", " ", "cd"});
  CHECK(regex_words("[a\\-z]+", "a-zb") == Words{"a-z", "b"});
}

TEST_CASE("SplitRegex: collapsed and wide views") {
  CHECK(SplitRegex::compile("\\p{N}+").input() == RegexInput::kCollapsed);
  CHECK(SplitRegex::compile("[0-9]+").input() == RegexInput::kWide);
  CHECK(regex_words("\\p{L}+", "h\xC3\xA9llo w\xC3\xB6rld") == Words{"h\xC3\xA9llo", " ", "w\xC3\xB6rld"});
  // llama.cpp's ASCII members of \p{S} lack '~' (it is a math symbol, Sm).
  CHECK(regex_words("\\p{S}+", "a$+~") == Words{"a", "$+", "~"});
  // Non-ASCII White_Space is \s in both views; U+0085 too.
  CHECK(regex_words("\\s+", "a\xE3\x80\x80" "b") == Words{"a", "\xE3\x80\x80", "b"});
  CHECK(regex_words("[ ]+", "a\xE3\x80\x80" "b") == Words{"a\xE3\x80\x80" "b"});
  CHECK(regex_words("\\p{N}+", "x\xC2\xB2" "3") == Words{"x", "\xC2\xB2" "3"});
  // Wide view: literal codepoint ranges.
  CHECK(regex_words("[\xE4\xB8\x80-\xE9\xBE\xA5]+", "ab\xE4\xBD\xA0\xE5\xA5\xBD" "c") ==
        Words{"ab", "\xE4\xBD\xA0\xE5\xA5\xBD", "c"});
}

TEST_CASE("SplitRegex: unsupported syntax is reported") {
  for (const char* bad : {"(", "(a", "[a", "a*?", "\\p{Xx}", "\\p{L}\xC3\xA9", ".", "a)", "\\w"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(SplitRegex::compile(bad), moetier::Error);
  }
}

TEST_CASE("pre-tokenizers split like llama.cpp") {
  CHECK(pre_words(PreType::kQwen2, "Hello world 123") == Words{"Hello", " world", " ", "1", "2", "3"});
  CHECK(pre_words(PreType::kQwen2, "don't DON'T") == Words{"don", "'t", " DON", "'T"});
  CHECK(pre_words(PreType::kQwen2, "a  \n\n b") == Words{"a", "  \n\n", " b"});
  CHECK(pre_words(PreType::kQwen2, "x!!\n") == Words{"x", "!!\n"});

  CHECK(pre_words(PreType::kLlama3, "12345") == Words{"123", "45"});
  CHECK(pre_words(PreType::kLlama3, "Hello  world") == Words{"Hello", " ", " world"});
  CHECK(pre_words(PreType::kLlama3, "a\n\nb") == Words{"a", "\n\n", "b"});
  CHECK(pre_words(PreType::kLlama3, "I'M") == Words{"I", "'M"});

  CHECK(pre_words(PreType::kGpt2, "Hello world's") == Words{"Hello", " world", "'s"});
  CHECK(pre_words(PreType::kGpt2, "I'M") == Words{"I", "'", "M"});  // case-sensitive contractions
  CHECK(pre_words(PreType::kGpt2, "a  b") == Words{"a", " ", " b"});

  CHECK(pre_words(PreType::kDeepseekLlm, "Hello \xE4\xB8\x96\xE7\x95\x8C" "123") ==
        Words{"Hello", " ", "\xE4\xB8\x96\xE7\x95\x8C", "123"});
  CHECK(pre_words(PreType::kDeepseekLlm, "a\r\nb") == Words{"a", "\r", "\n", "b"});

  CHECK(pre_words(PreType::kDeepseek3, "1234 \xE4\xB8\xAD\xE6\x96\x87") ==
        Words{"123", "4", " ", "\xE4\xB8\xAD\xE6\x96\x87"});
  CHECK(pre_words(PreType::kGpt4o, "helloWorld 1234") == Words{"hello", "World", " ", "123", "4"});
  CHECK(pre_words(PreType::kGpt4o, "it's") == Words{"it's"});

  CHECK(pre_words(PreType::kDefault, "ab,cd") == Words{"ab", ",", "cd"});
  // Byte-level encoding of the words: ' ' -> 'Ġ', 0xC3 -> 'Ã', 0xA9 -> '©'.
  CHECK(PreTokenizer(PreType::kGpt2).split(" h\xC3\xA9") == Words{"\xC4\xA0h\xC3\x83\xC2\xA9"});
  // Invalid UTF-8 reaches BPE as U+FFFD.
  CHECK(pre_words(PreType::kGpt2, "\xFF") == Words{"\xEF\xBF\xBD"});
}

TEST_CASE("pre-tokenizer names") {
  PreTypeInfo info;
  REQUIRE(lookup_pre_type("qwen2", info));
  CHECK(info.type == PreType::kQwen2);
  CHECK_FALSE(info.add_bos);
  REQUIRE(lookup_pre_type("llama-bpe", info));
  CHECK(info.type == PreType::kLlama3);
  CHECK(info.add_bos);
  CHECK(info.ignore_merges);
  REQUIRE(lookup_pre_type("", info));
  CHECK(info.type == PreType::kDefault);
  REQUIRE(lookup_pre_type("gpt-4o", info));
  CHECK(info.type == PreType::kGpt4o);
  CHECK_FALSE(lookup_pre_type("no-such-pre", info));
}

TEST_CASE("hand-written GPT-2 / LLaMA-3 splitters agree with the regex matcher on their patterns") {
  // Two independent implementations of the same pattern: llama.cpp's hand-written splitters and the
  // generic matcher must cut assigned-codepoint text identically.
  const SplitRegex gpt2 = SplitRegex::compile(
      "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+");
  const SplitRegex llama3 = SplitRegex::compile(
      "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|"
      " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+");
  const std::vector<uint32_t> pool = {'a', 'B', 's', 't', 'l', 'e', 'r', 'v', 'd', 'm', 'S', 'L', '\'', '1', '9',
                                      ' ', ' ', '\n', '\r', '\t', '.', '!', '$', 0xA0, 0x3000, 0xE9, 0x4E2D,
                                      0xB2, 0x301, 0x1F600, 0x85, 0x1C, 0x200B};
  uint32_t state = 12345;
  const auto next = [&] { return state = state * 1664525u + 1013904223u; };
  for (int iter = 0; iter < 3000; ++iter) {
    std::vector<uint32_t> cpts(next() % 24);
    for (auto& c : cpts) c = pool[(next() >> 8) % pool.size()];
    const std::vector<size_t> whole = {cpts.size()};
    std::string text;
    for (const uint32_t c : cpts) append_utf8(text, c);
    CAPTURE(text);
    const auto sym = SplitRegex::to_symbols(cpts, RegexInput::kCollapsed);
    if (cpts.empty()) continue;
    CHECK(split_custom_gpt2(cpts, whole) == gpt2.split(sym, whole));
    CHECK(split_custom_llama3(cpts, whole) == llama3.split(sym, whole));
  }
}
