// Vocabulary loading/validation and the tokenizer's behaviour on small synthetic vocabularies:
// SPM score-driven merges and byte fallback, BPE merge ranks, special-token partition, BOS/EOS,
// token_to_piece and the streaming detokenizer.
#include <doctest/doctest.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "runtime/gguf/gguf_value.hpp"
#include "runtime/tokenizer/tokenizer.hpp"

using namespace moetier::tokenizer;
using moetier::gguf::Array;
using moetier::gguf::Metadata;
using moetier::gguf::Value;
using moetier::gguf::ValueType;
using Ids = std::vector<int32_t>;

namespace {

constexpr const char* kFile = "synthetic.gguf";

template <typename T>
Value make(ValueType type, T data) {
  Value v;
  v.type = type;
  v.data = std::move(data);
  return v;
}
Value str(std::string s) { return make(ValueType::STRING, std::move(s)); }
Value u32(uint64_t v) { return make(ValueType::UINT32, v); }
Value boolean(bool b) { return make(ValueType::BOOL, b); }
Value str_array(std::vector<std::string> v) {
  auto a = std::make_shared<Array>();
  a->elem_type = ValueType::STRING;
  a->strings = std::move(v);
  return make(ValueType::ARRAY, std::shared_ptr<const Array>(a));
}
Value f32_array(const std::vector<float>& v) {
  auto a = std::make_shared<Array>();
  a->elem_type = ValueType::FLOAT32;
  for (const float x : v) a->items.push_back(make(ValueType::FLOAT32, double(x)));
  return make(ValueType::ARRAY, std::shared_ptr<const Array>(a));
}
Value i32_array(const std::vector<int>& v) {
  auto a = std::make_shared<Array>();
  a->elem_type = ValueType::INT32;
  for (const int x : v) a->items.push_back(make(ValueType::INT32, int64_t(x)));
  return make(ValueType::ARRAY, std::shared_ptr<const Array>(a));
}

const std::string kSp = "\xE2\x96\x81";  // U+2581

// A small SentencePiece vocabulary: <unk> <s> </s>, 256 byte tokens, a few pieces, one user token.
struct SpmVocab {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<float> scores = {0, 0, 0};
  std::vector<int> types = {2, 3, 3};
  SpmVocab() {
    static constexpr char kHex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b) add(std::string("<0x") + kHex[b >> 4] + kHex[b & 15] + ">", 0, 6);
  }
  int32_t add(const std::string& t, float score, int type = 1) {
    tokens.push_back(t);
    scores.push_back(score);
    types.push_back(type);
    return static_cast<int32_t>(tokens.size()) - 1;
  }
  Metadata metadata() const {
    Metadata md;
    md.insert("tokenizer.ggml.model", str("llama"));
    md.insert("tokenizer.ggml.tokens", str_array(tokens));
    md.insert("tokenizer.ggml.scores", f32_array(scores));
    md.insert("tokenizer.ggml.token_type", i32_array(types));
    return md;
  }
  Tokenizer tokenizer() const { return Tokenizer::from_metadata(metadata(), kFile); }
};

// A small byte-level BPE vocabulary (pre-tokenizer gpt-2) with merges.
struct BpeVocab {
  std::vector<std::string> tokens;
  std::vector<int> types;
  std::vector<std::string> merges;
  int32_t add(const std::string& t, int type = 1) {
    tokens.push_back(t);
    types.push_back(type);
    return static_cast<int32_t>(tokens.size()) - 1;
  }
  Metadata metadata(std::string pre = "gpt-2") const {
    Metadata md;
    md.insert("tokenizer.ggml.model", str("gpt2"));
    md.insert("tokenizer.ggml.pre", str(std::move(pre)));
    md.insert("tokenizer.ggml.tokens", str_array(tokens));
    md.insert("tokenizer.ggml.token_type", i32_array(types));
    md.insert("tokenizer.ggml.merges", str_array(merges));
    return md;
  }
};

