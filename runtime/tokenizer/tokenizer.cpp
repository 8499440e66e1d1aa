// Tokenizer and StreamingDetokenizer. See tokenizer.hpp.
#include "runtime/tokenizer/tokenizer.hpp"

#include <cstdlib>

#include "common/error.hpp"
#include "runtime/tokenizer/merge_encoders.hpp"
#include "runtime/tokenizer/unicode.hpp"

namespace moetier::tokenizer {
namespace {

constexpr std::string_view kEscapedSpace = "\xE2\x96\x81";  // U+2581

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size())
    out.append(s, pos, hit - pos).append(to);
  out.append(s, pos, std::string::npos);
  s = std::move(out);
}

// llama.cpp llama_decode_text: inverse GPT-2 byte map, codepoint by codepoint; appends to `out`.
void append_byte_level_decoded(std::string_view text, std::string& out) {
  size_t off = 0;
  while (off < text.size()) {
    const uint32_t cpt = decode_utf8_at(text, off);
    const int byte = codepoint_to_byte(cpt);
    if (byte >= 0) {
      out.push_back(static_cast<char>(byte));
      continue;
    }
    std::string utf8;
    append_utf8(utf8, cpt);
    out += "[UNK_BYTE_0x";
    for (const char c : utf8) out += fmt::format("{:02x}", static_cast<uint8_t>(c));
    out.append(text).append("]");
  }
}

}  // namespace

Tokenizer Tokenizer::from_gguf(const gguf::GgufModel& model) { return from_metadata(model.metadata(), model.path()); }

Tokenizer Tokenizer::from_metadata(const gguf::Metadata& md, const std::string& file) {
  return Tokenizer(Vocab::from_metadata(md, file));
}

Tokenizer::Tokenizer(Vocab vocab) : vocab_(std::move(vocab)) {
  if (vocab_.type() == VocabType::kBpe) pre_.emplace(vocab_.pre().type);
  piece_offsets_.reserve(vocab_.n_tokens() + 1);
  piece_offsets_.push_back(0);
  for (int32_t id = 0; id < vocab_.n_tokens(); ++id) {
    append_piece(id, pieces_);
    piece_offsets_.push_back(static_cast<uint32_t>(pieces_.size()));
  }
}

void Tokenizer::append_piece(int32_t id, std::string& out) const {
  const uint32_t attr = vocab_.attr(id);
  const std::string& text = vocab_.text(id);
  if (attr & (kAttrUnknown | kAttrControl | kAttrUserDefined)) {
    out += text;
  } else if (attr & kAttrNormal) {
    if (vocab_.type() == VocabType::kBpe) {
      append_byte_level_decoded(text, out);
    } else {  // SPM: U+2581 -> ' '
      size_t pos = 0;
      for (size_t hit; (hit = text.find(kEscapedSpace, pos)) != std::string::npos; pos = hit + kEscapedSpace.size())
        out.append(text, pos, hit - pos).push_back(' ');
      out.append(text, pos, std::string::npos);
    }
  } else if (attr & kAttrByte) {  // "<0xXX>"
    const std::string hex = text.size() >= 5 ? text.substr(3, 2) : std::string();
    out.push_back(static_cast<char>(std::strtol(hex.c_str(), nullptr, 16)));
  }
  // unused / undefined tokens have no piece
}

std::string_view Tokenizer::piece(int32_t id, bool special) const {
  if (id < 0 || id >= vocab_.n_tokens()) fail("token_to_piece: token id {} outside the vocabulary (0..{})", id, vocab_.n_tokens() - 1);
  if (!special && (vocab_.attr(id) & (kAttrUnknown | kAttrControl))) return {};
  return std::string_view(pieces_).substr(piece_offsets_[id], piece_offsets_[id + 1] - piece_offsets_[id]);
}

std::string Tokenizer::token_to_piece(int32_t id, bool special) const { return std::string(piece(id, special)); }

std::vector<Tokenizer::Fragment> Tokenizer::partition(std::string_view text, bool parse_special) const {
  std::vector<Fragment> frags;
  if (text.empty()) return frags;
  frags.push_back({kNoToken, 0, text.size()});
  std::vector<Fragment> next;
  for (const int32_t id : vocab_.partition_tokens()) {
    if (!parse_special && (vocab_.attr(id) & (kAttrControl | kAttrUnknown))) continue;
    const std::string& tok = vocab_.text(id);
    if (text.find(tok) == std::string_view::npos) continue;  // cheap exit, same result
    next.clear();
    for (const Fragment& f : frags) {
      if (f.token != kNoToken) {
        next.push_back(f);
        continue;
      }
      const size_t end = f.offset + f.length;
      size_t off = f.offset;
      for (size_t hit; (hit = text.substr(0, end).find(tok, off)) != std::string_view::npos; off = hit + tok.size()) {
        if (hit > off) next.push_back({kNoToken, off, hit - off});
        next.push_back({id, hit, tok.size()});
      }
      if (off < end) next.push_back({kNoToken, off, end - off});
    }
    frags.swap(next);
  }
  return frags;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  std::vector<int32_t> out;
  const std::vector<Fragment> frags = partition(text, parse_special);
  const SpecialTokens& sp = vocab_.special();
  if (add_special && vocab_.add_bos()) out.push_back(sp.bos);

  if (vocab_.type() == VocabType::kSpm) {
    bool prev_special = true;  // the first text run gets the space prefix too
    for (const Fragment& f : frags) {
      if (f.token != kNoToken) {
        out.push_back(f.token);
        prev_special = true;
        continue;
      }
      std::string s = (vocab_.add_space_prefix() && prev_special) ? " " : "";
      s.append(text.substr(f.offset, f.length));
      replace_all(s, " ", kEscapedSpace);
      spm_encode(vocab_, s, out);
      prev_special = false;
    }
  } else {
    for (const Fragment& f : frags) {
      if (f.token != kNoToken) {
        out.push_back(f.token);
        continue;
      }
      for (const std::string& word : pre_->split(text.substr(f.offset, f.length))) bpe_encode_word(vocab_, word, out);
    }
  }

  if (add_special && vocab_.add_eos()) out.push_back(sp.eos);
  return out;
}

size_t utf8_complete_prefix(std::string_view bytes) {
  const size_t n = bytes.size();
  // The last byte that is not a continuation byte, looking at most 4 bytes back.
  for (size_t back = 1; back <= 4 && back <= n; ++back) {
    const auto b = static_cast<uint8_t>(bytes[n - back]);
    if ((b & 0xC0) == 0x80) continue;
    size_t need = 1;
    if ((b & 0xE0) == 0xC0) need = 2;
    else if ((b & 0xF0) == 0xE0) need = 3;
    else if ((b & 0xF8) == 0xF0) need = 4;
    return need > back ? n - back : n;
  }
  return n;
}

std::string StreamingDetokenizer::push(int32_t id) {
  pending_.append(tokenizer_.piece(id, special_));
  const size_t ready = utf8_complete_prefix(pending_);
  std::string out = pending_.substr(0, ready);
  pending_.erase(0, ready);
  return out;
}

std::string StreamingDetokenizer::finish() {
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace moetier::tokenizer
