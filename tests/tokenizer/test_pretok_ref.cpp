// Pre-tokenizers of the glm4, kimi-k2 and deepseek-coder vocabularies against llama.cpp's splits:
// tests/tokenizer/pretok_ref/glm4_kimi_deepseek_coder.json holds the words ik_llama.cpp (8337e4c)
// unicode_regex_split gives for each pre-tokenizer's regex list (as its llama-vocab.cpp sets them) on
// inputs covering contractions, case, digits, whitespace runs, CJK / Hangul / kana, accents, combining
// marks, emoji and symbols (see pretok_ref/README.md). Every case must match word for word.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <fstream>

#include "runtime/tokenizer/pretokenizer.hpp"

using namespace moetier::tokenizer;

TEST_CASE("glm4, kimi-k2 and deepseek-coder pre-tokenizers split as llama.cpp") {
  const std::string path = "tests/tokenizer/pretok_ref/glm4_kimi_deepseek_coder.json";
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  const auto ref = nlohmann::json::parse(in);
  int n = 0;
  for (const auto& c : ref["cases"]) {
    const std::string pre = c["pre"], text = c["text"];
    CAPTURE(pre);
    CAPTURE(text);
    PreTypeInfo info;
    REQUIRE(lookup_pre_type(pre, info));
    CHECK(PreTokenizer(info.type).split_utf8(text) == c["words"].get<std::vector<std::string>>());
    ++n;
  }
  CHECK(n == 48);  // 16 inputs x 3 pre-tokenizers
}

TEST_CASE("pre-tokenizer names of the GLM, Kimi-K2 and DeepSeek-Coder vocabularies and their flags") {
  struct Case {
    const char* name;
    PreType type;
    bool clean_spaces;
  };
  // llama.cpp llama_vocab::impl::load: deepseek-coder and kimi-k2 set clean_spaces = false.
  for (const Case& c : {Case{"glm4", PreType::kGlm4, true}, Case{"chatglm-bpe", PreType::kGlm4, true},
                        Case{"kimi-k2", PreType::kKimiK2, false}, Case{"deepseek-coder", PreType::kDeepseekCoder, false}}) {
    CAPTURE(c.name);
    PreTypeInfo info;
    REQUIRE(lookup_pre_type(c.name, info));
    CHECK(info.type == c.type);
    CHECK(info.clean_spaces == c.clean_spaces);
    CHECK_FALSE(info.add_bos);
    CHECK_FALSE(info.ignore_merges);
    CHECK(pre_type_name(info.type) == (std::string_view(c.name) == "chatglm-bpe" ? "glm4" : c.name));
  }
}
