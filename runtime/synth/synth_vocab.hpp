// A small self-made tokenizer for synthetic models, so that `moetier synth` output is runnable without
// any outside vocabulary: byte-level BPE in llama.cpp's "gpt2" format (tokenizer.ggml.model "gpt2",
// pre "default"): 256 byte tokens spelled with GPT-2's byte-to-unicode table, merges learned from a
// built-in English text, special tokens <|bos|> / <|eos|>, and unused padding tokens up to the size a
// model needs. Source of the format: llama.cpp llama-vocab.cpp (LLAMA_VOCAB_TYPE_BPE), GPT-2 encoder.py.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moetier::synth {

/// llama.cpp token types (tokenizer.ggml.token_type values).
enum class TokenType : int32_t { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

struct SynthVocab {
  std::vector<std::string> tokens;      // [n_vocab]
  std::vector<int32_t> token_types;     // [n_vocab] TokenType values
  std::vector<std::string> merges;      // "left right", in priority order
  int64_t bos_id = -1;
  int64_t eos_id = -1;
};

/// UTF-8 spelling of byte `b` in GPT-2's byte-level alphabet (printable bytes stay, others map to
/// U+0100 + k), e.g. ' ' -> "Ġ", '\n' -> "Ċ".
std::string byte_token(uint8_t b);

/// Builds a vocabulary of exactly n_vocab tokens: ids 0..255 the bytes, then up to `max_merges` learned
/// merges (fewer if the built-in text yields fewer), then <|bos|>, <|eos|>, then "<|unused_N|>" padding.
/// Deterministic. Throws Error if n_vocab < 258.
SynthVocab make_byte_bpe_vocab(int64_t n_vocab, int64_t max_merges);

}  // namespace moetier::synth
