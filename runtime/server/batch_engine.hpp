// BatchEngine: the server's generation loop. N slots (--parallel), each a sequence with its own KV cache,
// sampler and detokeniser; one engine thread owns the model and, at every step, prefills one chunk of
// one waiting prompt (at most n_batch tokens, so a long prompt does not stall running decodes for more
// than one chunk) and then decodes the next token of every active sequence in one batch
// (Model::forward_batch: an expert routed by several sequences is read once). Decode steps run in
// batch-invariant mode, so a request's tokens and logits are the bits it gets running alone, and, when
// its prompt fits one chunk, the bits `moetier run` gives (tests/server/test_batch_engine.cpp).
// As llama-server: the context (-c) is split evenly over the slots; a full queue refuses new requests.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime/models/model.hpp"
#include "runtime/sampling/sampler.hpp"
#include "runtime/tokenizer/tokenizer.hpp"

namespace moetier::server {

/// What the engine generates for one request (already validated and tokenised).
struct GenRequest {
  std::vector<int32_t> prompt;      // token ids, 1 .. slot context
  int32_t max_tokens = -1;          // -1: until end of generation or a full slot context
  sampling::SamplerParams sampling;
  std::vector<std::string> stop;    // stop strings (not included in the text; finish_reason "stop")
  bool stop_at_eog = true;
  /// Test hook: receives the logits [n_vocab] each generated token was sampled from (engine thread).
  std::function<void(const std::vector<float>&)> on_logits;
};

/// One event of a request's stream, in order: Text pieces, then exactly one Done or Error.
struct GenEvent {
  enum class Kind { Text, Done, Error } kind = Kind::Text;
  std::string text;           // Text: UTF-8-complete piece; Error: the message
  std::string finish_reason;  // Done: "stop" (end of generation or a stop string), "length"
  int32_t n_prompt = 0, n_generated = 0;  // Done
};

/// Shared between the HTTP handler that waits on a request and the engine that fills it.
class RequestHandle {
 public:
  /// Next event, waiting at most `timeout_ms`; false on timeout.
  bool next(GenEvent& out, int timeout_ms);
  /// Asks the engine to stop this request (client gone); its slot is freed at the next step.
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }
  void push(GenEvent e);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<GenEvent> events_;
  std::atomic<bool> cancelled_{false};
};

struct EngineOptions {
  int n_parallel = 1;          // slots
  int64_t n_ctx_slot = 4096;   // KV positions per slot
  int64_t n_batch = 512;       // prompt tokens per prefill chunk
  int max_queue = 64;          // requests waiting for a slot (all slots busy) before submit() refuses
};

/// Counters for /metrics (monotonic unless named otherwise).
struct EngineStats {
  uint64_t requests = 0, prompt_tokens = 0, generated_tokens = 0, decode_steps = 0;
  double prompt_seconds = 0, decode_seconds = 0;
  int active = 0, queued = 0;  // gauges
};

class BatchEngine {
 public:
  /// Allocates every slot's KV cache (Error if it cannot) and starts the engine thread. `model` and `tok`
  /// must outlive the engine; nothing else may call the model meanwhile.
  BatchEngine(models::Model& model, const tokenizer::Tokenizer& tok, const EngineOptions& o);
  ~BatchEngine();  // stops the thread; requests still running get an Error event
  BatchEngine(const BatchEngine&) = delete;
  BatchEngine& operator=(const BatchEngine&) = delete;

  /// Queues `r`; nullptr when the queue is full (the server answers 503). Errors for a request that can
  /// never run (empty prompt, prompt longer than a slot's context) are the caller's to check first.
  std::shared_ptr<RequestHandle> submit(GenRequest r);
  EngineStats stats() const;
  /// Ends every queued and running request with an Error event ("the server is shutting down"), so the
  /// HTTP workers waiting on them finish; the engine stays usable.
  void cancel_all();
  const EngineOptions& options() const { return o_; }

 private:
  struct Slot;
  void loop();
  void admit();
  void prefill_one(Slot& s);
  void decode_step(std::vector<Slot*>& active);
  /// After a token was sampled for `s`: stop checks, text, events. True when the slot goes on.
  bool take_token(Slot& s, int32_t tok);
  void finish(Slot& s, const char* reason);
  void release(Slot& s);

  models::Model& model_;
  const tokenizer::Tokenizer& tok_;
  EngineOptions o_;
  std::vector<std::unique_ptr<Slot>> slots_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<GenRequest, std::shared_ptr<RequestHandle>>> queue_;
  bool stopping_ = false;
  bool cancel_all_ = false;
  EngineStats stats_;
  size_t next_prefill_ = 0;  // round robin over slots waiting for prefill
  std::thread thread_;
};

/// Length of the longest suffix of `text` that is a proper prefix of one of `stops` (bytes that must be
/// held back while streaming, since the next token may complete a stop string).
size_t stop_prefix_hold(std::string_view text, const std::vector<std::string>& stops);

}  // namespace moetier::server
