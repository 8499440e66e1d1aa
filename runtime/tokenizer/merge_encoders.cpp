// SPM and byte-level BPE merge loops. See merge_encoders.hpp.
#include "runtime/tokenizer/merge_encoders.hpp"

#include <algorithm>
#include <queue>

#include "runtime/tokenizer/unicode.hpp"

namespace moetier::tokenizer {
namespace {

// A piece of the text being merged; a doubly linked list over the initial characters.
struct Symbol {
  uint32_t start = 0;
  uint32_t len = 0;  // 0 once merged into its left neighbour
  int32_t prev = -1;
  int32_t next = -1;
  int32_t id = kNoToken;  // BPE only: token of the current text
};

std::vector<Symbol> split_chars(std::string_view text) {
  std::vector<Symbol> syms;
  size_t off = 0;
  while (off < text.size()) {
    Symbol s;
    s.start = static_cast<uint32_t>(off);
    s.len = static_cast<uint32_t>(std::min(utf8_sequence_length(text[off]), text.size() - off));
    off += s.len;
    s.prev = static_cast<int32_t>(syms.size()) - 1;
    s.next = off == text.size() ? -1 : static_cast<int32_t>(syms.size()) + 1;
    syms.push_back(s);
  }
  return syms;
}

// Unlinks syms[right] after appending it to syms[left].
void merge_into_left(std::vector<Symbol>& syms, int32_t left, int32_t right) {
  Symbol& l = syms[left];
  Symbol& r = syms[right];
  l.len += r.len;
  r.len = 0;
  l.next = r.next;
  if (r.next >= 0) syms[r.next].prev = left;
}

struct SpmBigram {
  float score;
  int32_t left, right;
  uint32_t size;
  // priority_queue puts the "largest" on top: highest score, then lowest left index.
  bool operator<(const SpmBigram& o) const { return score < o.score || (score == o.score && left > o.left); }
};

struct BpeBigram {
  int32_t rank;
  int32_t left, right;
  uint32_t size;
  // Lowest rank on top, then lowest left index.
  bool operator<(const BpeBigram& o) const { return rank > o.rank || (rank == o.rank && left > o.left); }
};

}  // namespace

void spm_encode(const Vocab& vocab, std::string_view text, std::vector<int32_t>& out) {
  std::vector<Symbol> syms = split_chars(text);
  if (syms.empty()) return;
  std::priority_queue<SpmBigram> queue;
  const auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const uint32_t size = syms[left].len + syms[right].len;
    const int32_t id = vocab.find(text.substr(syms[left].start, size));
    if (id == kNoToken) return;
    queue.push({vocab.score(id), left, right, size});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(syms.size()); ++i) try_add(i - 1, i);

  while (!queue.empty()) {
    const SpmBigram b = queue.top();
    queue.pop();
    const Symbol& l = syms[b.left];
    const Symbol& r = syms[b.right];
    if (l.len == 0 || r.len == 0 || l.len + r.len != b.size) continue;  // stale
    merge_into_left(syms, b.left, b.right);
    try_add(syms[b.left].prev, b.left);
    try_add(b.left, syms[b.left].next);
  }

  // A piece that is no token can only be an unmerged character (merges always form tokens).
  for (int32_t i = 0; i != -1; i = syms[i].next) {
    const std::string_view piece = text.substr(syms[i].start, syms[i].len);
    const int32_t id = vocab.find(piece);
    if (id != kNoToken) {
      out.push_back(id);
      continue;
    }
    for (const char ch : piece) {
      int32_t byte_id = vocab.byte_token(static_cast<uint8_t>(ch));
      if (byte_id == kNoToken) byte_id = vocab.special().unk;
      if (byte_id != kNoToken) out.push_back(byte_id);
    }
  }
}

void bpe_encode_word(const Vocab& vocab, std::string_view word, std::vector<int32_t>& out) {
  if (word.empty()) return;
  if (vocab.ignore_merges()) {
    if (const int32_t id = vocab.find(word); id != kNoToken) {
      out.push_back(id);
      return;
    }
  }
  std::vector<Symbol> syms = split_chars(word);
  for (auto& s : syms) s.id = vocab.find(word.substr(s.start, s.len));

  std::priority_queue<BpeBigram> queue;
  const auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const Symbol& l = syms[left];
    const Symbol& r = syms[right];
    const int32_t rank = vocab.merge_rank(word.substr(l.start, l.len), l.id, word.substr(r.start, r.len), r.id);
    if (rank < 0) return;
    queue.push({rank, left, right, l.len + r.len});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(syms.size()); ++i) try_add(i - 1, i);

  while (!queue.empty()) {
    const BpeBigram b = queue.top();
    queue.pop();
    const Symbol& l = syms[b.left];
    const Symbol& r = syms[b.right];
    if (l.len == 0 || r.len == 0 || l.len + r.len != b.size) continue;  // stale
    merge_into_left(syms, b.left, b.right);
    Symbol& merged = syms[b.left];
    merged.id = vocab.find(word.substr(merged.start, merged.len));
    try_add(merged.prev, b.left);
    try_add(b.left, merged.next);
  }

  for (int32_t i = 0; i != -1; i = syms[i].next) {
    const Symbol& s = syms[i];
    if (s.id != kNoToken) {
      out.push_back(s.id);
      continue;
    }
    for (const char ch : word.substr(s.start, s.len)) {
      const int32_t byte_id = vocab.find(std::string_view(&ch, 1));
      if (byte_id != kNoToken) out.push_back(byte_id);
    }
  }
}

}  // namespace moetier::tokenizer
