// `moetier serve`'s HTTP side (cpp-httplib): the OpenAI-compatible endpoints over a BatchEngine.
//   POST /v1/chat/completions, POST /v1/completions (streamed as SSE with "stream": true),
//   GET /v1/models, GET /health, GET /metrics (Prometheus text format 0.0.4).
// Every error is OpenAI's {"error": {...}} with 400 (bad JSON or fields, prompt or max_tokens beyond a
// slot's context), 401 (wrong or missing API key), 404, 413 (body over the limit) or 503 with
// Retry-After (queue full). A client that disconnects cancels its generation: streams notice at the next
// write; non-streamed responses are sent chunked with a space (JSON whitespace) every second while the
// answer is generated, so a closed connection is noticed too.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "runtime/server/batch_engine.hpp"
#include "runtime/server/openai_api.hpp"
#include "runtime/tokenizer/tokenizer.hpp"

namespace moetier::server {

struct ServerConfig {
  std::string host = "127.0.0.1";
  int port = 8080;                 // 0: any free port (bound_port() tells which)
  std::string api_key;             // empty: no key needed
  std::string model_id;            // /v1/models id and the responses' "model"
  size_t max_body_bytes = 8u << 20;
  int http_threads = 8;
  /// The prompt text of a conversation (the model's chat template, assistant turn opened).
  std::function<std::string(const std::vector<Message>&)> render_chat;
  /// The BOS token's text when the chat template writes it itself (then no second BOS is added).
  std::string template_bos;
  /// Extra Prometheus lines for /metrics (expert cache, tiers), appended as they are.
  std::function<std::string()> extra_metrics;
};

class HttpServer {
 public:
  HttpServer(BatchEngine& engine, const tokenizer::Tokenizer& tok, ServerConfig cfg);
  ~HttpServer();
  /// Binds host:port; Error (one line) when it cannot.
  void bind();
  /// Serves until stop() (blocking).
  void serve();
  void stop();
  int bound_port() const { return port_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

/// The /metrics text of `s` (moetier_* counters and gauges) followed by `extra`.
std::string metrics_text(const EngineStats& s, const std::string& extra);

}  // namespace moetier::server
