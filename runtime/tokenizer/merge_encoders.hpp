// The two merge algorithms that turn a piece of text into token ids.
//  * SentencePiece BPE ("llama" vocabularies): start from UTF-8 characters, repeatedly merge the
//    adjacent pair whose concatenation is a token with the highest score (ties: leftmost), then emit
//    each piece as its token or, failing that, as byte-fallback tokens <0xXX>.
//    Reference: llama.cpp src/llama-vocab.cpp llm_tokenizer_spm_session.
//  * Byte-level BPE ("gpt2" vocabularies), per pre-tokenized word: repeatedly merge the adjacent pair
//    with the lowest merge rank (ties: leftmost); a final piece that is no token is emitted as the
//    tokens of its single bytes, where such tokens exist. Reference: llm_tokenizer_bpe_session.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "runtime/tokenizer/vocab.hpp"

namespace moetier::tokenizer {

/// Appends the SPM tokens of `text` (spaces already escaped as U+2581, prefix already added) to `out`.
/// A byte without a byte-fallback token is emitted as the unknown token when there is one, else
/// dropped (llama.cpp throws std::out_of_range there).
void spm_encode(const Vocab& vocab, std::string_view text, std::vector<int32_t>& out);

/// Appends the byte-level BPE tokens of one pre-tokenized, GPT-2 byte-encoded word to `out`.
void bpe_encode_word(const Vocab& vocab, std::string_view word, std::vector<int32_t>& out);

}  // namespace moetier::tokenizer