std::string error_of(const Metadata& md) {
  try {
    (void)Tokenizer::from_metadata(md, kFile);
  } catch (const moetier::Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("vocabulary validation names the file and the key") {
  SpmVocab v;
  {
    Metadata md;
    md.insert("tokenizer.ggml.tokens", str_array(v.tokens));
    const std::string e = error_of(md);
    CHECK(e.find(kFile) != std::string::npos);
    CHECK(e.find("tokenizer.ggml.model") != std::string::npos);
  }
  {
    Metadata md;
    md.insert("tokenizer.ggml.model", str("bert"));
    md.insert("tokenizer.ggml.tokens", str_array(v.tokens));
    CHECK(error_of(md).find("'bert'") != std::string::npos);
  }
  {
    Metadata md;
    md.insert("tokenizer.ggml.model", str("llama"));
    CHECK(error_of(md).find("tokenizer.ggml.tokens") != std::string::npos);
  }
  {
    Metadata md;
    md.insert("tokenizer.ggml.model", str("llama"));
    md.insert("tokenizer.ggml.tokens", str_array(v.tokens));
    md.insert("tokenizer.ggml.scores", f32_array({1.0f, 2.0f}));
    const std::string e = error_of(md);
    CHECK(e.find("tokenizer.ggml.scores") != std::string::npos);
    CHECK(e.find(kFile) != std::string::npos);
  }
  {
    Metadata md;
    md.insert("tokenizer.ggml.model", str("llama"));
    md.insert("tokenizer.ggml.tokens", str_array(v.tokens));
    md.insert("tokenizer.ggml.token_type", i32_array({1, 1, 1}));
    CHECK(error_of(md).find("tokenizer.ggml.token_type") != std::string::npos);
  }
  {
    Metadata md;
    md.insert("tokenizer.ggml.model", str("llama"));
    md.insert("tokenizer.ggml.tokens", str_array({"a", "b", "a"}));
    const std::string e = error_of(md);
    CHECK(e.find("duplicate") != std::string::npos);
    CHECK(e.find("0 and 2") != std::string::npos);
  }
  {
    Metadata md;
    md.insert("tokenizer.ggml.model", str("llama"));
    md.insert("tokenizer.ggml.tokens", str_array(v.tokens));
    md.insert("tokenizer.ggml.token_type", str_array(v.tokens));
    CHECK(error_of(md).find("tokenizer.ggml.token_type") != std::string::npos);
  }
  BpeVocab b;
  b.add("a");
  b.add("b");
  {
    Metadata md = b.metadata("no-such-pre");
    CHECK(error_of(md).find("tokenizer.ggml.pre") != std::string::npos);
  }
  {
    Metadata md;
    md.insert("tokenizer.ggml.model", str("gpt2"));
    md.insert("tokenizer.ggml.tokens", str_array(b.tokens));
    CHECK(error_of(md).find("tokenizer.ggml.merges") != std::string::npos);
  }
  {
    // gpt2's default BOS id (11) is outside a 2-token vocabulary: add_bos_token cannot be honoured.
    Metadata md = b.metadata();
    md.insert("tokenizer.ggml.add_bos_token", boolean(true));
    CHECK(error_of(md).find("bos_token_id") != std::string::npos);
  }
}

TEST_CASE("special ids: defaults and keys") {
  SpmVocab v;
  Metadata md = v.metadata();
  md.insert("tokenizer.ggml.eos_token_id", u32(2));
  md.insert("tokenizer.ggml.padding_token_id", u32(5));
  const Tokenizer tok = Tokenizer::from_metadata(md, kFile);
  CHECK(tok.bos() == 1);  // SPM default
  CHECK(tok.eos() == 2);
  CHECK(tok.vocab().special().pad == 5);
  CHECK(tok.vocab().special().unk == 0);
  CHECK(tok.vocab().warnings().empty());
  CHECK(tok.is_eog(2));  // "</s>" and EOS
  CHECK_FALSE(tok.is_eog(1));
  CHECK(tok.add_bos());
  CHECK_FALSE(tok.add_eos());
  CHECK(tok.n_vocab() == static_cast<int32_t>(v.tokens.size()));
}

TEST_CASE("a special-token id outside the vocabulary or a token type outside the enum is rejected by key") {
  // Old behaviour: ids were ignored with a warning (the default id kept), and a type outside 0..6 gave
  // the token no attribute, so it rendered as nothing. Each case must be one line naming the key.
  SpmVocab v;
  const int64_t n = static_cast<int64_t>(v.tokens.size());
  struct IdCase {
    const char* key;
    uint64_t id;
  };
  for (const IdCase c : {IdCase{"tokenizer.ggml.bos_token_id", static_cast<uint64_t>(n)},
                         IdCase{"tokenizer.ggml.eos_token_id", 100000},
                         IdCase{"tokenizer.ggml.unknown_token_id", 0xFFFFFFFFu},
                         IdCase{"tokenizer.ggml.padding_token_id", static_cast<uint64_t>(n) + 7},
                         IdCase{"tokenizer.ggml.eot_token_id", uint64_t{1} << 40}}) {
    CAPTURE(c.key);
    Metadata md = v.metadata();
    md.insert(c.key, u32(c.id));
    const std::string e = error_of(md);
    CHECK(e.find(kFile) != std::string::npos);
    CHECK(e.find(c.key) != std::string::npos);
    CHECK(e.find(std::to_string(c.id)) != std::string::npos);
    CHECK(e.find('\n') == std::string::npos);
  }
  // The last valid id is accepted.
  {
    Metadata md = v.metadata();
    md.insert("tokenizer.ggml.bos_token_id", u32(static_cast<uint64_t>(n - 1)));
    CHECK(Tokenizer::from_metadata(md, kFile).bos() == n - 1);
  }
  for (const int bad : {7, 8, -1, 1000}) {
    CAPTURE(bad);
    SpmVocab w;
    w.types[5] = bad;
    const std::string e = error_of(w.metadata());
    CHECK(e.find("tokenizer.ggml.token_type[5]") != std::string::npos);
    CHECK(e.find(std::to_string(bad)) != std::string::npos);
  }
  // Every value of the enum (0 undefined .. 6 byte) is accepted.
  SpmVocab all;
  for (int t = 0; t <= 5; ++t) all.add("tok" + std::to_string(t), 0.0f, t);
  all.add("<0xff>", 0.0f, 6);  // lower-case hex is a byte token too
  CHECK_NOTHROW((void)all.tokenizer());
}

TEST_CASE("non-finite scores and byte tokens whose text is not <0xHH> are rejected by key and index") {
  // Old behaviour: NaN / inf scores were accepted and changed the SentencePiece merges; a byte token with
  // any other text rendered as a NUL byte.
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  {
    SpmVocab v;
    v.add(kSp + "he", -1.0f);
    v.add(kSp + "hello", -2.0f);
    CHECK_NOTHROW((void)v.tokenizer());  // control
    for (const float bad : {nan, inf, -inf}) {
      for (const size_t at : {size_t{0}, v.scores.size() - 1}) {
        CAPTURE(bad);
        CAPTURE(at);
        SpmVocab w = v;
        w.scores[at] = bad;
        const std::string e = error_of(w.metadata());
        CHECK(e.find(kFile) != std::string::npos);
        CHECK(e.find("tokenizer.ggml.scores[" + std::to_string(at) + "]") != std::string::npos);
        CHECK(e.find('\n') == std::string::npos);
      }
      SpmVocab all_bad = v;  // every score NaN / inf
      std::fill(all_bad.scores.begin(), all_bad.scores.end(), bad);
      CHECK(error_of(all_bad.metadata()).find("tokenizer.ggml.scores[0]") != std::string::npos);
    }
  }
  for (const std::string& text : {std::string("hello"), std::string("<0x4G>"), std::string("<0x41"),
                                 std::string("<0x041>"), std::string("<0x\n1>"), std::string()}) {
    CAPTURE(text);
    SpmVocab v;
    const int32_t id = v.add(text, 0.0f, 6);
    const std::string e = error_of(v.metadata());
    CHECK(e.find(kFile) != std::string::npos);
    CHECK(e.find("tokenizer.ggml.token_type[" + std::to_string(id) + "]") != std::string::npos);
    CHECK(e.find("tokenizer.ggml.tokens[" + std::to_string(id) + "]") != std::string::npos);
    CHECK(e.find('\n') == std::string::npos);
  }
  {  // a BPE vocabulary's byte tokens follow the same rule
    BpeVocab b;
    b.add("a");
    b.add("b");
    b.add("x", 6);
    CHECK(error_of(b.metadata()).find("tokenizer.ggml.token_type[2]") != std::string::npos);
  }
}

TEST_CASE("SPM: space prefix, score-driven merges, byte fallback, BOS") {
  SpmVocab high_left, high_right;
  for (SpmVocab* v : {&high_left, &high_right}) {
    v->add(kSp, -1.0f);
    v->add("a", -2.0f);
    v->add("b", -2.0f);
  }
  // "▁a" and "ab" compete for the 'a' of "▁ab"; the higher score merges first.
  const int32_t l_sp_a = high_left.add(kSp + "a", -0.5f);
  const int32_t l_ab = high_left.add("ab", -0.9f);
  const int32_t r_sp_a = high_right.add(kSp + "a", -0.9f);
  const int32_t r_ab = high_right.add("ab", -0.5f);
  const Tokenizer tl = high_left.tokenizer();
  const Tokenizer tr = high_right.tokenizer();
  const int32_t sp = tl.vocab().find(kSp), b = tl.vocab().find("b");
  CHECK(tl.encode("ab", false, false) == Ids{l_sp_a, b});
  CHECK(tr.encode("ab", false, false) == Ids{sp, r_ab});
  (void)l_ab;
  (void)r_sp_a;
  // BOS with add_special; no EOS (add_eos defaults to false).
  CHECK(tl.encode("ab", true, false) == Ids{1, l_sp_a, b});
  // Byte fallback: 'é' (C3 A9) and '!' are no tokens.
  const auto& voc = tl.vocab();
  CHECK(tl.encode("\xC3\xA9!", false, false) ==
        Ids{sp, voc.byte_token(0xC3), voc.byte_token(0xA9), voc.byte_token('!')});
  CHECK(voc.byte_token(0xC3) == voc.find("<0xC3>"));
  // Pieces: ▁ -> space, byte tokens -> the byte, control tokens only with special.
  CHECK(tl.token_to_piece(l_sp_a) == " a");
  CHECK(tl.token_to_piece(voc.byte_token('!')) == "!");
  CHECK(tl.token_to_piece(2, true) == "</s>");
  CHECK(tl.token_to_piece(2, false).empty());
  CHECK(tl.token_to_piece(0, false).empty());
  CHECK_THROWS_AS(tl.token_to_piece(-1), moetier::Error);
  CHECK_THROWS_AS(tl.token_to_piece(tl.n_vocab()), moetier::Error);
}

TEST_CASE("SPM: special-token partition and the space prefix after special tokens") {
  SpmVocab v;
  const int32_t sp = v.add(kSp, -1.0f);
  const int32_t a = v.add("a", -2.0f);
  const int32_t b = v.add("b", -2.0f);
  const int32_t sp_a = v.add(kSp + "a", -0.5f);
  const int32_t user = v.add("<|u|>", 0.0f, 4);  // user-defined
  const Tokenizer tok = v.tokenizer();
  // parse_special: "</s>" becomes token 2; the text after it gets its own space prefix.
  CHECK(tok.encode("a</s>b", true, true) == Ids{1, sp_a, 2, sp, b});
  // Without parse_special "</s>" is text; '<', '/', 's', '>' fall back to bytes.
  const auto& voc = tok.vocab();
  CHECK(tok.encode("a</s>", false, false) ==
        Ids{sp_a, voc.byte_token('<'), voc.byte_token('/'), voc.byte_token('s'), voc.byte_token('>')});
  // User-defined tokens are matched whatever parse_special says, and always rendered.
  CHECK(tok.encode("a<|u|>a", false, false) == Ids{sp_a, user, sp_a});
  CHECK(tok.token_to_piece(user, false) == "<|u|>");
  (void)a;
}

TEST_CASE("special-token partition: longest token first, then left to right") {
  BpeVocab v;
  for (const char* t : {"a", "b", "<", ">"}) v.add(t);
  const int32_t tag = v.add("<a>", 3);
  const int32_t tag2 = v.add("<a><b>", 3);
  const Tokenizer tok = Tokenizer::from_metadata(v.metadata(), kFile);
  const auto frags = tok.partition("x<a><b><a>y", true);
  REQUIRE(frags.size() == 4);
  CHECK(frags[0].token == kNoToken);
  CHECK(frags[0].length == 1);
  CHECK(frags[1].token == tag2);
  CHECK(frags[2].token == tag);
  CHECK(frags[2].offset == 7);
  CHECK(frags[3].token == kNoToken);
  CHECK(tok.partition("x<a>", false).size() == 1);  // control tokens need parse_special
  CHECK(tok.partition("", true).empty());
}

TEST_CASE("byte-level BPE: merge ranks, leftmost ties, unknown bytes, pieces") {
  BpeVocab v;
  const std::string G = "\xC4\xA0";  // 'Ġ' = byte ' '
  for (const std::string& t : std::vector<std::string>{"h", "e", "l", "o", G}) v.add(t);
  const int32_t ll = v.add("ll");
  v.add("he");
  v.add("llo");
  v.add("hello");
  const int32_t g_hello = v.add(G + "hello");
  const int32_t eot = v.add("<|endoftext|>", 3);
  v.merges = {"h e", "l l", "ll o", "he llo", G + " hello"};
  Metadata md = v.metadata();
  md.insert("tokenizer.ggml.eos_token_id", u32(eot));
  const Tokenizer tok = Tokenizer::from_metadata(md, kFile);
  CHECK(tok.encode(" hello", false, false) == Ids{g_hello});
  CHECK(tok.encode("lll", false, false) == Ids{ll, tok.vocab().find("l")});  // equal ranks: leftmost pair first
  CHECK(tok.encode("z", false, false).empty());           // no token for byte 'z': dropped
  CHECK(tok.encode("hello<|endoftext|>", false, true) == Ids{tok.vocab().find("hello"), eot});
  CHECK_FALSE(tok.add_bos());  // gpt-2 pre-tokenizer: no BOS by default
  CHECK(tok.encode("he", true, false) == Ids{tok.vocab().find("he")});
  CHECK(tok.token_to_piece(g_hello) == " hello");
  CHECK(tok.is_eog(eot));
  CHECK(tok.eos() == eot);
}

TEST_CASE("BPE: add_bos_token / add_eos_token keys") {
  BpeVocab v;
  const int32_t a = v.add("a");
  for (int i = 0; i < 11; ++i) v.add("<r" + std::to_string(i) + ">", 3);
  Metadata md = v.metadata("qwen2");
  md.insert("tokenizer.ggml.add_bos_token", boolean(true));
  md.insert("tokenizer.ggml.add_eos_token", boolean(true));
  md.insert("tokenizer.ggml.eos_token_id", u32(3));
  const Tokenizer tok = Tokenizer::from_metadata(md, kFile);
  CHECK(tok.bos() == 11);  // gpt2 default id, inside this vocabulary
  CHECK(tok.encode("a", true, false) == Ids{11, a, 3});
  CHECK(tok.encode("a", false, false) == Ids{a});
}

TEST_CASE("streaming detokenizer holds incomplete UTF-8 sequences") {
  CHECK(utf8_complete_prefix("abc") == 3);
  CHECK(utf8_complete_prefix("a\xE2\x82") == 1);
  CHECK(utf8_complete_prefix("a\xE2\x82\xAC") == 4);
  CHECK(utf8_complete_prefix("\xC3") == 0);
  CHECK(utf8_complete_prefix("a\xF0\x9F\x8C") == 1);
  CHECK(utf8_complete_prefix("\x80\x80") == 2);  // stray continuation bytes pass through
  CHECK(utf8_complete_prefix("") == 0);

  BpeVocab v;
  const int32_t c3 = v.add("\xC3\x83");  // byte 0xC3
  const int32_t a9 = v.add("\xC2\xA9");  // byte 0xA9
  const int32_t x = v.add("x");
  const Tokenizer tok = Tokenizer::from_metadata(v.metadata(), kFile);
  CHECK(tok.encode("\xC3\xA9", false, false) == Ids{c3, a9});
  StreamingDetokenizer d(tok);
  CHECK(d.push(x) == "x");
  CHECK(d.push(c3).empty());
  CHECK(d.pending() == 1);
  CHECK(d.push(a9) == "\xC3\xA9");
  CHECK(d.push(c3).empty());
  CHECK(d.finish() == "\xC3");  // an unfinished character is returned at the end
  CHECK(d.pending() == 0);
  CHECK(d.push(c3).empty());
  CHECK(d.push(x) == "\xC3x");  // not completed: passed through as is
}

TEST_CASE("o200k_harmony (gpt-oss): end-of-generation tokens and rendered harmony tokens as llama.cpp") {
  // llama.cpp llama-vocab.cpp: <|return|> and <|call|> end the generation; with both present <|end|>
  // (end of one message) is taken out of the EOG set and rendered; <|start|>, <|message|>, <|channel|> and
  // <|constrain|> are user-defined (always rendered, never EOG). The real files: tokenizer.ggml.pre
  // "gpt-4o" (convert_hf_to_gguf.py, openai/gpt-oss-20b's hash), eos <|return|>, bos <|startoftext|>.
  BpeVocab v;
  for (const std::string& t : std::vector<std::string>{"h", "i", "hi"}) v.add(t);
  v.merges = {"h i"};
  const int32_t sot = v.add("<|startoftext|>", 3), eot = v.add("<|endoftext|>", 3);
  const int32_t ret = v.add("<|return|>", 3), call = v.add("<|call|>", 3), end = v.add("<|end|>", 3);
  const int32_t start = v.add("<|start|>", 3), msg = v.add("<|message|>", 3), chan = v.add("<|channel|>", 3);
  const int32_t cons = v.add("<|constrain|>", 3);
  Metadata md = v.metadata("gpt-4o");
  md.insert("tokenizer.ggml.bos_token_id", u32(sot));
  md.insert("tokenizer.ggml.eos_token_id", u32(ret));
  const Tokenizer tok = Tokenizer::from_metadata(md, kFile);
  for (const int32_t id : {ret, call, eot}) CHECK(tok.is_eog(id));
  for (const int32_t id : {end, start, msg, chan, cons, sot}) CHECK_FALSE(tok.is_eog(id));
  // Rendered even when control tokens are not (special = false), and parsed as one token.
  CHECK(tok.token_to_piece(chan, false) == "<|channel|>");
  CHECK(tok.token_to_piece(end, false) == "<|end|>");
  CHECK(tok.token_to_piece(ret, false).empty());
  CHECK(tok.encode("<|start|>hi<|message|>", false, true) == Ids{start, tok.vocab().find("hi"), msg});
  // Without <|call|> (not o200k_harmony), <|end|> stays an end of generation.
  BpeVocab w;
  w.add("a");
  const int32_t end2 = w.add("<|end|>", 3);
  w.add("<|return|>", 3);
  CHECK(Tokenizer::from_metadata(w.metadata("gpt-4o"), kFile).is_eog(end2));
}
