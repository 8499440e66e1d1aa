#include "runtime/server/http_server.hpp"

#include <fmt/format.h>
#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <ctime>
#include <random>

#include "common/error.hpp"

namespace moetier::server {

using nlohmann::json;

namespace {

constexpr int kHeartbeatMs = 1000;

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  if (e.status == 503) res.set_header("Retry-After", "1");
  res.set_content(e.body(), "application/json");
}

std::string random_id(const char* prefix) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{}{:016x}", prefix, rng());
}

/// Constant-time comparison of a presented key with the configured one.
bool same_key(const std::string& a, const std::string& b) {
  unsigned diff = a.size() != b.size();
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

/// What a response provider keeps between calls (it runs on the HTTP worker after the handler returned).
struct Pending {
  std::shared_ptr<RequestHandle> h;
  ResponseIds ids;
  bool stream = false, include_usage = false, first = true;
  std::string text;  // non-streamed: the answer so far
  std::chrono::steady_clock::time_point last_write = std::chrono::steady_clock::now();  // non-streamed
};

bool write(httplib::DataSink& sink, const std::string& s) { return sink.write(s.data(), s.size()); }

/// One call of a streamed response's provider: waits for the next event and writes it as SSE.
bool stream_step(Pending& p, httplib::DataSink& sink) {
  GenEvent ev;
  if (!p.h->next(ev, kHeartbeatMs)) return write(sink, ": keep-alive\n\n");  // also notices a closed connection
  std::string out;
  if (ev.kind == GenEvent::Kind::Text) {
    out = sse_event(chunk_json(p.ids, &ev.text, p.first, nullptr));
    p.first = false;
    return write(sink, out);
  }
  if (ev.kind == GenEvent::Kind::Done) {
    if (p.first && p.ids.chat) out += sse_event(chunk_json(p.ids, nullptr, true, nullptr));
    out += sse_event(chunk_json(p.ids, nullptr, false, &ev.finish_reason));
    if (p.include_usage) {
      const json usage = usage_json(ev.n_prompt, ev.n_generated);
      out += sse_event(chunk_json(p.ids, nullptr, false, nullptr, &usage));
    }
  } else {
    out += sse_event(json::parse(ApiError(500, ev.text, "", "server_error").body()));
  }
  out += "data: [DONE]\n\n";
  if (!write(sink, out)) return false;
  sink.done();
  return true;
}

/// One call of a non-streamed response's provider: collects the answer; a space every second until then
/// (also while tokens arrive: a write is the only way a closed connection is noticed).
bool whole_step(Pending& p, httplib::DataSink& sink) {
  GenEvent ev;
  const bool got = p.h->next(ev, kHeartbeatMs);
  const auto now = std::chrono::steady_clock::now();
  if (!got || now - p.last_write >= std::chrono::milliseconds(kHeartbeatMs)) {
    p.last_write = now;
    if (!write(sink, " ")) return false;
  }
  if (!got) return true;
  if (ev.kind == GenEvent::Kind::Text) {
    p.text += ev.text;
    return true;
  }
  const std::string body =
      ev.kind == GenEvent::Kind::Done
          ? completion_json(p.ids, p.text, ev.finish_reason, ev.n_prompt, ev.n_generated).dump(-1, ' ', false, json::error_handler_t::replace)
          : ApiError(500, ev.text, "", "server_error").body();
  if (!write(sink, body)) return false;
  sink.done();
  return true;
}

}  // namespace

struct HttpServer::Impl {
  BatchEngine& engine;
  const tokenizer::Tokenizer& tok;
  ServerConfig cfg;
  httplib::Server svr;
  size_t longest_piece = 1;
  int listen_fd = -1;

  Impl(BatchEngine& e, const tokenizer::Tokenizer& t, ServerConfig c) : engine(e), tok(t), cfg(std::move(c)) {
    for (int32_t id = 0; id < tok.n_vocab(); ++id) longest_piece = std::max(longest_piece, tok.piece(id, true).size());
  }

