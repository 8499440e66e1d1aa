// ChatSession: a multi-turn conversation on one Session whose KV cache keeps the history, so that a turn
// prefills only what is new. Each turn renders the whole conversation with the chat template and prefills
// the part of it beyond what the cache already holds: the cache's text (the pieces of its tokens, plus
// the last sampled token, which generate() leaves out of the cache) must be a prefix of the rendering;
// where it is not (a template that rewrites earlier answers, e.g. drops their reasoning), the whole
// rendering is tokenised, the cache is cut back to the longest common token prefix and the rest prefilled.
#pragma once

#include "common/error.hpp"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/chat/chat_template.hpp"
#include "runtime/session/session.hpp"
#include "runtime/tokenizer/tokenizer.hpp"

namespace moetier::chat {

struct TurnStats {
  int32_t n_prefill = 0;    // tokens prefilled for this turn (the new text, plus the held-back token)
  int32_t n_reused = 0;     // tokens of the cache this turn built on
  int32_t n_discarded = 0;  // cache tokens dropped because the rendering diverged from them (0 normally)
  std::vector<int32_t> prefill;  // the tokens prefilled
  GenerateStats gen;        // the generation (gen.n_prompt == n_prefill; gen.tokens: the answer's ids)
  std::string answer;       // the answer's text as it goes into the history (special tokens as text)
};

/// Thrown by ChatSession::turn when the conversation with the new message would not fit in the context;
/// nothing has changed (the cache and the history are as before the call), so the chat can go on.
class TurnTooLong : public Error {
 public:
  using Error::Error;
};

class ChatSession {
 public:
  /// `session` (its cache empty) and `tok` must outlive this object. `system`: a system message opening
  /// the conversation ("" = none).
  ChatSession(Session& session, const tokenizer::Tokenizer& tok, ChatTemplate tmpl, const std::string& system = "");

  /// Adds the user's message, prefills what the cache lacks and generates the answer (streamed to
  /// on_text), which joins the history. Error when the turn does not fit in the context (the history
  /// and the cache are left as they were).
  TurnStats turn(const std::string& user_text, const GenerateParams& params,
                 const std::function<void(const std::string&)>& on_text);

  const std::vector<ChatMessage>& history() const { return history_; }
  /// The tokens in the KV cache, in order (cache().n_past of them).
  const std::vector<int32_t>& cached_tokens() const { return cached_; }
  const ChatTemplate& chat_template() const { return tmpl_; }

 private:
  /// The tokens of `text` as the first part of a prompt: BOS added when the tokenizer wants one and the
  /// text does not already start with the BOS text (added_bos: whether it was).
  std::vector<int32_t> tokenize_prompt(const std::string& text, bool& added_bos) const;
  std::string text_of(const std::vector<int32_t>& ids, size_t from) const;

  Session& session_;
  const tokenizer::Tokenizer& tok_;
  ChatTemplate tmpl_;
  std::vector<ChatMessage> history_;
  std::vector<int32_t> cached_;  // what the KV cache holds
  size_t n_implicit_ = 0;       // leading tokens of cached_ the rendering has no text for (a BOS the tokenizer added)
  int32_t held_back_ = -1;      // the last sampled token, not in the cache (-1: none)
};

}  // namespace moetier::chat
