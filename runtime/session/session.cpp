#include "runtime/session/session.hpp"

#include <chrono>

#include "common/error.hpp"

namespace moetier {

namespace {
double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

Session::Session(models::Model& model, const tokenizer::Tokenizer& tok, int64_t n_ctx)
    : model_(model), tok_(tok), cache_(model.new_cache(n_ctx)) {}

GenerateStats Session::generate(const std::vector<int32_t>& prompt, const GenerateParams& params,
                                const std::function<void(const std::string&)>& on_text,
                                std::vector<float>* last_prompt_logits,
                                const std::function<void(int64_t, const std::vector<models::RoutingRecord>&)>& routing) {
  if (prompt.empty()) fail("empty prompt: nothing to evaluate");
  if (static_cast<int64_t>(prompt.size()) + cache_.n_past > cache_.n_ctx)
    fail("prompt of {} tokens does not fit in the context of {} tokens (raise -c)", prompt.size(), cache_.n_ctx);
  GenerateStats st;
  st.n_prompt = static_cast<int32_t>(prompt.size());
  sampling::Sampler sampler(params.sampling);
  for (int32_t t : prompt) sampler.accept(t);

  std::vector<float> logits;
  std::vector<models::RoutingRecord> records;
  models::ForwardOptions opt;
  if (routing) opt.routing = &records;
  double t0 = now_ms();
  const int64_t pos0 = cache_.n_past;
  model_.forward(prompt, cache_, logits, opt);
  st.prompt_ms = now_ms() - t0;
  if (routing) routing(pos0, records);
  if (last_prompt_logits) *last_prompt_logits = logits;

  tokenizer::StreamingDetokenizer stream(tok_, false);
  st.stop_reason = "n_predict";
  double eval_start = 0;
  for (int32_t i = 0; params.n_predict < 0 || i < params.n_predict; ++i) {
    const int32_t tok = sampler.sample(logits);
    sampler.accept(tok);
    st.tokens.push_back(tok);
    ++st.n_generated;
    if (params.stop_at_eog && tok_.is_eog(tok)) {
      st.stop_reason = "eog";
      break;
    }
    if (on_text) {
      std::string text = stream.push(tok);
      if (!text.empty()) on_text(text);
    }
    if (params.n_predict >= 0 && i + 1 >= params.n_predict) break;
    if (params.interrupt && params.interrupt->load(std::memory_order_relaxed)) {
      st.stop_reason = "interrupted";
      break;
    }
    if (cache_.n_past >= cache_.n_ctx) {
      st.stop_reason = "context";
      break;
    }
    if (eval_start == 0) eval_start = now_ms();
    const int64_t pos = cache_.n_past;
    model_.forward(std::span<const int32_t>(&tok, 1), cache_, logits, opt);
    if (routing) routing(pos, records);
    ++st.n_eval;
  }
  if (eval_start > 0) st.gen_ms = now_ms() - eval_start;
  if (on_text) {
    std::string rest = stream.finish();
    if (!rest.empty()) on_text(rest);
  }
  return st;
}

}  // namespace moetier
