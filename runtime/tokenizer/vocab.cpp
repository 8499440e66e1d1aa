// Vocab: loading and validation. See vocab.hpp.
#include "runtime/tokenizer/vocab.hpp"

#include <algorithm>
#include <cmath>
#include <memory_resource>
#include <set>
#include <unordered_map>

#include "common/error.hpp"

namespace moetier::tokenizer {
namespace {

constexpr std::string_view kKeyModel = "tokenizer.ggml.model";
constexpr std::string_view kKeyPre = "tokenizer.ggml.pre";
constexpr std::string_view kKeyTokens = "tokenizer.ggml.tokens";
constexpr std::string_view kKeyScores = "tokenizer.ggml.scores";
constexpr std::string_view kKeyTypes = "tokenizer.ggml.token_type";
constexpr std::string_view kKeyMerges = "tokenizer.ggml.merges";

// Special-token id keys, in the order of Vocab::load_special_ids' slots.
constexpr std::string_view kSpecialIdKeys[] = {
    "tokenizer.ggml.bos_token_id",       "tokenizer.ggml.eos_token_id",      "tokenizer.ggml.eot_token_id",
    "tokenizer.ggml.eom_token_id",       "tokenizer.ggml.unknown_token_id",  "tokenizer.ggml.seperator_token_id",
    "tokenizer.ggml.padding_token_id",   "tokenizer.ggml.mask_token_id",     "tokenizer.ggml.fim_pre_token_id",
    "tokenizer.ggml.fim_suf_token_id",   "tokenizer.ggml.fim_mid_token_id",  "tokenizer.ggml.fim_pad_token_id",
    "tokenizer.ggml.fim_rep_token_id",   "tokenizer.ggml.fim_sep_token_id",  "tokenizer.ggml.prefix_token_id",
    "tokenizer.ggml.suffix_token_id",    "tokenizer.ggml.middle_token_id",
};

uint32_t attr_from_type(int64_t type) {
  switch (type) {
    case 1: return kAttrNormal;
    case 2: return kAttrUnknown;
    case 3: return kAttrControl;
    case 4: return kAttrUserDefined;
    case 5: return kAttrUnused;
    case 6: return kAttrByte;
    default: return kAttrUndefined;
  }
}

// Token texts llama.cpp recognises (llama_vocab::impl::load, "auto-detect special tokens by text").
const std::initializer_list<std::string_view> kEotTexts = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
    "_<EOT>", "[EOT]", "<\uFF5Cend\u2581of\u2581sentence\uFF5C>", "<end_of_utterance>"};
const std::initializer_list<std::string_view> kEomTexts = {"<|eom_id|>"};
const std::initializer_list<std::string_view> kFimPreTexts = {
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\uFF5Cfim\u2581begin\uFF5C>", "<PRE>", "\u2581<PRE>",
    "<|code_prefix|>", "<|prefix|>"};
const std::initializer_list<std::string_view> kFimSufTexts = {
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\uFF5Cfim\u2581hole\uFF5C>", "<SUF>", "\u2581<SUF>",
    "<|code_suffix|>", "<|suffix|>"};
const std::initializer_list<std::string_view> kFimMidTexts = {
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\uFF5Cfim\u2581end\uFF5C>", "<MID>", "\u2581<MID>",
    "<|code_middle|>", "<|middle|>"};
const std::initializer_list<std::string_view> kFimPadTexts = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>",
                                                              "[PAD]"};
const std::initializer_list<std::string_view> kFimRepTexts = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>",
                                                              "<REPO>", "<reponame>"};
