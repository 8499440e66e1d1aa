// ChatTemplate::render: one function per family, each the plain-conversation path (system / user /
// assistant text, no tools) of the model's reference Jinja template, named beside it. Python string
// operations the templates use are mirrored exactly (split()[-1], strip('\n'), |trim).
#include <ctime>
#include <string_view>

#include "common/error.hpp"
#include "runtime/chat/chat_template.hpp"

namespace moetier::chat {
namespace {

using Messages = std::vector<ChatMessage>;

bool contains(std::string_view s, std::string_view what) { return s.find(what) != std::string_view::npos; }

/// Python's str.strip(chars) / lstrip / rstrip.
std::string lstrip(std::string_view s, std::string_view chars) {
  const size_t b = s.find_first_not_of(chars);
  return b == std::string_view::npos ? "" : std::string(s.substr(b));
}
std::string rstrip(std::string_view s, std::string_view chars) {
  const size_t e = s.find_last_not_of(chars);
  return e == std::string_view::npos ? "" : std::string(s.substr(0, e + 1));
}
std::string strip(std::string_view s, std::string_view chars) { return lstrip(rstrip(s, chars), chars); }
constexpr std::string_view kWhitespace = " \t\n\r\v\f";  // str.strip() / Jinja's |trim (ASCII)

/// s.split(sep)[-1]: the text after the last `sep` (all of s when absent).
std::string after_last(std::string_view s, std::string_view sep) {
  const size_t p = s.rfind(sep);
  return std::string(p == std::string_view::npos ? s : s.substr(p + sep.size()));
}
/// s.split(sep)[0]: the text before the first `sep`.
std::string before_first(std::string_view s, std::string_view sep) { return std::string(s.substr(0, s.find(sep))); }

/// Reasoning and answer of an assistant message as Qwen3 and GLM-4.5 split them: reasoning =
/// content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n'), answer =
/// content.split('</think>')[-1].lstrip('\n'); no </think>: no reasoning, the whole content.
void split_reasoning(const std::string& content, std::string& reasoning, std::string& answer) {
  reasoning.clear();
  answer = content;
  if (!contains(content, "</think>")) return;
  reasoning = lstrip(after_last(rstrip(before_first(content, "</think>"), "\n"), "<think>"), "\n");
  answer = lstrip(after_last(content, "</think>"), "\n");
}

/// Index of the last user message (-1: none).
long last_user(const Messages& m) {
  for (size_t i = m.size(); i-- > 0;)
    if (m[i].role == "user") return static_cast<long>(i);
  return -1;
}

// chatml (teknium/OpenHermes-2.5-Mistral-7B; llama.cpp's default).
std::string chatml(const Messages& m, bool gen) {
  std::string s;
  for (const auto& x : m) s += "<|im_start|>" + x.role + "\n" + x.content + "<|im_end|>\n";
  if (gen) s += "<|im_start|>assistant\n";
  return s;
}

// Qwen/Qwen3-*: chatml; answers before the last user query lose their reasoning, answers after it get
// <think> ... </think> (an empty one for the final answer).
std::string qwen3(const Messages& m, bool gen) {
  std::string s;
  if (!m.empty() && m[0].role == "system") s += "<|im_start|>system\n" + m[0].content + "<|im_end|>\n";
  long last_query = static_cast<long>(m.size()) - 1;
  for (size_t i = m.size(); i-- > 0;) {
    const std::string& c = m[i].content;
    const bool tool_response = c.starts_with("<tool_response>") && c.ends_with("</tool_response>");
    if (m[i].role == "user" && !tool_response) {
      last_query = static_cast<long>(i);
      break;
    }
  }
  for (size_t i = 0; i < m.size(); ++i) {
    const auto& x = m[i];
    if (x.role == "user" || (x.role == "system" && i != 0)) {
      s += "<|im_start|>" + x.role + "\n" + x.content + "<|im_end|>\n";
    } else if (x.role == "assistant") {
      std::string reasoning, content;
      split_reasoning(x.content, reasoning, content);
      const bool last = i + 1 == m.size();
      if (static_cast<long>(i) > last_query && (last || !reasoning.empty()))
        s += "<|im_start|>assistant\n<think>\n" + strip(reasoning, "\n") + "\n</think>\n\n" + lstrip(content, "\n");
      else
        s += "<|im_start|>assistant\n" + content;
      s += "<|im_end|>\n";
    }
  }
  if (gen) s += "<|im_start|>assistant\n";
  return s;
}

// deepseek-ai/DeepSeek-V3 (3), DeepSeek-R1 (r1) and DeepSeek-V3.1 (31).
std::string deepseek(const Messages& m, bool gen, const TemplateTokens& t, int version) {
  std::string system;
  bool first_system = true;
  for (const auto& x : m) {
    if (x.role != "system") continue;
    if (version == 1) system = x.content;  // R1: the last system message
    else system += (first_system ? "" : "\n\n") + x.content;
    first_system = false;
  }
  std::string s = t.bos + system;
  bool last_was_user = false;
  for (const auto& x : m) {
    if (x.role == "user") {
      s += "<｜User｜>" + x.content;
      last_was_user = true;
    } else if (x.role == "assistant") {
      if (version == 31) {
        if (last_was_user) s += "<｜Assistant｜><think></think>";
        const size_t p = x.content.find("</think>");  // split('</think>', 1)[1]
        s += (p == std::string::npos ? x.content : x.content.substr(p + 8)) + "<｜end▁of▁sentence｜>";
      } else {
        s += "<｜Assistant｜>" + (version == 1 ? after_last(x.content, "</think>") : x.content) + "<｜end▁of▁sentence｜>";
      }
      last_was_user = false;
    }
  }
  if (gen) {
    if (version == 3) s += "<｜Assistant｜>";
    else if (version == 1) s += "<｜Assistant｜><think>\n";
    else if (last_was_user) s += "<｜Assistant｜><think></think>";
  }
  return s;
}

// moonshotai/Kimi-K2-Instruct.
std::string kimi_k2(const Messages& m, bool gen) {
  std::string s;
  for (size_t i = 0; i < m.size(); ++i) {
    const auto& x = m[i];
    if (i == 0 && x.role != "system")
      s += "<|im_system|>system<|im_middle|>You are Kimi, an AI assistant created by Moonshot AI.<|im_end|>\n";
    if (x.role == "user") s += "<|im_user|>user<|im_middle|>";
    else if (x.role == "assistant") s += "<|im_assistant|>assistant<|im_middle|>";
    else s += "<|im_system|>system<|im_middle|>";
    s += x.content + "<|im_end|>";
  }
  if (gen) s += "<|im_assistant|>assistant<|im_middle|>";
  return s;
}

// zai-org/GLM-4.5 / GLM-4.6 (thinking on: no /nothink, no empty <think></think> in the prompt).
std::string glm4(const Messages& m, bool gen) {
  std::string s = "[gMASK]<sop>";
  const long last_u = last_user(m);
  for (size_t i = 0; i < m.size(); ++i) {
    const auto& x = m[i];
    if (x.role == "user") {
      s += "<|user|>\n" + x.content;
    } else if (x.role == "assistant") {
      std::string reasoning, content;
      split_reasoning(x.content, reasoning, content);
      s += "<|assistant|>";
      if (static_cast<long>(i) > last_u && !reasoning.empty())
        s += "\n<think>" + strip(reasoning, kWhitespace) + "</think>";
      else
        s += "\n<think></think>";
      const std::string answer = strip(content, kWhitespace);
      if (!answer.empty()) s += "\n" + answer;
    } else {
      s += "<|system|>\n" + x.content;
    }
  }
  if (gen) s += "<|assistant|>";
  return s;
}

/// Today's date (UTC) as YYYY-MM-DD (strftime_now("%Y-%m-%d") of the gpt-oss template).
std::string today_utc() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

/// gpt-oss: the final-channel text of raw harmony output ("<|channel|>analysis<|message|>...<|end|>
/// <|start|>assistant<|channel|>final<|message|>ANSWER<|return|>" -> "ANSWER"); other text unchanged.
std::string harmony_final(const std::string& content) {
  constexpr std::string_view kFinal = "<|channel|>final<|message|>";
  const size_t p = content.rfind(kFinal);
  if (p == std::string::npos) return content;
  std::string answer = content.substr(p + kFinal.size());
  for (std::string_view end : {"<|return|>", "<|end|>"})
    if (answer.ends_with(end)) answer.resize(answer.size() - end.size());
  return answer;
}

// openai/gpt-oss-120b / -20b (harmony; reasoning effort medium, no tools).
std::string gpt_oss(const Messages& m, bool gen, const TemplateTokens& t) {
  std::string s = "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
                  "Knowledge cutoff: 2024-06\nCurrent date: " +
                  (t.date.empty() ? today_utc() : t.date) +
                  "\n\nReasoning: medium\n\n# Valid channels: analysis, commentary, final. Channel must be included "
                  "for every message.<|end|>";
  size_t first = 0;
  if (!m.empty() && m[0].role == "system") {
    if (!m[0].content.empty()) s += "<|start|>developer<|message|># Instructions\n\n" + m[0].content + "\n\n<|end|>";
    first = 1;
  }
  for (size_t i = first; i < m.size(); ++i) {
    const auto& x = m[i];
    if (x.role == "assistant") {
      const bool final_turn = i + 1 == m.size() && !gen;  // the template's <|return|> case
      s += "<|start|>assistant<|channel|>final<|message|>" + harmony_final(x.content) +
           (final_turn ? "<|return|>" : "<|end|>");
    } else if (x.role == "user") {
      s += "<|start|>user<|message|>" + x.content + "<|end|>";
    }  // a later system message is not rendered (as the template)
  }
  if (gen) s += "<|start|>assistant";
  return s;
}

// mistralai 'v1' (Mixtral-8x7B-Instruct-v0.1, Mistral-7B-Instruct-v0.2) and the 'v0' template before it
// ("[INST] " without the leading space, the answer without one; no system message: folded as in v1).
std::string mistral(const Messages& m, const TemplateTokens& t, bool v0) {
  const char* name = v0 ? "mistral-v0" : "mistral-v1";
  size_t first = 0;
  const std::string* system = nullptr;
  if (!m.empty() && m[0].role == "system") {
    system = &m[0].content;
    first = 1;
  }
  std::string s = t.bos;
  for (size_t i = first; i < m.size(); ++i) {
    const auto& x = m[i];
    if ((x.role == "user") != ((i - first) % 2 == 0))
      fail("chat template {}: after the optional system message, roles must alternate user / assistant "
           "(message {} is {})", name, i + 1, x.role);
    if (x.role == "user")
      s += (v0 ? "[INST] " : " [INST] ") + (i == first && system ? *system + "\n\n" : std::string()) + x.content +
           " [/INST]";
    else if (x.role == "assistant")
      s += (v0 ? "" : " ") + x.content + t.eos;
    else
      fail("chat template {}: only the first message may be a system message (message {})", name, i + 1);
  }
  return s;  // the template has no generation prompt: " [/INST]" opens the answer
}

// meta-llama/Meta-Llama-3-8B-Instruct (llama3) and Llama-3.1 / 3.3 (llama31: a system header with
// the knowledge cutoff and the template's default date, no tools).
std::string llama3(const Messages& m, bool gen, const TemplateTokens& t, bool v31) {
  std::string s;
  size_t first = 0;
  if (v31) {
    std::string system;
    if (!m.empty() && m[0].role == "system") {
      system = strip(m[0].content, kWhitespace);
      first = 1;
    }
    s = t.bos +
        "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul "
        "2024\n\n" +
        system + "<|eot_id|>";
  }
  for (size_t i = first; i < m.size(); ++i) {
    if (i == 0 && !v31) s += t.bos;
    s += "<|start_header_id|>" + m[i].role + "<|end_header_id|>\n\n" + strip(m[i].content, kWhitespace) + "<|eot_id|>";
  }
  if (gen) s += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return s;
}

// allenai/OLMoE-1B-7B-0924-Instruct (Tulu).
std::string olmoe(const Messages& m, bool gen, const TemplateTokens& t) {
  std::string s = t.bos;
  for (size_t i = 0; i < m.size(); ++i) {
    const auto& x = m[i];
    if (x.role == "system") s += "<|system|>\n" + x.content + "\n";
    else if (x.role == "user") s += "<|user|>\n" + x.content + "\n";
    else s += "<|assistant|>\n" + x.content + t.eos + "\n";
    if (i + 1 == m.size() && gen) s += "<|assistant|>\n";
  }
  return s;
}

}  // namespace

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& r = messages[i].role;
    if (r != "system" && r != "user" && r != "assistant")
      fail("chat message {}: role \"{}\" (expected system, user or assistant)", i + 1, r);
  }
  const bool gen = add_generation_prompt;
  switch (family_) {
    case Family::kChatml: return chatml(messages, gen);
    case Family::kQwen3: return qwen3(messages, gen);
    case Family::kDeepseek3: return deepseek(messages, gen, tokens_, 3);
    case Family::kDeepseekR1: return deepseek(messages, gen, tokens_, 1);
    case Family::kDeepseek31: return deepseek(messages, gen, tokens_, 31);
    case Family::kKimiK2: return kimi_k2(messages, gen);
    case Family::kGlm4: return glm4(messages, gen);
    case Family::kGptOss: return gpt_oss(messages, gen, tokens_);
    case Family::kMistralV0: return mistral(messages, tokens_, true);
    case Family::kMistralV1: return mistral(messages, tokens_, false);
    case Family::kLlama3: return llama3(messages, gen, tokens_, false);
    case Family::kLlama31: return llama3(messages, gen, tokens_, true);
    case Family::kOlmoe: return olmoe(messages, gen, tokens_);
  }
  fail("chat template {}: no renderer", name_);
}

}  // namespace moetier::chat
