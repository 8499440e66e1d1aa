// Tokenizer: text <-> token ids for a GGUF model, reproducing llama.cpp's llama_tokenize and
// llama_token_to_piece for SentencePiece ("llama") and byte-level BPE ("gpt2") vocabularies.
// Reference: llama.cpp src/llama-vocab.cpp (llama_vocab::impl::tokenize, tokenizer_st_partition,
// token_to_piece). Thread-safety: all const member functions may be called concurrently.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/gguf/gguf_model.hpp"
#include "runtime/tokenizer/pretokenizer.hpp"
#include "runtime/tokenizer/vocab.hpp"

namespace moetier::tokenizer {

class Tokenizer {
 public:
  /// Builds the tokenizer of `model` from its tokenizer.ggml.* metadata (see Vocab::from_metadata
  /// for the errors thrown; they name model.path()).
  static Tokenizer from_gguf(const gguf::GgufModel& model);
  /// Same from bare metadata; `file` names the source in errors.
  static Tokenizer from_metadata(const gguf::Metadata& md, const std::string& file);

  /// Token ids of `text` (UTF-8; invalid bytes are tokenized as U+FFFD by BPE vocabularies and as
  /// byte-fallback tokens by SPM ones), as llama_tokenize(vocab, text, add_special, parse_special):
  ///  * add_special: prepend BOS / append EOS where the vocabulary asks for them (add_bos/add_eos);
  ///  * parse_special: text equal to a control / unknown token's text becomes that token; user-defined
  ///    tokens are always matched this way, whatever parse_special says.
  /// SPM vocabularies prefix a space to the text and to every text run that follows a special token
  /// (add_space_prefix).
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;

  /// Bytes of token `id`, as llama_token_to_piece(vocab, id, buf, len, lstrip = 0, special):
  /// SPM "▁" -> " ", byte tokens <0xXX> -> that byte, BPE -> bytes through the inverse GPT-2 byte map;
  /// control / unknown tokens give their text when `special`, else ""; user-defined tokens always give
  /// their text; unused / undefined tokens give "". The result need not be valid UTF-8 on its own.
  /// Throws moetier::Error if id is outside [0, n_vocab).
  std::string token_to_piece(int32_t id, bool special = true) const;
  /// Non-allocating form of token_to_piece: a view into this tokenizer's piece table.
  std::string_view piece(int32_t id, bool special = true) const;

  /// Beginning / end of sequence token ids (kNoToken = -1 if none).
  int32_t bos() const { return vocab_.special().bos; }
  int32_t eos() const { return vocab_.special().eos; }
  /// True if generating `id` ends generation (EOS, EOT, EOM, and tokens llama.cpp recognises by text).
  bool is_eog(int32_t id) const { return vocab_.is_eog(id); }
  /// Number of tokens in the vocabulary.
  int32_t n_vocab() const { return vocab_.n_tokens(); }
  /// Whether encode(..., add_special = true, ...) prepends BOS / appends EOS.
  bool add_bos() const { return vocab_.add_bos(); }
  bool add_eos() const { return vocab_.add_eos(); }

  const Vocab& vocab() const { return vocab_; }

  /// One run of the input after the special-token partition: a token (token >= 0) or raw text
  /// (token == kNoToken) at [offset, offset + length) of the input.
  struct Fragment {
    int32_t token = kNoToken;
    size_t offset = 0;
    size_t length = 0;
  };
  /// The special-token partition of `text` (llama.cpp tokenizer_st_partition): partition tokens are
  /// searched longest text first, each splitting the raw runs left by the previous ones.
  std::vector<Fragment> partition(std::string_view text, bool parse_special) const;

 private:
  explicit Tokenizer(Vocab vocab);
  void append_piece(int32_t id, std::string& out) const;

  Vocab vocab_;
  std::optional<PreTokenizer> pre_;  // byte-level BPE only
  std::string pieces_;               // all pieces (special = true), concatenated
  std::vector<uint32_t> piece_offsets_;  // n_vocab + 1 offsets into pieces_
};

/// Turns a stream of generated tokens into text without ever splitting a UTF-8 character: a trailing
/// incomplete multi-byte sequence is held back until the bytes that complete it arrive. Bytes are
/// otherwise passed through unchanged (invalid sequences are not repaired).
class StreamingDetokenizer {
 public:
  /// `tokenizer` must outlive this object; `special` as in Tokenizer::token_to_piece.
  explicit StreamingDetokenizer(const Tokenizer& tokenizer, bool special = true)
      : tokenizer_(tokenizer), special_(special) {}

  /// Appends the piece of `id`; returns the bytes that are now safe to print (possibly empty).
  std::string push(int32_t id);
  /// Returns whatever is still held back (an incomplete sequence at the end of the stream) and resets.
  std::string finish();
  /// Number of bytes currently held back (0..3).
  size_t pending() const { return pending_.size(); }

 private:
  const Tokenizer& tokenizer_;
  bool special_;
  std::string pending_;
};

/// Length of the longest prefix of `bytes` that does not end inside an incomplete (but so far valid)
/// UTF-8 sequence; bytes.size() when nothing needs holding back.
size_t utf8_complete_prefix(std::string_view bytes);

}  // namespace moetier::tokenizer
