// Byte-level BPE pre-tokenizers. See pretokenizer.hpp.
#include "runtime/tokenizer/pretokenizer.hpp"

#include <optional>

#include "runtime/tokenizer/unicode.hpp"

namespace moetier::tokenizer {
namespace {

// The patterns llama.cpp uses per pre-tokenizer family (llm_tokenizer_bpe constructor). Non-ASCII
// characters are written as universal character names; ordinary string literals are UTF-8 here.
constexpr const char* kQwen2Pattern =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// deepseek-llm: cased letters (Lu/Ll/Lt runs of an older Unicode version), as listed by the model.
constexpr const char* kDeepseekLetters =
    "\\s?[A-Za-z\u00B5\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u01BA\u01BC-\u01BF\u01C4-\u0293\u0295-\u02AF"
    "\u0370-\u0373\u0376\u0377\u037B-\u037D\u037F\u0386\u0388-\u038A\u038C\u038E-\u03A1\u03A3-\u03F5"
    "\u03F7-\u0481\u048A-\u052F\u0531-\u0556\u10A0-\u10C5\u13A0-\u13F5\u13F8-\u13FD\u1C90-\u1CBA"
    "\u1CBD-\u1CBF\u1D00-\u1D2B\u1D6B-\u1D77\u1D79-\u1D9A\u1E00-\u1F15\u1F18-\u1F1D\u1F20-\u1F45"
    "\u1F48-\u1F4D\u1F50-\u1F57\u1F59\u1F5B\u1F5D\u1F5F-\u1F7D\u1F80-\u1FB4\u1FB6-\u1FBC\u1FBE"
    "\u1FC2-\u1FC4\u1FC6-\u1FCC\u1FD0-\u1FD3\u1FD6-\u1FDB\u1FE0-\u1FEC\u1FF2-\u1FF4\u1FF6-\u1FFC"
    "\u2102\u2107\u210A-\u2113\u2115\u2119-\u211D\u2124\u2126\u2128\u212A-\u212D\u212F-\u2134\u2139"
    "\u213C-\u213F\u2145-\u2149\u214E\u2183\u2184\u2C00-\u2C7B\u2C7E-\u2CE4\u2CEB-\u2CEE\u2CF2\u2CF3"
    "\uA640-\uA66D\uA680-\uA69B\uA722-\uA76F\uA771-\uA787\uA78B-\uA78E\uAB70-\uABBF\uFB00-\uFB06"
    "\uFB13-\uFB17\uFF21-\uFF3A\uFF41-\uFF5A\U00010400-\U0001044F\U000104B0-\U000104D3"
    "\U000104D8-\U000104FB\U00010C80-\U00010CB2\U00010CC0-\U00010CF2\U000118A0-\U000118DF"
    "\U0001E900-\U0001E943]+";
constexpr const char* kDeepseekPunct = "\\s?[!-/:-~\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3000-\u3002]+";
constexpr const char* kDeepseekCjk = "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+";

constexpr const char* kDeepseek3Cjk = "[\u4E00-\u9FA5\u3040-\u309F\u30A0-\u30FF]+";
constexpr const char* kDeepseek3Main =
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
    " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";

constexpr const char* kGpt4oPattern =
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+"
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|"
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*"
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

struct NameEntry {
  std::string_view name;
  PreTypeInfo info;
};

// tokenizer.ggml.pre names -> family and flags (llama.cpp llama_vocab::impl::load).
constexpr NameEntry kNames[] = {
    {"default", {PreType::kDefault, false, false, true}},
    {"llama3", {PreType::kLlama3, true, true, true}},
    {"llama-v3", {PreType::kLlama3, true, true, true}},
    {"llama-bpe", {PreType::kLlama3, true, true, true}},
    {"falcon3", {PreType::kLlama3, true, true, true}},
    {"pixtral", {PreType::kLlama3, true, true, true}},
    {"dbrx", {PreType::kLlama3, false, false, true}},
    {"smaug-bpe", {PreType::kLlama3, false, false, true}},
    {"deepseek-llm", {PreType::kDeepseekLlm, false, false, false}},
    {"deepseek-v3", {PreType::kDeepseek3, false, false, false}},
    {"qwen2", {PreType::kQwen2, false, false, false}},
    {"deepseek-r1-qwen", {PreType::kQwen2, false, false, false}},
    {"megrez", {PreType::kQwen2, false, false, true}},
    {"stablelm2", {PreType::kQwen2, false, false, true}},
    {"gpt-4o", {PreType::kGpt4o, false, false, false}},
    {"llama4", {PreType::kGpt4o, false, false, false}},
    {"gpt-2", {PreType::kGpt2, false, false, true}},
    {"phi-2", {PreType::kGpt2, false, false, true}},
    {"mpt", {PreType::kGpt2, false, false, true}},
    {"olmo", {PreType::kGpt2, false, false, true}},
    {"glm4", {PreType::kGlm4, false, false, true}},  // llama.cpp also drops the BOS id (no BOS token)
    {"chatglm-bpe", {PreType::kGlm4, false, false, true}},
    {"kimi-k2", {PreType::kKimiK2, false, false, false}},
    {"deepseek-coder", {PreType::kDeepseekCoder, false, false, false}},
    {"minimax-m2", {PreType::kGpt4o, false, false, false}},  // llama.cpp: the o200k pattern
};

// Walks one piece of codepoints the way llama.cpp's hand-written splitters do: positions outside the
// piece read as "no codepoint" (flags 0, value kOutside).
class PieceCursor {
 public:
  static constexpr uint32_t kOutside = 0xFFFFFFFF;
  PieceCursor(std::span<const uint32_t> cpts, size_t begin, size_t end, std::vector<size_t>& out)
      : cpts_(cpts), begin_(begin), end_(end), prev_end_(begin), out_(out) {}
  uint32_t cpt(size_t pos) const { return (pos >= begin_ && pos < end_) ? cpts_[pos] : kOutside; }
  CodepointFlags flags(size_t pos) const {
    return (pos >= begin_ && pos < end_) ? codepoint_flags(cpts_[pos]) : CodepointFlags{};
  }
  // Ends the current word at `end`; returns its length.
  size_t emit(size_t end) {
    const size_t len = end - prev_end_;
    if (len > 0) out_.push_back(len);
    prev_end_ = end;
    return len;
  }
  size_t end() const { return end_; }

