// ChatTemplate: family names, detection from a GGUF's Jinja source, and the BOS / EOS texts of a model.
// Rendering is in chat_render.cpp.
#include "runtime/chat/chat_template.hpp"

#include <fmt/format.h>

#include <string_view>

#include "common/error.hpp"
#include "runtime/gguf/gguf_model.hpp"

namespace moetier::chat {
namespace {

struct NamedFamily {
  const char* name;
  int family;  // ChatTemplate::Family, as int (the enum is private)
};

// The order of --help and of the error messages. "mistral" is an alias of mistral-v1.
constexpr NamedFamily kNames[] = {
    {"chatml", 0},     {"qwen3", 1},  {"deepseek3", 2}, {"deepseek-r1", 3}, {"deepseek3.1", 4},
    {"kimi-k2", 5},    {"glm4", 6},   {"gpt-oss", 7},   {"mistral-v0", 8},  {"mistral-v1", 9},
    {"llama3", 10},    {"llama3.1", 11}, {"olmoe", 12},
};

std::string joined_names() {
  std::string s;
  for (const auto& n : kNames) s += (s.empty() ? "" : ", ") + std::string(n.name);
  return s;
}

/// The first non-blank line of `text`, at most 80 bytes (for the error message).
std::string first_line(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    if (line.find_first_not_of(" \t\r") != std::string_view::npos) {
      line.remove_prefix(line.find_first_not_of(" \t\r"));
      if (line.size() > 80) return std::string(line.substr(0, 80)) + "...";
      return std::string(line);
    }
    pos = end + 1;
  }
  return "";
}

/// Text of token `key_id` (a tokenizer.ggml.*_token_id key) in tokenizer.ggml.tokens; "" when absent.
std::string token_text(const gguf::Metadata& md, const char* key_id) {
  const auto id = md.get_int(key_id);
  const auto* tokens = md.get_string_array("tokenizer.ggml.tokens");
  if (!id || !tokens || *id < 0 || static_cast<uint64_t>(*id) >= tokens->size()) return "";
  return (*tokens)[static_cast<size_t>(*id)];
}

}  // namespace

const std::vector<std::string>& ChatTemplate::names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& n : kNames) v.emplace_back(n.name);
    return v;
  }();
  return names;
}

ChatTemplate ChatTemplate::by_name(const std::string& name, const TemplateTokens& tokens) {
  const std::string key = name == "mistral" ? "mistral-v1" : name;
  for (const auto& n : kNames)
    if (key == n.name) return ChatTemplate(static_cast<Family>(n.family), n.name, tokens);
  fail("unknown chat template \"{}\" (expected one of: {})", name, joined_names());
}

ChatTemplate ChatTemplate::detect(const std::string& jinja, const TemplateTokens& tokens, const std::string& where) {
  const auto has = [&](std::string_view s) { return jinja.find(s) != std::string::npos; };
  const char* name = nullptr;
  if (has("<|im_start|>")) {
    // Qwen3 finds the last user query to decide which answers keep their reasoning.
    name = has("<think>") && has("last_query_index") ? "qwen3" : "chatml";
  } else if (has("<|im_middle|>") && has("<|im_end|>")) {
    name = "kimi-k2";
  } else if (has("[gMASK]<sop>") && has("<|assistant|>")) {
    name = "glm4";
  } else if (has("<|start|>") && has("<|channel|>")) {
    name = "gpt-oss";
  } else if (has("<｜Assistant｜>") && has("<｜User｜>")) {
    if (has("<think></think>")) name = "deepseek3.1";  // V3.1: thinking off unless asked for
    else if (has("<think>\\n")) name = "deepseek-r1";  // R1: the generation prompt opens <think>
    else name = "deepseek3";
  } else if (has("' [INST] ' + system_message")) {
    name = "mistral-v1";  // mistralai's 'v1' (Mixtral-8x7B-Instruct-v0.1 since 2024)
  } else if (has("'[INST] ' + message['content'] + ' [/INST]'") && !has("<<SYS>>")) {
    name = "mistral-v0";  // the first Mistral / Mixtral-8x7B-Instruct template (most Mixtral GGUFs carry it)
  } else if (has("<|start_header_id|>") && has("<|end_header_id|>")) {
    name = has("Cutting Knowledge Date") ? "llama3.1" : "llama3";
  } else if (has("<|user|>") && has("<|assistant|>") && has("<|system|>") && !has("<|end|>")) {
    name = "olmoe";  // Tulu (OLMoE-Instruct); Phi-3's <|end|> is another format
  }
  if (name == nullptr)
    fail("{}: chat template not recognised (first line: \"{}\"); choose one with --chat-template NAME ({})", where,
         first_line(jinja), joined_names());
  return by_name(name, tokens);
}

ChatTemplate ChatTemplate::from_metadata(const gguf::Metadata& md, const std::string& file, const std::string& name) {
  TemplateTokens tokens;
  tokens.bos = token_text(md, "tokenizer.ggml.bos_token_id");
  tokens.eos = token_text(md, "tokenizer.ggml.eos_token_id");
  if (!name.empty()) return by_name(name, tokens);
  const auto source = md.get_string("tokenizer.chat_template");
  if (!source) return by_name("chatml", tokens);  // llama.cpp's default
  return detect(*source, tokens, file + ": tokenizer.chat_template");
}

ChatTemplate ChatTemplate::for_model(const gguf::GgufModel& g, const std::string& name) {
  return from_metadata(g.metadata(), g.path(), name);
}

}  // namespace moetier::chat