  void generate(const std::string& body, httplib::Response& res, bool chat) {
    ChatRequest cr;
    CompletionRequest pr;
    std::string prompt;
    if (chat) {
      cr = parse_chat_request(body);
      prompt = cfg.render_chat(cr.messages);
    } else {
      pr = parse_completion_request(body);
      prompt = pr.prompt;
    }
    const SamplingRequest& base = chat ? static_cast<const SamplingRequest&>(cr) : pr;
    const char* prompt_param = chat ? "messages" : "prompt";
    const int64_t n_ctx = engine.options().n_ctx_slot;
    // No token stands for more bytes than the longest piece: a longer text cannot fit, and is refused
    // without tokenising megabytes.
    if (prompt.size() > static_cast<uint64_t>(n_ctx) * longest_piece + 64)
      throw ApiError(400, fmt::format("the prompt ({} bytes) cannot fit in a slot's context of {} tokens", prompt.size(), n_ctx),
                     prompt_param, "invalid_request_error", "context_length_exceeded");
    GenRequest g;
    const bool bos_written = chat && !cfg.template_bos.empty() && prompt.starts_with(cfg.template_bos);
    g.prompt = tok.encode(prompt, !bos_written, true);
    const auto n_prompt = static_cast<int64_t>(g.prompt.size());
    if (n_prompt == 0) throw ApiError(400, "the prompt is empty", prompt_param);
    if (n_prompt > n_ctx)
      throw ApiError(400, fmt::format("the prompt is {} tokens; a slot's context is {} tokens", n_prompt, n_ctx), prompt_param,
                     "invalid_request_error", "context_length_exceeded");
    if (base.max_tokens && n_prompt + *base.max_tokens > n_ctx)
      throw ApiError(400, fmt::format("max_tokens {} + the prompt's {} tokens exceed a slot's context of {} tokens",
                                      *base.max_tokens, n_prompt, n_ctx),
                     "max_tokens", "invalid_request_error", "context_length_exceeded");
    g.max_tokens = base.max_tokens.value_or(-1);
    g.sampling = base.sampling;
    g.stop = base.stop;
    try {
      (void)sampling::Sampler(g.sampling);
    } catch (const Error& e) {
      throw ApiError(400, e.what());
    }
    auto p = std::make_shared<Pending>();
    p->h = engine.submit(std::move(g));
    if (!p->h) throw ApiError(503, "all slots are busy and the queue is full; retry later", "", "server_error", "overloaded");
    p->ids = {random_id(chat ? "chatcmpl-" : "cmpl-"), static_cast<int64_t>(std::time(nullptr)), cfg.model_id, chat};
    p->stream = base.stream;
    p->include_usage = base.include_usage;
    const auto released = [p](bool success) {
      if (!success) p->h->cancel();
    };
    if (p->stream) {
      res.set_header("Cache-Control", "no-cache");
      res.set_chunked_content_provider("text/event-stream", [p](size_t, httplib::DataSink& sink) {
        if (stream_step(*p, sink)) return true;
        p->h->cancel();
        return false;
      }, released);
    } else {
      res.set_chunked_content_provider("application/json", [p](size_t, httplib::DataSink& sink) {
        if (whole_step(*p, sink)) return true;
        p->h->cancel();
        return false;
      }, released);
    }
  }

  /// A POST handler that reads the body itself: httplib caps a body it reads as form data (curl -d's
  /// default Content-Type) at 8 KiB; here every Content-Type gets the --max body size.
  template <typename F>
  httplib::Server::HandlerWithContentReader with_body(F f) {
    return [this, f](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
      try {
        if (req.is_multipart_form_data()) throw ApiError(400, "the body must be JSON, not multipart form data");
        std::string body;
        bool over = false;
        reader([&](const char* d, size_t n) {
          over = over || body.size() + n > cfg.max_body_bytes;
          if (!over) body.append(d, n);
          return !over;
        });
        if (over) throw ApiError(413, fmt::format("the request body is larger than the {} bytes the server accepts", cfg.max_body_bytes));
        f(body, res);
      } catch (const ApiError& e) {
        send_error(res, e);
      } catch (const std::exception& e) {
        send_error(res, ApiError(500, e.what(), "", "server_error"));
      }
    };
  }

  void routes() {
    svr.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      // A POST whose body has no length (neither Content-Length nor chunked) cannot be read: say so now
      // instead of waiting for the read timeout.
      if (req.method == "POST" && !req.has_header("Content-Length") && !req.has_header("Transfer-Encoding")) {
        send_error(res, ApiError(411, "the request has no Content-Length (send the JSON body with its length)"));
        return httplib::Server::HandlerResponse::Handled;
      }
      if (cfg.api_key.empty() || req.path == "/health") return httplib::Server::HandlerResponse::Unhandled;
      const std::string auth = req.get_header_value("Authorization");
      // The scheme name is case-insensitive (RFC 7235); the key is not.
      const std::string prefix = "bearer ";
      const bool bearer = auth.size() > prefix.size() &&
                          std::equal(prefix.begin(), prefix.end(), auth.begin(),
                                     [](char a, char b) { return a == std::tolower(static_cast<unsigned char>(b)); });
      if (bearer && same_key(auth.substr(prefix.size()), cfg.api_key))
        return httplib::Server::HandlerResponse::Unhandled;
      send_error(res, ApiError(401, "invalid or missing API key (Authorization: Bearer KEY)", "", "invalid_request_error",
                               "invalid_api_key"));
      return httplib::Server::HandlerResponse::Handled;
    });
    svr.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      const std::string what = res.status == 404   ? fmt::format("no route {} {}", req.method, req.path)
                               : res.status == 413 ? std::string("the request body is larger than the server accepts")
                               : res.status == 400 ? std::string("the request could not be read (malformed HTTP, or a body "
                                                                 "shorter than its Content-Length)")
                                                   : fmt::format("HTTP {}", res.status);
      const int status = res.status;
      send_error(res, ApiError(status, what));
    });
    svr.Get("/health", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"status":"ok"})", "application/json");
    });
    const auto models = [this](const httplib::Request&, httplib::Response& res) {
      json m = {{"id", cfg.model_id}, {"object", "model"}, {"created", static_cast<int64_t>(std::time(nullptr))},
                {"owned_by", "moetier"}};
      res.set_content(json{{"object", "list"}, {"data", json::array({m})}}.dump(-1, ' ', false, json::error_handler_t::replace),
                      "application/json");
    };
    svr.Get("/v1/models", models);
    svr.Get("/models", models);
    svr.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics_text(engine.stats(), cfg.extra_metrics ? cfg.extra_metrics() : ""),
                      "text/plain; version=0.0.4");
    });
    for (const char* path : {"/v1/chat/completions", "/chat/completions"})
      svr.Post(path, with_body([this](const std::string& body, httplib::Response& res) { generate(body, res, true); }));
    for (const char* path : {"/v1/completions", "/completions"})
      svr.Post(path, with_body([this](const std::string& body, httplib::Response& res) { generate(body, res, false); }));
  }
};