const std::initializer_list<std::string_view> kFimSepTexts = {"<|file_sep|>"};
const std::initializer_list<std::string_view> kEogTexts = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<\uFF5Cend\u2581of\u2581sentence\uFF5C>", "[e~["};
// gpt-oss (o200k_harmony): always rendered, never special-parsed as control.
const std::initializer_list<std::string_view> kHarmonyUserTexts = {"<|channel|>", "<|message|>", "<|start|>",
                                                                   "<|constrain|>"};

}  // namespace

namespace {

bool is_hex_digit(char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f'); }

/// "<0xHH>": the only text a byte token (type 6) may have; its piece is the byte HH.
bool is_byte_token_text(std::string_view t) {
  return t.size() == 6 && t.substr(0, 3) == "<0x" && is_hex_digit(t[3]) && is_hex_digit(t[4]) && t[5] == '>';
}

/// At most 24 bytes of `t`, printable ASCII kept and every other byte written \xHH (one line).
std::string printable(std::string_view t) {
  std::string out;
  for (size_t i = 0; i < t.size() && i < 24; ++i) {
    const auto c = static_cast<unsigned char>(t[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') out.push_back(static_cast<char>(c));
    else out += fmt::format("\\x{:02X}", c);
  }
  if (t.size() > 24) out += "...";
  return out;
}

}  // namespace

void check_token_metadata(const gguf::Metadata& md, const std::string& file) {
  const std::vector<std::string>* tokens = md.get_string_array(kKeyTokens);
  if (!tokens) return;
  const auto n = static_cast<int64_t>(tokens->size());
  if (auto types = md.get_int_array(kKeyTypes)) {
    for (size_t i = 0; i < types->size(); ++i) {
      const int64_t t = (*types)[i];
      if (t < 0 || t > 6)
        fail("{}: {}[{}] is {} (expected 0..6: undefined, normal, unknown, control, user-defined, unused, byte)",
             file, kKeyTypes, i, t);
      // A byte token's piece is the byte its text names; any other text rendered as a NUL byte.
      if (t == 6 && i < tokens->size() && !is_byte_token_text((*tokens)[i]))
        fail("{}: {}[{}] is 6 (byte) but {}[{}] is \"{}\" (a byte token's text must be <0xHH>)", file, kKeyTypes, i,
             kKeyTokens, i, printable((*tokens)[i]));
    }
  }
  // Scores steer SentencePiece merges: NaN / inf would silently change the tokenisation.
  if (auto scores = md.get_float_array(kKeyScores)) {
    for (size_t i = 0; i < scores->size(); ++i)
      if (!std::isfinite((*scores)[i]))
        fail("{}: {}[{}] is {} (expected a finite number)", file, kKeyScores, i, static_cast<float>((*scores)[i]));
  }
  for (const std::string_view key : kSpecialIdKeys) {
    const auto id = md.get_int(key);
    if (id && (*id < 0 || *id >= n))
      fail("{}: {} is {}, outside the vocabulary (expected 0..{}: {} has {} tokens)", file, key, *id, n - 1,
           kKeyTokens, n);
  }
}

Vocab Vocab::from_metadata(const gguf::Metadata& md, const std::string& file) {
  Vocab v;
  const auto model = md.get_string(kKeyModel);
  if (!model) fail("{}: missing metadata key {} (the file has no tokenizer)", file, kKeyModel);
  check_token_metadata(md, file);
  if (*model == "llama") {
    v.type_ = VocabType::kSpm;
    v.add_space_prefix_ = true;
    v.add_bos_ = true;
    v.add_eos_ = false;
    v.clean_spaces_ = false;
  } else if (*model == "gpt2") {
    v.type_ = VocabType::kBpe;
    const std::string pre = md.get_string(kKeyPre).value_or("");
    if (!lookup_pre_type(pre, v.pre_))
      fail("{}: {}: pre-tokenizer '{}' is not supported (supported: default, llama-bpe/llama3, qwen2, "
           "deepseek-llm, deepseek-coder, deepseek-v3, gpt-4o, gpt-2, glm4, kimi-k2, minimax-m2)",
           file, kKeyPre, pre);
    if (pre.empty()) v.warnings_.push_back(fmt::format("{}: missing {}, using 'default'", file, kKeyPre));
    v.add_space_prefix_ = false;
    v.add_bos_ = v.pre_.add_bos;
    v.add_eos_ = false;
    v.clean_spaces_ = v.pre_.clean_spaces;
  } else {
    fail("{}: {}: tokenizer model '{}' is not supported (expected 'llama' or 'gpt2')", file, kKeyModel, *model);
  }
  if (auto b = md.get_bool("tokenizer.ggml.add_space_prefix")) v.add_space_prefix_ = *b;

  v.load_tokens(md, file);
  if (v.type_ == VocabType::kBpe) v.load_merges(md, file);
  v.load_special_ids(md, file);
  v.detect_special_by_text();
  v.build_caches();
  return v;
}

void Vocab::load_tokens(const gguf::Metadata& md, const std::string& file) {
  const std::vector<std::string>* tokens = md.get_string_array(kKeyTokens);
  if (!tokens) fail("{}: missing metadata key {}", file, kKeyTokens);
  if (tokens->empty()) fail("{}: {}: the vocabulary is empty", file, kKeyTokens);
  if (tokens->size() > static_cast<size_t>(INT32_MAX))
    fail("{}: {}: {} tokens is too many", file, kKeyTokens, tokens->size());
  const size_t n = tokens->size();

  if (auto scores = md.get_float_array(kKeyScores)) {
    const gguf::Value* raw = md.find(kKeyScores);
    const auto et = raw->as_array().elem_type;
    if (et != gguf::ValueType::FLOAT32 && et != gguf::ValueType::INT32)
      fail("{}: {}: expected array<float32> or array<int32>, found array<{}>", file, kKeyScores,
           gguf::value_type_name(et));
    if (scores->size() != n)
      fail("{}: {}: {} scores for {} tokens (lengths must match)", file, kKeyScores, scores->size(), n);
    scores_.assign(scores->begin(), scores->end());
  }

  attrs_.assign(n, kAttrNormal);
  if (auto types = md.get_int_array(kKeyTypes)) {
    const auto et = md.find(kKeyTypes)->as_array().elem_type;
    if (et != gguf::ValueType::INT32)
      fail("{}: {}: expected array<int32>, found array<{}>", file, kKeyTypes, gguf::value_type_name(et));
    if (types->size() != n)
      fail("{}: {}: {} token types for {} tokens (lengths must match)", file, kKeyTypes, types->size(), n);
    for (size_t i = 0; i < n; ++i) attrs_[i] = attr_from_type((*types)[i]);  // values checked: 0..6
  }

  texts_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    texts_[i] = (*tokens)[i].empty() ? "[EMPTY_" + std::to_string(i) + "]" : (*tokens)[i];
  }
  index_.reset(n);
  for (size_t i = 0; i < n; ++i) {
    const int32_t other = index_.insert(texts_, static_cast<int32_t>(i));
    if (other >= 0) fail("{}: {}: duplicate token '{}' at ids {} and {}", file, kKeyTokens, texts_[i], other, i);
  }
}

void Vocab::load_merges(const gguf::Metadata& md, const std::string& file) {
  const std::vector<std::string>* merges = md.get_string_array(kKeyMerges);
  if (!merges) fail("{}: missing metadata key {} (required for a gpt2 vocabulary)", file, kKeyMerges);
  merge_ids_.reset(merges->size());
  for (size_t i = 0; i < merges->size(); ++i) {
    const std::string& m = (*merges)[i];
    const size_t sp = m.find(' ', 1);
    if (sp == std::string::npos) continue;  // llama.cpp stores an unmatchable ("", "") pair
    const std::string_view left = std::string_view(m).substr(0, sp);
    const std::string_view right = std::string_view(m).substr(sp + 1);
    const int32_t l = find(left), r = find(right);
    const auto rank = static_cast<int32_t>(i);
    if (l != kNoToken && r != kNoToken) {
      merge_ids_.try_insert((uint64_t(uint32_t(l)) << 32) | uint32_t(r), rank);
    } else {
      std::string key = std::to_string(left.size()) + ':';
      key.append(left).append(right);
      merge_texts_.try_emplace(std::move(key), rank);
    }
  }
}

void Vocab::load_special_ids(const gguf::Metadata& md, const std::string& file) {
  if (type_ == VocabType::kSpm) {
    special_.bos = 1;
    special_.eos = 2;
    special_.unk = 0;
  } else {
    special_.bos = 11;
    special_.eos = 11;
  }
  int32_t* const ids[] = {
      &special_.bos,     &special_.eos,     &special_.eot,     &special_.eom,     &special_.unk,   &special_.sep,
      &special_.pad,     &special_.mask,    &special_.fim_pre, &special_.fim_suf, &special_.fim_mid,
      &special_.fim_pad, &special_.fim_rep, &special_.fim_sep, &special_.fim_pre, &special_.fim_suf,
      &special_.fim_mid,
  };
  static_assert(std::size(ids) == std::size(kSpecialIdKeys));
  for (size_t i = 0; i < std::size(ids); ++i) {
    if (*ids[i] >= n_tokens()) *ids[i] = kNoToken;  // default outside this vocabulary
    // Ids outside the vocabulary were rejected by check_token_metadata.
    if (const auto value = md.get_int(kSpecialIdKeys[i])) *ids[i] = static_cast<int32_t>(*value);
  }
  if (auto b = md.get_bool("tokenizer.ggml.add_bos_token")) add_bos_ = *b;
  if (auto b = md.get_bool("tokenizer.ggml.add_eos_token")) add_eos_ = *b;
  if (add_bos_ && special_.bos == kNoToken)
    fail("{}: tokenizer.ggml.add_bos_token is true, but tokenizer.ggml.bos_token_id is not set", file);
  if (add_eos_ && special_.eos == kNoToken)
    fail("{}: tokenizer.ggml.add_eos_token is true, but tokenizer.ggml.eos_token_id is not set", file);
}

void Vocab::detect_special_by_text() {
  const auto force_control = [this](int32_t id) { attrs_[id] |= kAttrControl; };
  // EOT/EOM/FIM ids not set by keys: llama.cpp takes the first candidate text it meets while iterating
  // its token_to_id (a std::unordered_map<std::string, id> filled in id order without reserve). When a
  // slot has several candidates, an identically built map gives the same iteration order.
  struct Slot {
    int32_t* id;
    std::initializer_list<std::string_view> texts;
    std::vector<int32_t> found;
  };
  Slot slots[] = {
      {&special_.eot, kEotTexts, {}},        {&special_.eom, kEomTexts, {}},
      {&special_.fim_pre, kFimPreTexts, {}}, {&special_.fim_suf, kFimSufTexts, {}},
      {&special_.fim_mid, kFimMidTexts, {}}, {&special_.fim_pad, kFimPadTexts, {}},
      {&special_.fim_rep, kFimRepTexts, {}}, {&special_.fim_sep, kFimSepTexts, {}},
  };
  bool need_order = false;
  for (auto& slot : slots) {
    if (*slot.id != kNoToken) continue;
    for (const std::string_view t : slot.texts)
      if (const int32_t id = find(t); id != kNoToken) slot.found.push_back(id);
    need_order |= slot.found.size() > 1;
  }
  std::vector<int32_t> visit;  // candidate ids in llama.cpp's visiting order
  if (need_order) {
    std::vector<bool> wanted(texts_.size());
    for (const auto& slot : slots)
      for (const int32_t id : slot.found) wanted[id] = true;
    // A monotonic arena keeps the nodes together and makes freeing them free; the iteration order
    // does not depend on the allocator.
    std::pmr::monotonic_buffer_resource arena(texts_.size() * 48);
    std::pmr::unordered_map<std::string_view, int32_t> order(&arena);
    for (size_t i = 0; i < texts_.size(); ++i) order.emplace(texts_[i], static_cast<int32_t>(i));
    for (const auto& entry : order)
      if (wanted[entry.second]) visit.push_back(entry.second);
  } else {
    for (const auto& slot : slots) visit.insert(visit.end(), slot.found.begin(), slot.found.end());
  }
  for (const int32_t id : visit) {
    for (auto& slot : slots) {
      if (*slot.id == kNoToken && std::find(slot.found.begin(), slot.found.end(), id) != slot.found.end()) {
        *slot.id = id;
        force_control(id);
      }
    }
  }
  for (int32_t id = 0; id < n_tokens(); ++id) {
    if ((attrs_[id] & kAttrControl) && texts_[id].find("unused") != std::string::npos) attrs_[id] |= kAttrUnused;
  }

  std::set<int32_t> eog;
  for (const int32_t id : {special_.fim_pad, special_.fim_rep, special_.fim_sep})
    if (id != kNoToken) eog.insert(id);
  for (const std::string_view t : kEogTexts) {
    if (const int32_t id = find(t); id != kNoToken) {
      eog.insert(id);
      force_control(id);
    }
  }
  for (const std::string_view t : kHarmonyUserTexts)
    if (const int32_t id = find(t); id != kNoToken) attrs_[id] = kAttrUserDefined;
  for (const int32_t id : {special_.eos, special_.eot, special_.eom})
    if (id != kNoToken) eog.insert(id);

  // o200k_harmony / solar-open: "<|end|>" ends a message, not the generation.
  bool has_return = false, has_call = false, has_flush = false;
  int32_t end_id = kNoToken, s_id = kNoToken;
  bool has_tool_response = false;
  for (const int32_t id : eog) {
    const std::string& t = texts_[id];
    if (t == "<|return|>") has_return = true;
    else if (t == "<|call|>" || t == "<|calls|>") has_call = true;
    else if (t == "<|flush|>") has_flush = true;
    else if (t == "<|end|>") end_id = id;
    if (t == "<|tool_response>") has_tool_response = true;
    else if (t == "</s>") s_id = id;
  }
  if (end_id != kNoToken && ((has_return && has_call) || (has_call && has_flush))) {
    eog.erase(end_id);
    attrs_[end_id] = kAttrUserDefined;
  }
  // gemma4 / paddleocr: "</s>" is not an end of generation there.
  if (has_tool_response && s_id != kNoToken) {
    eog.erase(s_id);
    attrs_[s_id] = kAttrNormal;
  }
  eog_.assign(eog.begin(), eog.end());
}

void Vocab::build_caches() {
  for (int32_t id = 0; id < n_tokens(); ++id)
    if (attrs_[id] & (kAttrControl | kAttrUserDefined | kAttrUnknown)) partition_.push_back(id);
  // Same algorithm and input order as llama.cpp, so ties between equally long texts end the same way.
  std::sort(partition_.begin(), partition_.end(),
            [this](int32_t a, int32_t b) { return texts_[a].size() > texts_[b].size(); });

  byte_tokens_.assign(256, kNoToken);
  if (type_ == VocabType::kSpm) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b) {
      const char name[7] = {'<', '0', 'x', kHex[b >> 4], kHex[b & 15], '>', 0};
      int32_t id = find(name);
      if (id == kNoToken) id = find(std::string(1, static_cast<char>(b)));
      byte_tokens_[b] = id;
    }
  }
}

int32_t Vocab::find(std::string_view text) const { return index_.find(texts_, text); }

int32_t Vocab::merge_rank(std::string_view left, int32_t left_id, std::string_view right, int32_t right_id) const {
  if (left_id != kNoToken && right_id != kNoToken) {
    const int32_t rank = merge_ids_.find((uint64_t(uint32_t(left_id)) << 32) | uint32_t(right_id));
    if (rank >= 0) return rank;
  }
  if (merge_texts_.empty()) return -1;
  std::string key = std::to_string(left.size()) + ':';
  key.append(left).append(right);
  const auto it = merge_texts_.find(key);
  return it == merge_texts_.end() ? -1 : it->second;
}

bool Vocab::is_eog(int32_t id) const { return id != kNoToken && std::binary_search(eog_.begin(), eog_.end(), id); }

}  // namespace moetier::tokenizer
