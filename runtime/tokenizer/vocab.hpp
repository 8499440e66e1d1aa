// Vocab: a tokenizer vocabulary read from GGUF metadata (tokenizer.ggml.* keys) with llama.cpp's
// defaults, special-token ids, token attributes and BPE merge ranks.
// Behaviour reference: llama.cpp src/llama-vocab.cpp, llama_vocab::impl::load (defaults per model type,
// special ids, add_bos/add_eos, the by-text detection of EOT/EOM/FIM/EOG tokens, the special-token
// cache order).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "runtime/gguf/gguf_value.hpp"
#include "runtime/tokenizer/flat_index.hpp"
#include "runtime/tokenizer/pretokenizer.hpp"

namespace moetier::tokenizer {

/// "No token" id (llama.cpp LLAMA_TOKEN_NULL).
inline constexpr int32_t kNoToken = -1;

/// tokenizer.ggml.model: "llama" (SentencePiece BPE with scores) or "gpt2" (byte-level BPE with merges).
enum class VocabType { kSpm, kBpe };

/// Token attribute bits (llama.cpp llama_token_attr), derived from tokenizer.ggml.token_type
/// (0 undefined, 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte).
enum TokenAttr : uint32_t {
  kAttrUndefined = 0,
  kAttrUnknown = 1u << 0,
  kAttrUnused = 1u << 1,
  kAttrNormal = 1u << 2,
  kAttrControl = 1u << 3,
  kAttrUserDefined = 1u << 4,
  kAttrByte = 1u << 5,
};

/// Special token ids; kNoToken where the vocabulary has none.
struct SpecialTokens {
  int32_t bos = kNoToken, eos = kNoToken, eot = kNoToken, eom = kNoToken, unk = kNoToken;
  int32_t sep = kNoToken, pad = kNoToken, mask = kNoToken;
  int32_t fim_pre = kNoToken, fim_suf = kNoToken, fim_mid = kNoToken;
  int32_t fim_pad = kNoToken, fim_rep = kNoToken, fim_sep = kNoToken;
};

/// The checks of the tokenizer keys that hold for any reader, including `inspect` (which does not build a
/// Vocab): every tokenizer.ggml.token_type in 0..6, the text of every byte token (type 6) "<0xHH>", every
/// tokenizer.ggml.scores value finite, and every special-token id key (bos, eos, eot, eom, unk, sep, pad,
/// mask, fim_*) inside the vocabulary of tokenizer.ggml.tokens. Throws Error "FILE: KEY[INDEX] ...".
/// Does nothing when the file has no tokenizer.ggml.tokens.
void check_token_metadata(const gguf::Metadata& md, const std::string& file);

class Vocab {
 public:
  /// Reads and validates the tokenizer.ggml.* keys of `md`; `file` names the file in errors.
  /// Throws moetier::Error ("FILE: KEY: what") when: tokenizer.ggml.model is missing or not
  /// llama/gpt2; tokenizer.ggml.pre names a pre-tokenizer this runtime lacks; tokens is missing, empty
  /// or not array<string>; scores/token_type/merges have the wrong type; scores or token_type length
  /// differs from the token count; a token_type is outside 0..6; a token text occurs twice; gpt2 has no
  /// merges; a special-token id key (bos/eos/unk/pad/...) is outside the vocabulary (llama.cpp ignores
  /// it with a warning; a file that says so is wrong, and guessing hides it); add_bos/add_eos is set
  /// while the BOS/EOS id is missing.
  static Vocab from_metadata(const gguf::Metadata& md, const std::string& file);

  Vocab(Vocab&&) noexcept = default;
  Vocab& operator=(Vocab&&) noexcept = default;
  Vocab(const Vocab&) = delete;
  Vocab& operator=(const Vocab&) = delete;

  VocabType type() const { return type_; }
  /// Pre-tokenizer of a gpt2 vocabulary (meaningless for SPM).
  const PreTypeInfo& pre() const { return pre_; }
  int32_t n_tokens() const { return static_cast<int32_t>(texts_.size()); }

  /// Token text as stored (empty tokens read as "[EMPTY_<id>]"). id must be in [0, n_tokens).
  const std::string& text(int32_t id) const { return texts_[id]; }
  /// SentencePiece score (0 when the file has no scores).
  float score(int32_t id) const { return scores_.empty() ? 0.0f : scores_[id]; }
  /// TokenAttr bits of a token.
  uint32_t attr(int32_t id) const { return attrs_[id]; }
  /// Id of the token whose text is exactly `text`, or kNoToken.
  int32_t find(std::string_view text) const;

  /// BPE merge rank of the pair (left, right) — its index in tokenizer.ggml.merges — or -1.
  /// left_id/right_id are find(left)/find(right) (callers usually have them already).
  int32_t merge_rank(std::string_view left, int32_t left_id, std::string_view right, int32_t right_id) const;

  const SpecialTokens& special() const { return special_; }
  bool add_bos() const { return add_bos_; }
  bool add_eos() const { return add_eos_; }
  bool add_space_prefix() const { return add_space_prefix_; }
  bool ignore_merges() const { return pre_.ignore_merges; }
  bool clean_spaces() const { return clean_spaces_; }

  /// True for end-of-generation tokens (EOS, EOT, EOM and tokens recognised by text, as llama.cpp).
  bool is_eog(int32_t id) const;
  /// The end-of-generation ids, ascending.
  const std::vector<int32_t>& eog_ids() const { return eog_; }

  /// Tokens that the special-token partition looks for (attr control, user-defined or unknown), in
  /// llama.cpp's order (std::sort by text length, longest first).
  const std::vector<int32_t>& partition_tokens() const { return partition_; }

  /// SPM byte-fallback token of a byte: "<0xXX>", else the one-byte token, else kNoToken.
  int32_t byte_token(uint8_t byte) const { return byte_tokens_[byte]; }

  /// Non-fatal findings while loading (ignored special-token ids, ...), one line each.
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  Vocab() = default;
  void load_tokens(const gguf::Metadata& md, const std::string& file);
  void load_merges(const gguf::Metadata& md, const std::string& file);
  void load_special_ids(const gguf::Metadata& md, const std::string& file);
  void detect_special_by_text();
  void build_caches();

  VocabType type_ = VocabType::kSpm;
  PreTypeInfo pre_;
  std::vector<std::string> texts_;
  std::vector<float> scores_;
  std::vector<uint32_t> attrs_;
  TextIndex index_;                   // text -> id
  PairIndex merge_ids_;               // (left id << 32 | right id) -> rank
  std::unordered_map<std::string, int32_t> merge_texts_;  // pairs with a part that is no token (rare)
  SpecialTokens special_;
  bool add_bos_ = false, add_eos_ = false, add_space_prefix_ = false, clean_spaces_ = false;
  std::vector<int32_t> eog_;
  std::vector<int32_t> partition_;
  std::vector<int32_t> byte_tokens_;
  std::vector<std::string> warnings_;
};

}  // namespace moetier::tokenizer