HttpServer::HttpServer(BatchEngine& engine, const tokenizer::Tokenizer& tok, ServerConfig cfg)
    : impl_(std::make_unique<Impl>(engine, tok, std::move(cfg))) {
  auto& s = impl_->svr;
  const int threads = std::max(impl_->cfg.http_threads, 2);
  s.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  s.set_payload_max_length(impl_->cfg.max_body_bytes);
  // httplib's default socket options set SO_REUSEPORT, with which a second server binds the same port and
  // silently takes part of its connections; SO_REUSEADDR only allows rebinding a port left in TIME_WAIT.
  s.set_socket_options([impl = impl_.get()](socket_t fd) {
    const int yes = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    impl->listen_fd = fd;
  });
  s.set_read_timeout(5, 0);  // a client that stops sending mid-request holds a thread (and shutdown) this long
  s.set_write_timeout(30, 0);
  impl_->routes();
}

HttpServer::~HttpServer() = default;

void HttpServer::bind() {
  const ServerConfig& c = impl_->cfg;
  if (c.port == 0) {
    port_ = impl_->svr.bind_to_any_port(c.host);
    if (port_ <= 0) fail("serve: cannot bind {} (any port)", c.host);
  } else {
    if (!impl_->svr.bind_to_port(c.host, c.port)) fail("serve: cannot bind {}:{} (in use, or not an address of this machine)", c.host, c.port);
    port_ = c.port;
  }
  // httplib listens with a backlog of 5: clients connecting at once beyond that wait for a SYN
  // retransmission (1 s, then 3 s). Listening again on the bound socket only raises the backlog.
  if (impl_->listen_fd >= 0) ::listen(impl_->listen_fd, SOMAXCONN);
}

void HttpServer::serve() { impl_->svr.listen_after_bind(); }

void HttpServer::stop() { impl_->svr.stop(); }

std::string metrics_text(const EngineStats& s, const std::string& extra) {
  std::string out;
  const auto metric = [&](const char* name, const char* type, const char* help, double v) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, v);
  };
  metric("moetier_requests_total", "counter", "Requests admitted to a slot.", static_cast<double>(s.requests));
  metric("moetier_requests_in_flight", "gauge", "Requests holding a slot.", s.active);
  metric("moetier_queue_length", "gauge", "Requests waiting for a slot.", s.queued);
  metric("moetier_prompt_tokens_total", "counter", "Prompt tokens prefilled.", static_cast<double>(s.prompt_tokens));
  metric("moetier_prompt_seconds_total", "counter", "Seconds spent in prompt prefill.", s.prompt_seconds);
  metric("moetier_generated_tokens_total", "counter", "Tokens generated.", static_cast<double>(s.generated_tokens));
  metric("moetier_decode_steps_total", "counter", "Batched decode steps.", static_cast<double>(s.decode_steps));
  metric("moetier_decode_seconds_total", "counter", "Seconds spent in decode steps.", s.decode_seconds);
  metric("moetier_prompt_tokens_per_second", "gauge", "Prompt tokens per second of prefill time (all requests).",
         s.prompt_seconds > 0 ? static_cast<double>(s.prompt_tokens) / s.prompt_seconds : 0.0);
  metric("moetier_decode_tokens_per_second", "gauge", "Generated tokens per second of decode time (all sequences).",
         s.decode_seconds > 0 ? static_cast<double>(s.generated_tokens) / s.decode_seconds : 0.0);
  return out + extra;
}

}  // namespace moetier::server
