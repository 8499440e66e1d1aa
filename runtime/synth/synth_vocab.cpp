#include "runtime/synth/synth_vocab.hpp"

#include <map>
#include <set>
#include <string_view>
#include <utility>

#include "common/error.hpp"

namespace moetier::synth {
namespace {

// Built-in training text for the merges (written for this project).
constexpr std::string_view kCorpus =
    "Once upon a time there was a small town by the sea. The people of the town worked in the morning and "
    "rested in the evening. Every day the children went to the school on the hill, and every night the "
    "lights of the harbour came on one by one. The fishermen told stories about the weather, the water and "
    "the wind, and the children listened to them with wide eyes.\n"
    "One morning a stranger arrived on the first train. She carried a heavy bag and a map of the old "
    "roads. She asked the baker where she could find a room for the night, and the baker said that the inn "
    "near the station was the best place in the town. The stranger thanked him and walked down the main "
    "street, looking at the houses, the shops and the people.\n"
    "In the afternoon she went to the library and read about the history of the region: the mines, the "
    "farms, the river and the bridge that was built more than two hundred years ago. She wrote notes in a "
    "little book and made drawings of the buildings she had seen. When the library closed, she walked back "
    "to the inn and ate dinner with the other guests.\n"
    "The next day she started to work. She measured the walls of the old church, counted the steps of the "
    "tower and took pictures of the windows. People wondered what she was doing, and some of them asked "
    "her. She explained that she was writing a book about the towns of the coast, and that this town had "
    "one of the most interesting stories of all. After that, everyone wanted to help her.\n"
    "def main():\n    for i in range(10):\n        print(i, i * i)\n    return 0\n"
    "The numbers 1, 2, 3, 4, 5, 6, 7, 8, 9 and 10 were written on the board, together with the words "
    "first, second, third, and the date of the meeting: 12 March 2024.\n";

enum class CharClass { Space, Letter, Digit, Other };

CharClass class_of(unsigned char c) {
  if (c == ' ' || c == '\t' || c == '\n' || c == '\r') return CharClass::Space;
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80) return CharClass::Letter;
  if (c >= '0' && c <= '9') return CharClass::Digit;
  return CharClass::Other;
}

/// GPT-2-like pre-tokenisation: a word is an optional single leading space plus a run of one class;
/// other whitespace stands alone.
std::vector<std::string> pre_tokenize(std::string_view text) {
  std::vector<std::string> words;
  size_t i = 0;
  while (i < text.size()) {
    size_t j = i;
    if (text[j] == ' ' && j + 1 < text.size() && class_of(static_cast<unsigned char>(text[j + 1])) != CharClass::Space)
      ++j;
    const CharClass k = class_of(static_cast<unsigned char>(text[j]));
    size_t e = j + 1;
    if (k != CharClass::Space)
      while (e < text.size() && class_of(static_cast<unsigned char>(text[e])) == k) ++e;
    words.emplace_back(text.substr(i, e - i));
    i = e;
  }
  return words;
}

}  // namespace

std::string byte_token(uint8_t b) {
  // Printable bytes keep their code point; the others get U+0100 + k in byte order.
  auto printable = [](int c) { return (c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255); };
  int cp = b;
  if (!printable(b)) {
    int k = 0;
    for (int c = 0; c < b; ++c)
      if (!printable(c)) ++k;
    cp = 256 + k;
  }
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else {  // two-byte UTF-8 (cp < 0x800)
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

SynthVocab make_byte_bpe_vocab(int64_t n_vocab, int64_t max_merges) {
  if (n_vocab < 258) fail("synth: vocabulary of {} tokens is too small (at least 256 bytes + 2 specials)", n_vocab);
  SynthVocab v;
  std::string spelled[256];
  for (int b = 0; b < 256; ++b) {
    spelled[b] = byte_token(static_cast<uint8_t>(b));
    v.tokens.push_back(spelled[b]);
    v.token_types.push_back(static_cast<int32_t>(TokenType::Normal));
  }

  // Word frequencies, each word as a sequence of symbols.
  std::map<std::vector<std::string>, int64_t> words;
  for (const auto& w : pre_tokenize(kCorpus)) {
    std::vector<std::string> syms;
    for (unsigned char c : w) syms.push_back(spelled[c]);
    ++words[syms];
  }
  const int64_t room = n_vocab - 258;
  const int64_t want = std::min(room, max_merges);
  std::set<std::string> known(v.tokens.begin(), v.tokens.end());
  while (static_cast<int64_t>(v.merges.size()) < want) {
    std::map<std::pair<std::string, std::string>, int64_t> pairs;
    for (const auto& [syms, n] : words)
      for (size_t i = 0; i + 1 < syms.size(); ++i) pairs[{syms[i], syms[i + 1]}] += n;
    const std::pair<std::string, std::string>* best = nullptr;
    int64_t best_n = 1;  // a merge must occur at least twice
    for (const auto& [p, n] : pairs)
      if (n > best_n && !known.count(p.first + p.second)) best = &p, best_n = n;
    if (!best) break;
    const auto [a, b] = *best;
    const std::string ab = a + b;
    v.merges.push_back(a + " " + b);
    v.tokens.push_back(ab);
    v.token_types.push_back(static_cast<int32_t>(TokenType::Normal));
    known.insert(ab);
    std::map<std::vector<std::string>, int64_t> next;
    for (const auto& [syms, n] : words) {
      std::vector<std::string> out;
      for (size_t i = 0; i < syms.size(); ++i) {
        if (i + 1 < syms.size() && syms[i] == a && syms[i + 1] == b) {
          out.push_back(ab);
          ++i;
        } else {
          out.push_back(syms[i]);
        }
      }
      next[out] += n;
    }
    words = std::move(next);
  }

  v.bos_id = static_cast<int64_t>(v.tokens.size());
  v.tokens.emplace_back("<|bos|>");
  v.token_types.push_back(static_cast<int32_t>(TokenType::Control));
  v.eos_id = static_cast<int64_t>(v.tokens.size());
  v.tokens.emplace_back("<|eos|>");
  v.token_types.push_back(static_cast<int32_t>(TokenType::Control));
  for (int64_t i = 0; static_cast<int64_t>(v.tokens.size()) < n_vocab; ++i) {
    v.tokens.push_back("<|unused_" + std::to_string(i) + "|>");
    v.token_types.push_back(static_cast<int32_t>(TokenType::Unused));
  }
  return v;
}

}  // namespace moetier::synth
