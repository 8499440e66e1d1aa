// runtime/server/openai_api: request validation (status, param and message of every refusal), the
// response and chunk shapes, SSE framing, and the stop-string hold-back.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <string>

#include "runtime/server/batch_engine.hpp"
#include "runtime/server/http_server.hpp"
#include "runtime/server/openai_api.hpp"

using namespace moetier::server;
using nlohmann::json;

namespace {
const std::string kMsgs = R"("messages": [{"role": "user", "content": "hi"}])";
}

TEST_CASE("chat requests: every bad field is a 400 naming the field") {
  struct Case {
    std::string body, param, says;
  };
  const Case cases[] = {
      {"not json", "", "not valid JSON"},
      {"[1, 2]", "", "JSON object"},
      {"{}", "messages", "required"},
      {R"({"messages": []})", "messages", "non-empty array"},
      {R"({"messages": "hi"})", "messages", "non-empty array"},
      {R"({"messages": [5]})", "messages[0]", "object"},
      {R"({"messages": [{"content": "x"}]})", "messages[0].role", "string"},
      {R"({"messages": [{"role": "wizard", "content": "x"}]})", "messages[0].role", "wizard"},
      {R"({"messages": [{"role": "user"}]})", "messages[0].content", "required"},
      {R"({"messages": [{"role": "user", "content": 7}]})", "messages[0].content", "text parts"},
      {R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})", "messages[0].content", "text parts"},
      {"{" + kMsgs + R"(, "max_tokens": -1})", "max_tokens", "expected 1"},
      {"{" + kMsgs + R"(, "max_tokens": 0})", "max_tokens", "expected 1"},
      {"{" + kMsgs + R"(, "max_tokens": 1e12})", "max_tokens", "expected 1"},
      {"{" + kMsgs + R"(, "max_tokens": 2.5})", "max_tokens", "integer"},
      {"{" + kMsgs + R"(, "max_tokens": "8"})", "max_tokens", "integer"},
      {"{" + kMsgs + R"(, "max_completion_tokens": -3})", "max_completion_tokens", "expected 1"},
      {"{" + kMsgs + R"(, "temperature": 3})", "temperature", "expected [0, 2]"},
      {"{" + kMsgs + R"(, "temperature": "hot"})", "temperature", "number"},
      {"{" + kMsgs + R"(, "top_p": 0})", "top_p", "expected (0, 1]"},
      {"{" + kMsgs + R"(, "top_p": 1.5})", "top_p", "expected (0, 1]"},
      {"{" + kMsgs + R"(, "top_k": -1})", "top_k", "expected 0"},
      {"{" + kMsgs + R"(, "min_p": 2})", "min_p", "expected [0, 1]"},
      {"{" + kMsgs + R"(, "seed": -5})", "seed", "expected -1"},
      {"{" + kMsgs + R"(, "seed": "x"})", "seed", "integer"},
      {"{" + kMsgs + R"(, "n": 2})", "n", "must be 1"},
      {"{" + kMsgs + R"(, "stop": 5})", "stop", "string or an array"},
      {"{" + kMsgs + R"(, "stop": ["a", "b", "c", "d", "e"]})", "stop", "up to 4"},
      {"{" + kMsgs + R"(, "stop": [""]})", "stop", "not be empty"},
      {"{" + kMsgs + R"(, "stream": "yes"})", "stream", "boolean"},
      {"{" + kMsgs + R"(, "stream_options": {"include_usage": 1}})", "stream_options", "boolean"},
      {"{" + kMsgs + R"(, "model": 3})", "model", "string"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.body);
    try {
      (void)parse_chat_request(c.body);
      FAIL("accepted");
    } catch (const ApiError& e) {
      CHECK(e.status == 400);
      CHECK(e.param == c.param);
      CHECK(std::string(e.what()).find(c.says) != std::string::npos);
      const json j = json::parse(e.body());  // OpenAI's error shape
      CHECK(j["error"]["message"] == e.what());
      CHECK(j["error"]["type"] == "invalid_request_error");
      CHECK(j["error"].contains("code"));
      CHECK((c.param.empty() ? j["error"]["param"].is_null() : j["error"]["param"] == c.param));
    }
  }
}

