// Byte-level BPE pre-tokenizers: split raw text into "words" before BPE merges, one recipe per
// tokenizer.ggml.pre value, exactly as llama.cpp does (src/llama-vocab.cpp llm_tokenizer_bpe +
// src/unicode.cpp unicode_regex_split): an ordered list of steps, each refining the pieces of the previous
// one; a step is either one of llama.cpp's hand-written splitters (GPT-2, LLaMA-3 patterns) or a
// SplitRegex. The resulting words are re-encoded to UTF-8 (invalid input bytes became U+FFFD) and then
// mapped byte by byte through the GPT-2 byte map, ready for merges.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/tokenizer/split_regex.hpp"

namespace moetier::tokenizer {

/// Pre-tokenizer families (llama.cpp LLAMA_VOCAB_PRE_TYPE_*) this runtime supports.
enum class PreType { kDefault, kGpt2, kLlama3, kQwen2, kDeepseekLlm, kDeepseek3, kGpt4o, kGlm4, kKimiK2, kDeepseekCoder };

/// What a tokenizer.ggml.pre name implies, per llama.cpp llama_vocab::impl::load.
struct PreTypeInfo {
  PreType type = PreType::kDefault;
  bool ignore_merges = false;  // emit a whole word directly when it is a token (llama3)
  bool add_bos = false;        // default of add_bos before tokenizer.ggml.add_bos_token
  bool clean_spaces = true;    // clean_up_tokenization_spaces (used by full-text detokenization)
};

/// Looks up a tokenizer.ggml.pre name ("" means missing -> default). Returns false for names this
/// runtime does not implement.
bool lookup_pre_type(std::string_view name, PreTypeInfo& out);

/// Name of the family, for messages ("qwen2", ...).
std::string_view pre_type_name(PreType type);

class PreTokenizer {
 public:
  /// The recipe of `type`. Throws moetier::Error if one of its patterns fails to compile (a bug).
  explicit PreTokenizer(PreType type);

  PreType type() const { return type_; }

  /// Splits `text` into words, each as GPT-2 byte-encoded UTF-8 (ready for BPE merges).
  std::vector<std::string> split(std::string_view text) const;

  /// Splits `text` into words as plain UTF-8 (before byte encoding; invalid bytes shown as U+FFFD).
  /// For tests and diagnostics.
  std::vector<std::string> split_utf8(std::string_view text) const;

 private:
  enum class Custom { kNone, kGpt2, kLlama3, kKimiK2 };
  struct Step {
    Custom custom = Custom::kNone;
    SplitRegex regex;
  };

  // Piece lengths in codepoints.
  std::vector<size_t> split_lengths(std::span<const uint32_t> cpts) const;

  PreType type_;
  std::vector<Step> steps_;
};

/// llama.cpp's hand-written splitter for the GPT-2 pattern
/// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ (unicode_regex_split_custom_gpt2).
std::vector<size_t> split_custom_gpt2(std::span<const uint32_t> cpts, std::span<const size_t> pieces);

/// llama.cpp's hand-written splitter for the LLaMA-3 pattern (?i:'s|'t|'re|'ve|'m|'ll|'d)|
/// [^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
/// (unicode_regex_split_custom_llama3).
std::vector<size_t> split_custom_llama3(std::span<const uint32_t> cpts, std::span<const size_t> pieces);

/// llama.cpp's hand-written splitter for Kimi-K2 (unicode_regex_split_custom_kimi_k2), which stands for
/// tokenization_kimi.py's pattern [\p{Han}]+|[^\r\n\p{L}\p{N}]?<letters except Han>+<contraction>?|
/// \p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ . As llama.cpp does, a run of non-Han
/// letters is one word whatever its case (the Python pattern splits "camelCase" at the capital) and marks
/// (\p{M}) do not extend it; contractions ('s 't 'm 'd 're 've 'll, any case) stay on their word.
std::vector<size_t> split_custom_kimi_k2(std::span<const uint32_t> cpts, std::span<const size_t> pieces);

/// Han ideographs as llama.cpp's unicode_cpt_is_han counts them: CJK Unified Ideographs and extensions
/// A-F, the compatibility ideographs and their supplement.
bool is_han(uint32_t cpt);

}  // namespace moetier::tokenizer
