// The OpenAI API's request and response shapes (https://platform.openai.com/docs/api-reference/chat and
// /completions, as llama-server implements them): request validation into a GenRequest's parameters,
// errors in OpenAI's shape, and the JSON of complete and streamed (SSE) responses.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/sampling/sampler.hpp"

namespace moetier::server {

/// A request the API refuses: HTTP status and OpenAI's error object
/// {"error": {"message", "type", "param", "code"}}.
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string param = "", std::string type = "invalid_request_error",
           std::string code = "")
      : std::runtime_error(message), status(status), param(std::move(param)), type(std::move(type)), code(std::move(code)) {}
  int status;
  std::string param, type, code;
  std::string body() const;
};

struct Message {
  std::string role;     // "system", "user", "assistant" ("developer" is read as "system")
  std::string content;  // text; an array of {"type": "text", "text"} parts is joined
};

/// The fields chat completions and completions share, validated.
struct SamplingRequest {
  std::optional<int32_t> max_tokens;  // absent: until end of generation or a full context
  sampling::SamplerParams sampling;   // OpenAI's defaults: temperature 1, top_p 1; top_k / min_p off
  std::vector<std::string> stop;      // up to 4 non-empty strings
  bool stream = false;
  bool include_usage = false;         // stream_options.include_usage
  std::string model;
};

struct ChatRequest : SamplingRequest {
  std::vector<Message> messages;
};

struct CompletionRequest : SamplingRequest {
  std::string prompt;
};

/// Parse and validate a request body. Throws ApiError(400) for a body that is not a JSON object, a
/// missing or wrongly typed field, a value out of range (temperature [0, 2], top_p (0, 1], top_k >= 0,
/// min_p [0, 1], max_tokens >= 1, n == 1, seed >= -1 (-1: random)), naming the field in `param`. Unknown fields are
/// ignored, as llama-server does.
ChatRequest parse_chat_request(const std::string& body);
CompletionRequest parse_completion_request(const std::string& body);

/// usage: {"prompt_tokens", "completion_tokens", "total_tokens"}.
nlohmann::json usage_json(int32_t prompt_tokens, int32_t completion_tokens);

/// One response's identity: id ("chatcmpl-..." / "cmpl-..."), created (Unix seconds), model.
struct ResponseIds {
  std::string id;
  int64_t created = 0;
  std::string model;
  bool chat = true;  // chat.completion(.chunk) or text_completion
};

/// A complete (non-streamed) response.
nlohmann::json completion_json(const ResponseIds& ids, const std::string& text, const std::string& finish_reason,
                               int32_t prompt_tokens, int32_t completion_tokens);
/// One streamed chunk: a delta of text (chat: the first chunk carries the role), or the last one with
/// finish_reason set; usage is added when given (then choices is empty, as OpenAI's include_usage chunk).
nlohmann::json chunk_json(const ResponseIds& ids, const std::string* text, bool first, const std::string* finish_reason,
                          const nlohmann::json* usage = nullptr);

/// "data: <json>\n\n" (Server-Sent Events framing of OpenAI's streams).
std::string sse_event(const nlohmann::json& j);

}  // namespace moetier::server