 private:
  std::span<const uint32_t> cpts_;
  size_t begin_, end_, prev_end_;
  std::vector<size_t>& out_;
};

bool is_rn(uint32_t c) { return c == '\r' || c == '\n'; }
bool not_word(CodepointFlags f) { return !(f.is_whitespace() || f.is_letter() || f.is_number()); }

// Contractions 's 't 'm 'd 're 've 'll at `pos` (which holds '\''); returns their length or 0.
size_t contraction_length(const PieceCursor& p, size_t pos, bool fold_case) {
  if (pos + 1 >= p.end()) return 0;
  const auto low = [&](uint32_t c) { return fold_case ? codepoint_to_lower(c) : c; };
  const uint32_t a = low(p.cpt(pos + 1));
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (pos + 2 >= p.end()) return 0;
  const uint32_t b = low(p.cpt(pos + 2));
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

// \p{N}{1,3}, repeated: the run of digits at `pos` as pieces of at most three (llama3 and kimi-k2 splitters).
void split_digit_groups(PieceCursor& p, size_t& pos) {
  size_t group_start = pos;
  while (p.flags(pos).is_number()) {
    if (++pos - group_start >= 3) {
      p.emit(pos);
      group_start = pos;
    }
  }
  p.emit(pos);
}

// Shared tail of both splitters: whitespace runs. Returns true when it consumed something.
bool split_whitespace(PieceCursor& p, size_t& pos, bool newline_rule) {
  size_t n_ws = 0, last_rn_end = 0;
  while (p.flags(pos + n_ws).is_whitespace()) {
    if (newline_rule && is_rn(p.cpt(pos + n_ws))) last_rn_end = pos + n_ws + 1;
    ++n_ws;
  }
  if (last_rn_end > 0) {  // \s*[\r\n]+
    pos = last_rn_end;
    p.emit(pos);
    return true;
  }
  if (n_ws > 1 && p.cpt(pos + n_ws) != PieceCursor::kOutside) {  // \s+(?!\S)
    pos += n_ws - 1;
    p.emit(pos);
    return true;
  }
  if (n_ws > 0) {  // \s+
    pos += n_ws;
    p.emit(pos);
    return true;
  }
  return false;
}

}  // namespace

bool lookup_pre_type(std::string_view name, PreTypeInfo& out) {
  if (name.empty()) name = "default";
  for (const auto& e : kNames) {
    if (e.name == name) {
      out = e.info;
      return true;
    }
  }
  return false;
}

std::string_view pre_type_name(PreType type) {
  switch (type) {
    case PreType::kDefault: return "default";
    case PreType::kGpt2: return "gpt-2";
    case PreType::kLlama3: return "llama3";
    case PreType::kQwen2: return "qwen2";
    case PreType::kDeepseekLlm: return "deepseek-llm";
    case PreType::kDeepseek3: return "deepseek-v3";
    case PreType::kGpt4o: return "gpt-4o";
    case PreType::kGlm4: return "glm4";
    case PreType::kKimiK2: return "kimi-k2";
    case PreType::kDeepseekCoder: return "deepseek-coder";
  }
  return "?";
}

std::vector<size_t> split_custom_gpt2(std::span<const uint32_t> cpts, std::span<const size_t> pieces) {
  std::vector<size_t> out;
  out.reserve(pieces.size());
  size_t start = 0;
  for (const size_t len : pieces) {
    PieceCursor p(cpts, start, start + len, out);
    for (size_t pos = start; pos < start + len;) {
      const uint32_t c = p.cpt(pos);
      if (c == '\'') {
        if (const size_t n = contraction_length(p, pos, false)) {
          pos += p.emit(pos + n);
          continue;
        }
      }
      CodepointFlags f2 = c == ' ' ? p.flags(pos + 1) : p.flags(pos);
      if (f2.is_letter() || f2.is_number()) {  //  ?\p{L}+ and  ?\p{N}+
        const bool letter = f2.is_letter();
        pos += (c == ' ');
        while (letter ? f2.is_letter() : f2.is_number()) f2 = p.flags(++pos);
        p.emit(pos);
        continue;
      }
      if (not_word(f2) && f2.bits) {  //  ?[^\s\p{L}\p{N}]+
        pos += (c == ' ');
        while (not_word(f2) && f2.bits) f2 = p.flags(++pos);
        p.emit(pos);
        continue;
      }
      if (split_whitespace(p, pos, false)) continue;
      p.emit(++pos);
    }
    start += len;
  }
  return out;
}

std::vector<size_t> split_custom_llama3(std::span<const uint32_t> cpts, std::span<const size_t> pieces) {
  std::vector<size_t> out;
  out.reserve(pieces.size());
  size_t start = 0;
  for (const size_t len : pieces) {
    PieceCursor p(cpts, start, start + len, out);
    for (size_t pos = start; pos < start + len;) {
      const uint32_t c = p.cpt(pos);
      const CodepointFlags f = p.flags(pos);
      if (c == '\'') {
        if (const size_t n = contraction_length(p, pos, true)) {
          pos += p.emit(pos + n);
          continue;
        }
      }
      // [^\r\n\p{L}\p{N}]?\p{L}+
      if (!(is_rn(c) || f.is_number()) && (f.is_letter() || p.flags(pos + 1).is_letter())) {
        ++pos;
        while (p.flags(pos).is_letter()) ++pos;
        p.emit(pos);
        continue;
      }
      if (f.is_number()) {  // \p{N}{1,3}
        split_digit_groups(p, pos);
        continue;
      }
      //  ?[^\s\p{L}\p{N}]+[\r\n]*   (llama.cpp tests the flags of the first codepoint here)
      CodepointFlags f2 = c == ' ' ? p.flags(pos + 1) : f;
      if (not_word(f2) && f.bits) {
        pos += (c == ' ');
        while (not_word(f2) && f2.bits) f2 = p.flags(++pos);
        while (is_rn(p.cpt(pos))) ++pos;
        p.emit(pos);
        continue;
      }
      if (split_whitespace(p, pos, true)) continue;
      p.emit(++pos);
    }
    start += len;
  }
  return out;
}

bool is_han(uint32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2EBEF) || (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

std::vector<size_t> split_custom_kimi_k2(std::span<const uint32_t> cpts, std::span<const size_t> pieces) {
  std::vector<size_t> out;
  out.reserve(pieces.size());
  size_t start = 0;
  for (const size_t len : pieces) {
    PieceCursor p(cpts, start, start + len, out);
    // A letter that is not a Han ideograph (positions outside the piece are neither).
    const auto word_letter = [&](size_t pos) { return p.flags(pos).is_letter() && !is_han(p.cpt(pos)); };
    for (size_t pos = start; pos < start + len;) {
      const uint32_t c = p.cpt(pos);
      const CodepointFlags f = p.flags(pos);
      if (is_han(c)) {  // [\p{Han}]+
        while (is_han(p.cpt(pos))) ++pos;
        p.emit(pos);
        continue;
      }
      // [^\r\n\p{L}\p{N}]?<letters except Han>+ then an optional contraction
      const bool lead = !(is_rn(c) || f.is_letter() || f.is_number());
      if (word_letter(pos) || (lead && word_letter(pos + 1))) {
        pos += lead;
        while (word_letter(pos)) ++pos;
        if (p.cpt(pos) == '\'') pos += contraction_length(p, pos, true);
        p.emit(pos);
        continue;
      }
      if (f.is_number()) {  // \p{N}{1,3}
        split_digit_groups(p, pos);
        continue;
      }
      //  ?[^\s\p{L}\p{N}]+[\r\n]*
      CodepointFlags f2 = c == ' ' ? p.flags(pos + 1) : f;
      if (not_word(f2) && f2.bits) {
        pos += (c == ' ');
        while (not_word(f2) && f2.bits) f2 = p.flags(++pos);
        while (is_rn(p.cpt(pos))) ++pos;
        p.emit(pos);
        continue;
      }
      if (split_whitespace(p, pos, true)) continue;
      p.emit(++pos);
    }
    start += len;
  }
  return out;
}

PreTokenizer::PreTokenizer(PreType type) : type_(type) {
  const auto regex = [this](const char* pattern) { steps_.push_back({Custom::kNone, SplitRegex::compile(pattern)}); };
  const auto custom = [this](Custom c) { steps_.push_back({c, SplitRegex{}}); };
  switch (type) {
    case PreType::kDefault:
      regex("[\\p{P}\\$\\+<=>\\^~\\|]+");
      custom(Custom::kGpt2);
      regex("\\p{N}+");
      regex("[0-9][0-9][0-9]");
      break;
    case PreType::kGpt2: custom(Custom::kGpt2); break;
    case PreType::kLlama3: custom(Custom::kLlama3); break;
    case PreType::kQwen2: regex(kQwen2Pattern); break;
    case PreType::kDeepseekLlm:
      regex("[\r\n]");
      regex(kDeepseekLetters);
      regex(kDeepseekPunct);
      regex("\\s+$");
      regex(kDeepseekCjk);
      regex("\\p{N}+");
      break;
    case PreType::kDeepseek3:
      regex("\\p{N}{1,3}");
      regex(kDeepseek3Cjk);
      regex(kDeepseek3Main);
      break;
    case PreType::kGpt4o: regex(kGpt4oPattern); break;
    // glm4's pattern is LLaMA-3's with (?:'[sS]|...) contractions: llama.cpp runs its LLaMA-3 splitter.
    case PreType::kGlm4: custom(Custom::kLlama3); break;
    case PreType::kKimiK2: custom(Custom::kKimiK2); break;
    case PreType::kDeepseekCoder:
      regex("[\r\n]");
      regex("\\s?\\p{L}+");
      regex("\\s?\\p{P}+");
      regex(kDeepseekCjk);
      regex("\\p{N}");
      break;
  }
}

std::vector<size_t> PreTokenizer::split_lengths(std::span<const uint32_t> cpts) const {
  std::vector<size_t> pieces = {cpts.size()};
  if (cpts.empty()) return {};
  std::optional<std::vector<uint32_t>> collapsed, wide;
  for (const auto& step : steps_) {
    switch (step.custom) {
      case Custom::kGpt2: pieces = split_custom_gpt2(cpts, pieces); break;
      case Custom::kLlama3: pieces = split_custom_llama3(cpts, pieces); break;
      case Custom::kKimiK2: pieces = split_custom_kimi_k2(cpts, pieces); break;
      case Custom::kNone: {
        auto& sym = step.regex.input() == RegexInput::kCollapsed ? collapsed : wide;
        if (!sym) sym = SplitRegex::to_symbols(cpts, step.regex.input());
        pieces = step.regex.split(*sym, pieces);
        break;
      }
    }
  }
  return pieces;
}

std::vector<std::string> PreTokenizer::split_utf8(std::string_view text) const {
  const std::vector<uint32_t> cpts = decode_utf8(text);
  const std::vector<size_t> lengths = split_lengths(cpts);
  std::vector<std::string> words;
  words.reserve(lengths.size());
  size_t start = 0;
  for (const size_t len : lengths) {
    std::string w;
    for (size_t i = start; i < start + len; ++i) append_utf8(w, cpts[i]);
    words.push_back(std::move(w));
    start += len;
  }
  return words;
}

std::vector<std::string> PreTokenizer::split(std::string_view text) const {
  std::vector<std::string> words = split_utf8(text);
  for (auto& w : words) {
    std::string enc;
    enc.reserve(w.size() * 2);
    for (const char ch : w) enc += byte_to_utf8(static_cast<uint8_t>(ch));
    w = std::move(enc);
  }
  return words;
}

}  // namespace moetier::tokenizer
