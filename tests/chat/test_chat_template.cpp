// Chat templates: every family's rendering equals, byte for byte, what the model's reference Jinja
// template renders (tests/chat/data/rendered.json, made by tests/chat/render_expected.py with jinja2);
// detection from distinctive lines of each template; the errors.
#include <doctest/doctest.h>

#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "runtime/chat/chat_template.hpp"
#include "runtime/gguf/gguf_value.hpp"

using moetier::chat::ChatMessage;
using moetier::chat::ChatTemplate;
using moetier::chat::TemplateTokens;

namespace {

nlohmann::json rendered_cases() {
  std::ifstream f("tests/chat/data/rendered.json");
  REQUIRE_MESSAGE(f.good(), "tests/chat/data/rendered.json not found (tests run from the repository root)");
  return nlohmann::json::parse(f);
}

std::string error_of(const auto& fn) {
  try {
    fn();
  } catch (const moetier::Error& e) {
    return e.what();
  }
  return "";
}

moetier::gguf::Value value(moetier::gguf::ValueType type, auto data) {
  moetier::gguf::Value v;
  v.type = type;
  v.data = std::move(data);
  return v;
}

}  // namespace

TEST_CASE("chat template renderings equal the reference Jinja templates byte for byte") {
  const auto data = rendered_cases();
  std::set<std::string> families, conversation_families;
  for (const auto& c : data["cases"]) {
    const std::string family = c["family"], name = c["case"];
    CAPTURE(family);
    CAPTURE(name);
    TemplateTokens tokens;
    tokens.bos = c["bos"];
    tokens.eos = c["eos"];
    tokens.date = data["date"];
    std::vector<ChatMessage> messages;
    for (const auto& m : c["messages"]) messages.push_back({m["role"], m["content"]});
    const std::string expected = c["expected"];
    CHECK(ChatTemplate::by_name(family, tokens).render(messages, c["add_generation_prompt"]) == expected);
    families.insert(family);
    // mistral-v0's template refuses system messages: its expected text is its rendering of the
    // conversation with the system message folded into the first user message.
    if (name.ends_with("_system_folded")) CHECK(family == "mistral-v0");
    if (name == "conversation" || name == "conversation_system_folded") {
      conversation_families.insert(family);
      // system + user + assistant + user with the generation prompt on
      REQUIRE(messages.size() == 4);
      CHECK(messages[0].role == "system");
      CHECK(c["add_generation_prompt"] == true);
    }
  }
  // Every family has reference renderings, the 3-turn conversation included.
  for (const auto& n : ChatTemplate::names()) {
    CHECK_MESSAGE(families.count(n) == 1, "no reference rendering for " << n);
    CHECK_MESSAGE(conversation_families.count(n) == 1, "no conversation case for " << n);
  }
}

TEST_CASE("chat templates are recognised from distinctive lines of the models' Jinja sources") {
  // Short lines of each reference template (not whole vendor templates); the family they mean.
  struct Row {
    const char* marker;
    const char* family;
  };
  const Row rows[] = {
      {"{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}", "chatml"},
      {"{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}\n"
       "{{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content.strip('\\n') }}",
       "qwen3"},
      {"{{'<｜User｜>' + message['content']}}{{'<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}"
       "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜>'}}{% endif %}",
       "deepseek3"},
      {"{{'<｜User｜>' + message['content']}}{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}"
       "{%- if add_generation_prompt and not ns.is_tool -%}{{'<｜Assistant｜><think>\\n'}}",
       "deepseek-r1"},
      {"{{'<｜User｜>' + message['content']}}{%- if ns.is_last_user -%}{{'<｜Assistant｜>'}}"
       "{%- else -%}{{'<think></think>'}}",
       "deepseek3.1"},
      {"<|im_user|>{{role_name}}<|im_middle|>\n  <|im_end|>", "kimi-k2"},
      {"[gMASK]<sop>\n{%- if m.role == 'user' -%}<|user|>\n<|assistant|>", "glm4"},
      {"{{- \"<|start|>assistant<|channel|>final<|message|>\" + message.content + \"<|end|>\" }}", "gpt-oss"},
      {"{{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}", "mistral-v1"},
      {"{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}", "mistral-v0"},
      {"{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'", "llama3"},
      {"{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n{{- \"Cutting Knowledge Date: December 2023\\n\" }}",
       "llama3.1"},
      {"{{ '<|system|>\\n' + message['content'] }}\n{{ '<|user|>\\n' + message['content'] }}\n"
       "{{ '<|assistant|>\\n'  + message['content'] + eos_token }}",
       "olmoe"},
  };
  std::set<std::string> seen;
  for (const auto& r : rows) {
    CAPTURE(r.marker);
    CHECK(ChatTemplate::detect(r.marker).name() == r.family);
    seen.insert(r.family);
  }
  CHECK(seen.size() == ChatTemplate::names().size());
}