TEST_CASE("chat requests: valid fields are read; defaults are OpenAI's; unknown fields are ignored") {
  const auto r = parse_chat_request(R"({"model": "m", "messages": [{"role": "developer", "content": "be brief"},
      {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
      "max_tokens": 12, "temperature": 0.5, "top_p": 0.9, "top_k": 7, "min_p": 0.1, "seed": 42, "n": 1,
      "stop": ["\n\n", "END"], "stream": true, "stream_options": {"include_usage": true}, "logit_bias": {}, "user": "u"})");
  REQUIRE(r.messages.size() == 2);
  CHECK(r.messages[0].role == "system");
  CHECK(r.messages[1].content == "ab");
  CHECK(r.max_tokens == 12);
  CHECK(r.sampling.temperature == doctest::Approx(0.5));
  CHECK(r.sampling.top_p == doctest::Approx(0.9));
  CHECK(r.sampling.top_k == 7);
  CHECK(r.sampling.min_p == doctest::Approx(0.1));
  CHECK(r.sampling.seed == 42);
  CHECK(r.stop == std::vector<std::string>{"\n\n", "END"});
  CHECK(r.stream);
  CHECK(r.include_usage);
  CHECK(r.model == "m");
  const auto d = parse_chat_request("{" + kMsgs + "}");
  CHECK(!d.max_tokens);
  CHECK(d.sampling.temperature == 1.0f);
  CHECK(d.sampling.top_p == 1.0f);
  CHECK(d.sampling.top_k == 0);
  CHECK(d.sampling.min_p == 0.0f);
  CHECK(!d.stream);
  const auto n = parse_chat_request("{" + kMsgs + R"(, "max_tokens": null, "stop": "x"})");
  CHECK(!n.max_tokens);
  CHECK(n.stop == std::vector<std::string>{"x"});
}

TEST_CASE("completion requests: prompt is a string or an array of one string") {
  CHECK(parse_completion_request(R"({"prompt": "abc"})").prompt == "abc");
  CHECK(parse_completion_request(R"({"prompt": ["abc"]})").prompt == "abc");
  for (const char* bad : {R"({})", R"({"prompt": 5})", R"({"prompt": ["a", "b"]})", R"({"prompt": ""})", R"({"prompt": [1, 2]})"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS((void)parse_completion_request(bad), ApiError);
  }
}

TEST_CASE("invalid UTF-8 in a request is a 400, not a crash") {
  const std::string body = "{\"messages\": [{\"role\": \"user\", \"content\": \"\xff\xfe\"}]}";
  CHECK_THROWS_AS((void)parse_chat_request(body), ApiError);
}

TEST_CASE("response and chunk shapes") {
  const ResponseIds chat{"chatcmpl-1", 100, "m", true}, text{"cmpl-1", 100, "m", false};
  const json c = completion_json(chat, "hello", "stop", 3, 2);
  CHECK(c["object"] == "chat.completion");
  CHECK(c["choices"][0]["message"]["role"] == "assistant");
  CHECK(c["choices"][0]["message"]["content"] == "hello");
  CHECK(c["choices"][0]["finish_reason"] == "stop");
  CHECK(c["usage"]["total_tokens"] == 5);
  CHECK(completion_json(text, "x", "length", 1, 1)["choices"][0]["text"] == "x");
  const std::string piece = "he", reason = "length";
  const json first = chunk_json(chat, &piece, true, nullptr);
  CHECK(first["object"] == "chat.completion.chunk");
  CHECK(first["choices"][0]["delta"]["role"] == "assistant");
  CHECK(first["choices"][0]["delta"]["content"] == "he");
  CHECK(first["choices"][0]["finish_reason"].is_null());
  const json last = chunk_json(chat, nullptr, false, &reason);
  CHECK(last["choices"][0]["delta"].empty());
  CHECK(last["choices"][0]["finish_reason"] == "length");
  const json usage = usage_json(4, 5);
  const json u = chunk_json(chat, nullptr, false, nullptr, &usage);
  CHECK(u["choices"].empty());
  CHECK(u["usage"]["completion_tokens"] == 5);
  const std::string ev = sse_event(json{{"a", 1}});
  CHECK(ev == "data: {\"a\":1}\n\n");
  // Generated bytes that are not UTF-8 (a random model's pieces) come out replaced, never as bad JSON.
  const std::string bad = "\xff";
  CHECK(json::parse(sse_event(chunk_json(chat, &bad, false, nullptr)).substr(6))["choices"][0]["delta"]["content"] == "\xef\xbf\xbd");
}

TEST_CASE("stop strings: the bytes that could start one are held back while streaming") {
  const std::vector<std::string> stops{"</s>", "STOP"};
  CHECK(stop_prefix_hold("hello", stops) == 0);
  CHECK(stop_prefix_hold("hello<", stops) == 1);
  CHECK(stop_prefix_hold("hello</", stops) == 2);
  CHECK(stop_prefix_hold("hello</s", stops) == 3);
  CHECK(stop_prefix_hold("xSTO", stops) == 3);
  CHECK(stop_prefix_hold("ST", stops) == 2);
  CHECK(stop_prefix_hold("", stops) == 0);
  CHECK(stop_prefix_hold("abc", {}) == 0);
}

TEST_CASE("metrics text is Prometheus exposition format") {
  EngineStats s;
  s.requests = 3;
  s.generated_tokens = 10;
  s.decode_seconds = 2;
  const std::string t = metrics_text(s, "extra_metric 1\n");
  CHECK(t.find("# TYPE moetier_requests_total counter\nmoetier_requests_total 3\n") != std::string::npos);
  CHECK(t.find("moetier_decode_tokens_per_second 5\n") != std::string::npos);
  CHECK(t.find("# TYPE moetier_requests_in_flight gauge") != std::string::npos);
  CHECK(t.ends_with("extra_metric 1\n"));
}
