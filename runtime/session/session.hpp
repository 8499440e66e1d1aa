// Session: one conversation with a model: KV cache, prompt prefill as one batch, then token-by-token
// decode with a sampler, streaming text pieces, with llama.cpp-style timings.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/models/model.hpp"
#include "runtime/sampling/sampler.hpp"
#include "runtime/tokenizer/tokenizer.hpp"

namespace moetier {

struct GenerateParams {
  int32_t n_predict = 128;        // tokens to generate (-1: until EOS or the context is full)
  bool stop_at_eog = true;        // stop when the model emits an end-of-generation token
  sampling::SamplerParams sampling;
  /// Set (by a signal handler, another thread) to stop after the current token: stop_reason
  /// "interrupted". Checked once per generated token; nullptr: never.
  const std::atomic<bool>* interrupt = nullptr;
};

struct GenerateStats {
  int32_t n_prompt = 0;
  double prompt_ms = 0;
  int32_t n_generated = 0;
  double gen_ms = 0;  // decode time of generated tokens after the first (llama.cpp's "eval time")
  int32_t n_eval = 0;  // decode calls timed in gen_ms
  std::string stop_reason;  // "n_predict", "eog", "context", "interrupted"
  std::vector<int32_t> tokens;  // generated ids; all but the last are in the cache when generate() returns
  double prompt_tps() const { return prompt_ms > 0 ? n_prompt * 1000.0 / prompt_ms : 0; }
  double gen_tps() const { return gen_ms > 0 ? n_eval * 1000.0 / gen_ms : 0; }
};

class Session {
 public:
  /// n_ctx: KV-cache positions (Error if < 1).
  Session(models::Model& model, const tokenizer::Tokenizer& tok, int64_t n_ctx);

  /// Prefills `prompt` (Error if empty or longer than the context) and generates. on_text receives each
  /// UTF-8-complete piece of generated text as it becomes available. last_prompt_logits (optional)
  /// receives the logits [n_vocab] of the last prompt position. routing (optional) receives, per forward
  /// call, the per-layer routing records with the call's first position.
  GenerateStats generate(const std::vector<int32_t>& prompt, const GenerateParams& params,
                         const std::function<void(const std::string&)>& on_text,
                         std::vector<float>* last_prompt_logits = nullptr,
                         const std::function<void(int64_t pos0, const std::vector<models::RoutingRecord>&)>& routing = {});

  models::KvCache& cache() { return cache_; }

 private:
  models::Model& model_;
  const tokenizer::Tokenizer& tok_;
  models::KvCache cache_;
};

}  // namespace moetier
