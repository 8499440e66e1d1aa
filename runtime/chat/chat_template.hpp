// Chat templates: the prompt text of a conversation in the format a model was trained on. The families
// are recognised from the GGUF's `tokenizer.chat_template` (Jinja source) by distinctive substrings, as
// llama.cpp did before it had a Jinja engine (llm_chat_detect_template), and rendered by hand-written
// code; each family's rendering is tested byte for byte against the model's own Jinja template rendered
// by Python's jinja2 as transformers does (tests/chat/render_expected.py, tests/chat/data/rendered.json).
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace moetier::gguf {
class GgufModel;
class Metadata;
}  // namespace moetier::gguf

namespace moetier::chat {

/// One message of a conversation. role: "system", "user" or "assistant" (render() throws Error for any
/// other). content: UTF-8 text; special-token text in it ("<|im_end|>") is kept as written.
struct ChatMessage {
  std::string role;
  std::string content;
};

/// Text the templates take from the tokenizer or the environment.
struct TemplateTokens {
  std::string bos;   // text of the BOS token ("<s>", "<|begin_of_text|>"; "" when the vocabulary has none)
  std::string eos;   // text of the EOS token
  std::string date;  // gpt-oss "Current date:" (YYYY-MM-DD); "" = today (UTC) when rendering
};

class ChatTemplate {
 public:
  /// The template of a model: `name` forces a family (one of names()); empty = detect it from the GGUF's
  /// tokenizer.chat_template, and chatml when the file has none (as llama.cpp). bos / eos texts come from
  /// tokenizer.ggml.tokens at tokenizer.ggml.bos_token_id / eos_token_id. Error naming the template's
  /// first line when it is not recognised, or naming an unknown `name` with the list of names.
  static ChatTemplate for_model(const gguf::GgufModel& g, const std::string& name = "");
  /// As for_model, from the metadata of `file` (the name used in errors).
  static ChatTemplate from_metadata(const gguf::Metadata& md, const std::string& file, const std::string& name = "");
  /// The family `name` (Error naming it and listing names() when unknown).
  static ChatTemplate by_name(const std::string& name, const TemplateTokens& tokens = {});
  /// The family whose Jinja source `jinja` is (Error when none: "<where>: chat template not recognised
  /// (first line: "..."); choose one with --chat-template NAME (names...)").
  static ChatTemplate detect(const std::string& jinja, const TemplateTokens& tokens = {},
                             const std::string& where = "tokenizer.chat_template");
  /// Every family name, in the order --help lists them.
  static const std::vector<std::string>& names();

  const std::string& name() const { return name_; }
  const TemplateTokens& tokens() const { return tokens_; }

  /// The prompt text for `messages` (the whole conversation), with the assistant's turn opened when
  /// add_generation_prompt. Error for a role other than system / user / assistant, and where the
  /// family's template raises (mistral-v0 / -v1: roles must alternate user / assistant after one
  /// optional system message). mistral-v0 extension: its template refuses a system message; it is folded
  /// into the first user message as mistral-v1 does. gpt-oss extension: an assistant message holding the model's raw harmony output
  /// keeps only its final-channel text (the reference template raises instead).
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;

 private:
  enum class Family { kChatml, kQwen3, kDeepseek3, kDeepseekR1, kDeepseek31, kKimiK2, kGlm4, kGptOss, kMistralV0, kMistralV1,
                      kLlama3, kLlama31, kOlmoe };
  ChatTemplate(Family f, std::string name, TemplateTokens tokens)
      : family_(f), name_(std::move(name)), tokens_(std::move(tokens)) {}

  Family family_;
  std::string name_;
  TemplateTokens tokens_;
};

}  // namespace moetier::chat
