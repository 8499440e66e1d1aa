// SplitRegex: the regular expressions of BPE pre-tokenizers (GPT-2 style "split the text into words"),
// matched the way llama.cpp matches them when no hand-written splitter exists for a pattern.
//
// llama.cpp (src/unicode.cpp, unicode_regex_split) hands such patterns to std::regex (ECMAScript,
// backtracking, leftmost match, first alternative wins) over one of two views of the text:
//  * collapsed — when the pattern uses \p{N} \p{L} \p{P} \p{M} \p{S} (or \p{Lu/Ll/Lt/Lm/Lo}): every
//    codepoint < 128 stays itself, every other codepoint becomes one byte: 0x0B if White_Space, else
//    0xD1 N, 0xD2 L, 0xD3 P, 0xD4 M, 0xD5 S, 0xD0 anything else; \p{X} then means "that byte or the
//    ASCII members of X" (N: 0-9; L: A-Za-z; P: !"#%&'()*,-./:;?@[\]_{}; M: none; S: $+<=>^`| — no '~').
//  * wide — otherwise: codepoints as they are, except non-ASCII White_Space, which becomes U+000B.
// In both views \s is the C-locale set {\t \n \v \f \r space}.
// This file reimplements that behaviour with its own small backtracking matcher supporting the subset
// the pre-tokenizers use: literals, [...] classes with ranges and negation, \s \S \d \D \p{..}, escapes,
// groups (...) (?:...), lookahead (?=...) (?!...), alternation, greedy * + ? {n} {n,} {n,m}, and $.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace moetier::tokenizer {

/// How a compiled pattern sees the text (see the file comment).
enum class RegexInput { kCollapsed, kWide };

/// A set of symbols: ranges, optionally \s / \S, optionally negated.
struct CharSet {
  std::vector<std::pair<uint32_t, uint32_t>> ranges;  // inclusive
  bool space = false;     // contains \s
  bool nonspace = false;  // contains \S
  bool negated = false;
  bool match(uint32_t c) const;
};

/// One compiled pre-tokenizer regex.
class SplitRegex {
 public:
  /// Compiles `pattern` (UTF-8). Throws moetier::Error naming the pattern and offset on syntax
  /// outside the supported subset, on unknown \p{..} categories, and (like llama.cpp) on a pattern
  /// that mixes \p{..} with non-ASCII literals.
  static SplitRegex compile(std::string_view pattern);

  RegexInput input() const { return input_; }
  const std::string& pattern() const { return pattern_; }

  /// The symbols this pattern matches against, one per codepoint of `cpts`.
  static std::vector<uint32_t> to_symbols(std::span<const uint32_t> cpts, RegexInput input);

  /// Leftmost match in symbols[from, end); `end` is the end of the current piece (`$` matches only
  /// there, lookahead does not see beyond it). Empty matches are not reported. Returns false if none.
  bool search(std::span<const uint32_t> symbols, size_t from, size_t end, size_t& match_begin,
              size_t& match_end) const;

  /// Splits every piece of `pieces` (lengths in symbols, summing to symbols.size()) into matches and
  /// the gaps between them, in order (llama.cpp unicode_regex_split_stl). Returns the new lengths.
  std::vector<size_t> split(std::span<const uint32_t> symbols, std::span<const size_t> pieces) const;

  // Node of the compiled pattern; public only for the matcher in split_regex.cpp.
  struct Node {
    enum class Kind { kChar, kAlt, kRepeat, kLook, kEnd };
    Kind kind = Kind::kChar;
    std::vector<CharSet> pred;                 // kChar: all sets must match the symbol
    std::vector<std::vector<int>> branches;    // kAlt alternatives / kLook body alternatives
    std::vector<int> child;                    // kRepeat: the repeated node, as a one-node sequence
    uint32_t min = 0, max = 0;                 // kRepeat bounds (max = UINT32_MAX: unbounded)
    bool negate = false;                       // kLook: (?! ... )
  };

 private:
  friend class RegexParser;
  friend class RegexMatcher;
  std::string pattern_;
  RegexInput input_ = RegexInput::kWide;
  std::vector<Node> nodes_;
  std::vector<int> root_;  // top-level sequence (one kAlt node)
};

}  // namespace moetier::tokenizer
