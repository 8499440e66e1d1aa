#include "runtime/chat/chat_session.hpp"

#include <algorithm>

#include "common/error.hpp"

namespace moetier::chat {

ChatSession::ChatSession(Session& session, const tokenizer::Tokenizer& tok, ChatTemplate tmpl, const std::string& system)
    : session_(session), tok_(tok), tmpl_(std::move(tmpl)) {
  if (session_.cache().n_past != 0) fail("chat: the session's cache is not empty ({} positions)", session_.cache().n_past);
  if (!system.empty()) history_.push_back({"system", system});
}

std::string ChatSession::text_of(const std::vector<int32_t>& ids, size_t from) const {
  std::string s;
  for (size_t i = from; i < ids.size(); ++i) s += tok_.piece(ids[i], true);
  return s;
}

std::vector<int32_t> ChatSession::tokenize_prompt(const std::string& text, bool& added_bos) const {
  // The template writes the BOS text itself when the model wants one (llama.cpp's rule): tokenise it as a
  // special token then, instead of adding a second BOS.
  const bool has_bos_text = tok_.bos() >= 0 && !tmpl_.tokens().bos.empty() && text.starts_with(tmpl_.tokens().bos);
  std::vector<int32_t> ids = tok_.encode(text, !has_bos_text, true);
  added_bos = !has_bos_text && tok_.add_bos() && !ids.empty() && ids.front() == tok_.bos();
  return ids;
}

TurnStats ChatSession::turn(const std::string& user_text, const GenerateParams& params,
                            const std::function<void(const std::string&)>& on_text) {
  std::vector<ChatMessage> next = history_;
  next.push_back({"user", user_text});

  // What to prefill, and how much of the cache it builds on (computed before anything changes).
  std::vector<int32_t> prefill;
  size_t keep = cached_.size();
  size_t implicit = n_implicit_;
  bool found = false;
  if (!cached_.empty()) {
    const std::string cache_text = text_of(cached_, n_implicit_);
    const std::string held_text = held_back_ >= 0 ? std::string(tok_.piece(held_back_, true)) : "";
    // The last answer is stored as its tokens' pieces; a template that writes " " + answer (mistral-v1)
    // matches the cache with the piece's own leading space (SentencePiece's "▁") taken off.
    std::vector<std::string> variants;
    const bool answered = next.size() >= 2 && next[next.size() - 2].role == "assistant";
    if (answered) {
      const std::string& a = next[next.size() - 2].content;
      variants.push_back(a);
      if (a.starts_with(' ')) variants.push_back(a.substr(1));
    } else {
      variants.emplace_back();
    }
    for (const auto& v : variants) {
      if (answered) next[next.size() - 2].content = v;
      const std::string full = tmpl_.render(next, true);
      if (held_back_ >= 0 && full.starts_with(cache_text + held_text)) {
        prefill.push_back(held_back_);
        const auto rest = tok_.encode(std::string_view(full).substr(cache_text.size() + held_text.size()), false, true);
        prefill.insert(prefill.end(), rest.begin(), rest.end());
        found = true;
      } else if (full.starts_with(cache_text)) {
        prefill = tok_.encode(std::string_view(full).substr(cache_text.size()), false, true);
        found = !prefill.empty();
      }
      if (found) break;
    }
    if (!found && answered) next[next.size() - 2].content = variants.front();
  }
  if (!found) {
    // First turn, or the rendering rewrote what the cache holds: the longest common token prefix stays.
    bool added_bos = false;
    const std::vector<int32_t> all = tokenize_prompt(tmpl_.render(next, true), added_bos);
    if (all.empty()) fail("chat: the rendered conversation has no tokens");
    size_t lcp = 0;
    while (lcp < all.size() && lcp < cached_.size() && all[lcp] == cached_[lcp]) ++lcp;
    if (lcp == all.size()) --lcp;  // at least one token to prefill (its logits start the answer)
    keep = lcp;
    prefill.assign(all.begin() + static_cast<long>(lcp), all.end());
    implicit = added_bos ? 1 : 0;
  }
  auto& cache = session_.cache();
  if (static_cast<int64_t>(keep + prefill.size()) > cache.n_ctx)
    throw TurnTooLong(fmt::format("chat: the conversation needs {} tokens with this turn, the context holds {} (raise -c)",
                                  keep + prefill.size(), cache.n_ctx));

  TurnStats ts;
  ts.n_reused = static_cast<int32_t>(keep);
  ts.n_discarded = static_cast<int32_t>(cached_.size() - keep);
  ts.n_prefill = static_cast<int32_t>(prefill.size());
  cache.n_past = static_cast<int64_t>(keep);  // positions past it are overwritten by the prefill
  cached_.resize(keep);
  n_implicit_ = implicit;
  held_back_ = -1;
  ts.gen = session_.generate(prefill, params, on_text);
  ts.prefill = prefill;

  cached_.insert(cached_.end(), prefill.begin(), prefill.end());
  const auto& gen = ts.gen.tokens;
  if (!gen.empty()) {
    cached_.insert(cached_.end(), gen.begin(), gen.end() - 1);  // generate() leaves the last one out
    held_back_ = gen.back();
  }
  // The answer: its tokens' pieces, without the end-of-generation token that closed it.
  size_t n_answer = gen.size();
  if (n_answer > 0 && ts.gen.stop_reason == "eog") --n_answer;
  ts.answer = text_of(std::vector<int32_t>(gen.begin(), gen.begin() + static_cast<long>(n_answer)), 0);
  history_ = std::move(next);
  history_.push_back({"assistant", ts.answer});
  return ts;
}

}  // namespace moetier::chat