TEST_CASE("an unrecognised chat template is one error naming its first line") {
  const std::string err = error_of([] {
    (void)ChatTemplate::detect("\n  {% for m in messages %}<<turn {{ m.role }}>>{{ m.content }}{% endfor %}\nmore",
                               {}, "model.gguf: tokenizer.chat_template");
  });
  CHECK(err.find("model.gguf: tokenizer.chat_template: chat template not recognised") == 0);
  CHECK(err.find("(first line: \"{% for m in messages %}<<turn {{ m.role }}>>{{ m.content }}{% endfor %}\")") !=
        std::string::npos);
  CHECK(err.find("--chat-template") != std::string::npos);
  CHECK(err.find('\n') == std::string::npos);
}

TEST_CASE("an unknown template name is an error listing the names") {
  const std::string err = error_of([] { (void)ChatTemplate::by_name("vicuna"); });
  CHECK(err.find("unknown chat template \"vicuna\"") == 0);
  for (const auto& n : ChatTemplate::names()) CHECK(err.find(n) != std::string::npos);
  CHECK(ChatTemplate::by_name("mistral").name() == "mistral-v1");
}

TEST_CASE("a model's template: detected from the metadata, chatml without one, forced by name") {
  using moetier::gguf::ValueType;
  auto tokens = std::make_shared<moetier::gguf::Array>();
  tokens->elem_type = ValueType::STRING;
  tokens->strings = {"<unk>", "<|begin_of_text|>", "<|eot_id|>"};
  moetier::gguf::Metadata md;
  md.insert("tokenizer.ggml.tokens",
            value(ValueType::ARRAY, std::shared_ptr<const moetier::gguf::Array>(tokens)));
  md.insert("tokenizer.ggml.bos_token_id", value(ValueType::UINT32, uint64_t{1}));
  md.insert("tokenizer.ggml.eos_token_id", value(ValueType::UINT32, uint64_t{2}));
  const auto none = ChatTemplate::from_metadata(md, "m.gguf");
  CHECK(none.name() == "chatml");
  CHECK(none.tokens().bos == "<|begin_of_text|>");
  CHECK(none.tokens().eos == "<|eot_id|>");
  CHECK(ChatTemplate::from_metadata(md, "m.gguf", "llama3").name() == "llama3");

  md.insert("tokenizer.chat_template",
            value(ValueType::STRING, std::string("{{ bos_token }}<|start_header_id|>x<|end_header_id|>")));
  const auto l3 = ChatTemplate::from_metadata(md, "m.gguf");
  CHECK(l3.name() == "llama3");
  CHECK(l3.render({{"user", " hi "}}, true) ==
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n");
  CHECK(ChatTemplate::from_metadata(md, "m.gguf", "chatml").name() == "chatml");  // a forced name wins

  moetier::gguf::Metadata bad;
  bad.insert("tokenizer.chat_template", value(ValueType::STRING, std::string("USER: {{ x }}\nASSISTANT:")));
  const std::string err = error_of([&] { (void)ChatTemplate::from_metadata(bad, "bad.gguf"); });
  CHECK(err.find("bad.gguf: tokenizer.chat_template: chat template not recognised (first line: \"USER: {{ x }}\")") ==
        0);
}

TEST_CASE("render refuses other roles, and mistral-v1 conversations that do not alternate") {
  const std::string role = error_of([] { (void)ChatTemplate::by_name("chatml").render({{"tool", "x"}}, true); });
  CHECK(role == "chat message 1: role \"tool\" (expected system, user or assistant)");
  const std::string alt = error_of([] {
    (void)ChatTemplate::by_name("mistral-v1").render({{"user", "a"}, {"user", "b"}}, true);
  });
  CHECK(alt.find("roles must alternate user / assistant (message 2 is user)") != std::string::npos);
}

TEST_CASE("gpt-oss keeps only the final channel of an answer given as raw harmony output") {
  TemplateTokens t;
  t.date = "2026-01-15";
  const auto tmpl = ChatTemplate::by_name("gpt-oss", t);
  const std::string raw =
      "<|channel|>analysis<|message|>User says hi.<|end|><|start|>assistant<|channel|>final<|message|>Hello!<|return|>";
  const std::string clean = "Hello!";
  CHECK(tmpl.render({{"user", "hi"}, {"assistant", raw}, {"user", "bye"}}, true) ==
        tmpl.render({{"user", "hi"}, {"assistant", clean}, {"user", "bye"}}, true));
}
