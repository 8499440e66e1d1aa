#include "runtime/server/openai_api.hpp"

#include <fmt/format.h>

#include <cmath>
#include <limits>

namespace moetier::server {

using nlohmann::json;

namespace {

constexpr auto kReplace = json::error_handler_t::replace;

json parse_object(const std::string& body) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number beyond a double (1e400)
    throw ApiError(400, fmt::format("the body is not valid JSON: {}", e.what()));
  }
  if (!j.is_object()) throw ApiError(400, "the body must be a JSON object");
  return j;
}

/// The field `key` of `j` when present and not null.
const json* field(const json& j, const char* key) {
  const auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

double number(const json& j, const char* key, double lo, double hi, bool lo_open = false) {
  const json* v = field(j, key);
  if (!v->is_number()) throw ApiError(400, fmt::format("'{}' must be a number", key), key);
  const double d = v->get<double>();
  if (!std::isfinite(d) || d < lo || d > hi || (lo_open && d == lo))
    throw ApiError(400, fmt::format("'{}' is {}; expected {}{}, {}]", key, v->dump(), lo_open ? "(" : "[", lo, hi), key);
  return d;
}

int64_t integer(const json& j, const char* key, int64_t lo, int64_t hi) {
  const json* v = field(j, key);
  if (!v->is_number_integer() && !(v->is_number_float() && std::floor(v->get<double>()) == v->get<double>()))
    throw ApiError(400, fmt::format("'{}' must be an integer", key), key);
  const double d = v->get<double>();
  if (d < static_cast<double>(lo) || d > static_cast<double>(hi))
    throw ApiError(400, fmt::format("'{}' is {}; expected {} .. {}", key, v->dump(), lo, hi), key);
  return v->is_number_unsigned() ? static_cast<int64_t>(v->get<uint64_t>()) : v->get<int64_t>();
}

void parse_sampling(const json& j, SamplingRequest& r) {
  r.sampling.temperature = 1.0f;  // OpenAI's defaults
  r.sampling.top_p = 1.0f;
  r.sampling.top_k = 0;
  r.sampling.min_p = 0.0f;
  r.sampling.repeat_penalty = 1.0f;
  if (const json* m = field(j, "model")) {
    if (!m->is_string()) throw ApiError(400, "'model' must be a string", "model");
    r.model = m->get<std::string>();
  }
  for (const char* key : {"max_tokens", "max_completion_tokens"})
    if (field(j, key)) r.max_tokens = static_cast<int32_t>(integer(j, key, 1, std::numeric_limits<int32_t>::max()));
  if (field(j, "temperature")) r.sampling.temperature = static_cast<float>(number(j, "temperature", 0, 2));
  if (field(j, "top_p")) r.sampling.top_p = static_cast<float>(number(j, "top_p", 0, 1, true));
  if (field(j, "top_k")) r.sampling.top_k = static_cast<int32_t>(integer(j, "top_k", 0, std::numeric_limits<int32_t>::max()));
  if (field(j, "min_p")) r.sampling.min_p = static_cast<float>(number(j, "min_p", 0, 1));
  if (field(j, "seed")) {  // -1: a random seed, as llama.cpp's clients send it
    const int64_t seed = integer(j, "seed", -1, std::numeric_limits<int64_t>::max());
    if (seed >= 0) r.sampling.seed = static_cast<uint64_t>(seed);
  }
  if (field(j, "n") && integer(j, "n", 1, std::numeric_limits<int32_t>::max()) != 1)
    throw ApiError(400, "'n' must be 1: one choice per request", "n");
  if (const json* s = field(j, "stop")) {
    if (s->is_string()) {
      r.stop.push_back(s->get<std::string>());
    } else if (s->is_array() && s->size() <= 4) {
      for (const json& e : *s) {
        if (!e.is_string()) throw ApiError(400, "'stop' must be a string or an array of up to 4 strings", "stop");
        r.stop.push_back(e.get<std::string>());
      }
    } else {
      throw ApiError(400, "'stop' must be a string or an array of up to 4 strings", "stop");
    }
    for (const std::string& st : r.stop)
      if (st.empty()) throw ApiError(400, "'stop' strings must not be empty", "stop");
  }
  if (const json* s = field(j, "stream")) {
    if (!s->is_boolean()) throw ApiError(400, "'stream' must be a boolean", "stream");
    r.stream = s->get<bool>();
  }
  if (const json* so = field(j, "stream_options")) {
    if (!so->is_object()) throw ApiError(400, "'stream_options' must be an object", "stream_options");
    if (const json* u = field(*so, "include_usage")) {
      if (!u->is_boolean()) throw ApiError(400, "'stream_options.include_usage' must be a boolean", "stream_options");
      r.include_usage = u->get<bool>();
    }
  }
}

std::string content_text(const json& c, size_t i) {
  const std::string param = fmt::format("messages[{}].content", i);
  if (c.is_string()) return c.get<std::string>();
  if (!c.is_array()) throw ApiError(400, fmt::format("'{}' must be a string or an array of text parts", param), param);
  std::string text;
  for (const json& part : c) {
    const json* type = part.is_object() ? field(part, "type") : nullptr;
    const json* t = part.is_object() ? field(part, "text") : nullptr;
    if (!type || *type != "text" || !t || !t->is_string())
      throw ApiError(400, fmt::format("'{}': only text parts ({{\"type\": \"text\", \"text\": ...}}) are supported", param), param);
    text += t->get<std::string>();
  }
  return text;
}

}  // namespace

std::string ApiError::body() const {
  json e = {{"message", what()}, {"type", type}, {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", code.empty() ? json(nullptr) : json(code)}};
  return json{{"error", e}}.dump(-1, ' ', false, kReplace);
}

ChatRequest parse_chat_request(const std::string& body) {
  const json j = parse_object(body);
  ChatRequest r;
  parse_sampling(j, r);
  const json* m = field(j, "messages");
  if (!m) throw ApiError(400, "'messages' is required", "messages");
  if (!m->is_array() || m->empty()) throw ApiError(400, "'messages' must be a non-empty array", "messages");
  for (size_t i = 0; i < m->size(); ++i) {
    const json& msg = (*m)[i];
    const std::string param = fmt::format("messages[{}]", i);
    if (!msg.is_object()) throw ApiError(400, fmt::format("'{}' must be an object", param), param);
    const json* role = field(msg, "role");
    if (!role || !role->is_string()) throw ApiError(400, fmt::format("'{}.role' must be a string", param), param + ".role");
    std::string rs = role->get<std::string>();
    if (rs == "developer") rs = "system";
    if (rs != "system" && rs != "user" && rs != "assistant")
      throw ApiError(400, fmt::format("'{}.role' is \"{}\"; expected system, developer, user or assistant", param, rs),
                     param + ".role");
    const json* c = field(msg, "content");
    if (!c) throw ApiError(400, fmt::format("'{}.content' is required", param), param + ".content");
    r.messages.push_back({rs, content_text(*c, i)});
  }
  return r;
}

CompletionRequest parse_completion_request(const std::string& body) {
  const json j = parse_object(body);
  CompletionRequest r;
  parse_sampling(j, r);
  const json* p = field(j, "prompt");
  if (!p) throw ApiError(400, "'prompt' is required", "prompt");
  if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) p = &(*p)[0];
  if (!p->is_string()) throw ApiError(400, "'prompt' must be a string (or an array of one string)", "prompt");
  r.prompt = p->get<std::string>();
  if (r.prompt.empty()) throw ApiError(400, "'prompt' is empty", "prompt");
  return r;
}

json usage_json(int32_t prompt_tokens, int32_t completion_tokens) {
  return {{"prompt_tokens", prompt_tokens}, {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens}};
}

json completion_json(const ResponseIds& ids, const std::string& text, const std::string& finish_reason,
                     int32_t prompt_tokens, int32_t completion_tokens) {
  json choice = {{"index", 0}, {"finish_reason", finish_reason}, {"logprobs", nullptr}};
  if (ids.chat)
    choice["message"] = {{"role", "assistant"}, {"content", text}};
  else
    choice["text"] = text;
  return {{"id", ids.id},         {"object", ids.chat ? "chat.completion" : "text_completion"},
          {"created", ids.created}, {"model", ids.model},
          {"choices", json::array({choice})}, {"usage", usage_json(prompt_tokens, completion_tokens)}};
}

json chunk_json(const ResponseIds& ids, const std::string* text, bool first, const std::string* finish_reason,
                const json* usage) {
  json j = {{"id", ids.id}, {"object", ids.chat ? "chat.completion.chunk" : "text_completion"},
            {"created", ids.created}, {"model", ids.model}};
  if (usage) {
    j["choices"] = json::array();
    j["usage"] = *usage;
    return j;
  }
  json choice = {{"index", 0}, {"finish_reason", finish_reason ? json(*finish_reason) : json(nullptr)}, {"logprobs", nullptr}};
  if (ids.chat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (text) delta["content"] = *text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text ? *text : "";
  }
  j["choices"] = json::array({choice});
  return j;
}

std::string sse_event(const json& j) { return "data: " + j.dump(-1, ' ', false, kReplace) + "\n\n"; }

}  // namespace moetier::server
