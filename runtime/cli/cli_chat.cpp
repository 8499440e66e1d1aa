// `moetier chat` (and `moetier run --chat`, alias -cnv as llama.cpp): an interactive chat in the terminal.
// One line of standard input is one user message; the answer streams to standard output. The KV cache
// keeps the conversation, so a turn prefills only its new tokens (runtime/chat/chat_session.hpp).
// Ctrl-C stops the answer being generated; Ctrl-C at the prompt, `/exit` or end of input leaves.
// -v prints each turn's token counts and speeds on stderr; --json prints one JSON line per turn instead
// of the streamed text.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.hpp"
#include "common/file_io.hpp"
#include "runtime/chat/chat_session.hpp"
#include "runtime/chat/chat_template.hpp"
#include "runtime/cli/loaded_model.hpp"
#include "runtime/cli/chat_options.hpp"
#include "runtime/cli/commands.hpp"
#include "runtime/cli/context_size.hpp"
#include "runtime/cli/option_checks.hpp"
#include "runtime/cli/weights_memory.hpp"
#include "runtime/gguf/gguf_model.hpp"
#include "runtime/models/model.hpp"
#include "runtime/tiered/memory_budget.hpp"
#include "runtime/tokenizer/tokenizer.hpp"
#include "scheduler/thread_pool.hpp"

namespace moetier::cli {
namespace {

std::atomic<bool> g_interrupt{false};  // stops the answer being generated (GenerateParams::interrupt)
std::atomic<int> g_sigints{0};         // Ctrl-C presses so far
int g_wake_fd = -1;                    // write end of the self-pipe that wakes the prompt's poll()
static_assert(std::atomic<bool>::is_always_lock_free && std::atomic<int>::is_always_lock_free,
              "the SIGINT handler stores to them");

extern "C" void on_sigint(int) {
  const int saved = errno;
  g_interrupt.store(true, std::memory_order_relaxed);
  g_sigints.fetch_add(1, std::memory_order_relaxed);
  if (g_wake_fd >= 0) (void)!::write(g_wake_fd, "!", 1);
  errno = saved;
}

/// Installs on_sigint for SIGINT with a self-pipe (so that a Ctrl-C at the prompt is seen even when it
/// arrives just before the read blocks); the previous action comes back on destruction.
class SigintGuard {
 public:
  SigintGuard() {
    if (::pipe2(pipe_, O_CLOEXEC | O_NONBLOCK) != 0) fail("chat: cannot create a pipe: {}", std::strerror(errno));
    g_wake_fd = pipe_[1];
    struct sigaction sa {};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, &old_);
  }
  ~SigintGuard() {
    sigaction(SIGINT, &old_, nullptr);
    g_wake_fd = -1;
    ::close(pipe_[0]);
    ::close(pipe_[1]);
  }
  SigintGuard(const SigintGuard&) = delete;
  SigintGuard& operator=(const SigintGuard&) = delete;
  int wake_fd() const { return pipe_[0]; }

 private:
  int pipe_[2] = {-1, -1};
  struct sigaction old_ {};
};

void emit(std::string_view bytes) {
  if ((!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), stdout) != bytes.size()) || std::fflush(stdout) != 0)
    fail("cannot write to standard output: {}", std::strerror(errno));
}

enum class Read { kLine, kEnd, kInterrupted };

/// Lines of standard input (read unbuffered by stdio, so that poll() sees what is pending), without their
/// line ends; kInterrupted once Ctrl-C has been pressed more often than `seen` times.
class LineReader {
 public:
  explicit LineReader(int wake_fd) : wake_fd_(wake_fd) {}
  Read next(std::string& line, int seen) {
    for (;;) {
      if (const size_t nl = buf_.find('\n'); nl != std::string::npos) {
        line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        return Read::kLine;
      }
      if (g_sigints.load() > seen) return Read::kInterrupted;
      if (eof_) {
        if (buf_.empty()) return Read::kEnd;
        line = std::move(buf_);
        buf_.clear();
        return Read::kLine;
      }
      pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        fail("chat: cannot wait for standard input: {}", std::strerror(errno));
      }
      if (fds[1].revents) {
        char drain[64];
        while (::read(wake_fd_, drain, sizeof drain) > 0) {
        }
      }
      if (fds[0].revents) {
        char chunk[4096];
        const ssize_t n = ::read(STDIN_FILENO, chunk, sizeof chunk);
        if (n < 0 && errno != EINTR && errno != EAGAIN) fail("chat: cannot read standard input: {}", std::strerror(errno));
        if (n == 0) eof_ = true;
        if (n > 0) buf_.append(chunk, static_cast<size_t>(n));
      }
    }
  }

 private:
  int wake_fd_;
  std::string buf_;
  bool eof_ = false;
};

}  // namespace

void add_chat_options(CLI::App& sub, ChatOptions& c) {
  sub.add_option("--chat-template", c.chat_template,
                 "Chat template: " + fmt::format("{}", fmt::join(chat::ChatTemplate::names(), ", ")) +
                     " (default: detected from the model's tokenizer.chat_template; chatml without one)")
      ->check(non_empty());
  sub.add_option("--system", c.system, "System message opening the conversation");
}

void run_chat(const RunOptions& o, const ChatOptions& c) {
  if (o.ctx < 0) fail("-c {} (expected >= 0; 0: min(4096, training context))", o.ctx);
  if (!c.chat_template.empty()) (void)chat::ChatTemplate::by_name(c.chat_template);  // a bad name fails first
  if (!o.dump_logits.empty() || !o.record_routing.empty())
    fail("--dump-logits and --record-routing are not available in chat mode");
  check_tier_files(o.tiers);
  GenerateParams gp = generate_params(o);
  gp.interrupt = &g_interrupt;
  // As llama.cpp's conversation mode: -p / -f is the system message when --system is not given.
  std::string system = c.system;
  if (system.empty() && !o.prompt_file.empty()) system = read_input_file(o.prompt_file, "prompt file");
  if (system.empty()) system = o.prompt;

  LoadedModel lm(o.model, {o.threads, o.no_mmap, o.tiers.any(), o.gemm_min_batch, true, c.chat_template});
  const chat::ChatTemplate& tmpl = *lm.tmpl;
  auto& model = lm.model;
  const auto& tok = lm.tok;
  const uint64_t metadata_bytes = lm.metadata_bytes;
  const int64_t n_ctx = resolve_context(model->hparams(), o.ctx);
  if (o.repeat_last_n == -1) gp.sampling.repeat_last_n = static_cast<int32_t>(n_ctx);
  auto tiers = setup_tiers(*model, o.tiers, RunShape{n_ctx, std::min<int64_t>(n_ctx, 512), metadata_bytes});
  Session session = allocate_kv_cache(model->hparams(), n_ctx, o.ctx > 0 ? fmt::format("-c {}", n_ctx) : "the default context",
                                      [&] { return Session(*model, tok, n_ctx); });
  warn_above_training_context(model->hparams(), n_ctx);
  chat::ChatSession chat(session, tok, tmpl, system);

  const bool tty = ::isatty(STDIN_FILENO) != 0;
  std::fprintf(stderr, "moetier: chat (template %s, context %lld); /exit or end of input leaves, Ctrl-C stops an answer\n",
               tmpl.name().c_str(), static_cast<long long>(n_ctx));
  SigintGuard guard;
  LineReader input(guard.wake_fd());
  int seen = g_sigints.load();  // Ctrl-C presses before the prompt (during an answer) do not leave
  std::string line;
  for (int turn = 1;;) {
    if (tty) emit("> ");
    const Read r = input.next(line, seen);
    if (r == Read::kInterrupted || r == Read::kEnd) {
      if (tty) emit("\n");
      break;
    }
    const size_t b = line.find_first_not_of(" \t\r"), e = line.find_last_not_of(" \t\r");
    if (b == std::string::npos) continue;  // an empty or blank line sends nothing
    if (line.substr(b, e - b + 1) == "/exit") break;
    g_interrupt.store(false);
    chat::TurnStats ts;
    try {
      ts = chat.turn(line, gp, [&](const std::string& piece) {
        if (!o.json) emit(piece);
      });
    } catch (const chat::TurnTooLong& err) {  // this message is refused; the conversation goes on
      std::fprintf(stderr, "moetier: %s; the message was not sent\n", err.what());
      continue;
    }
    seen = g_sigints.load();
    if (o.json) {
      nlohmann::json j;
      j["schema"] = "moetier.chat/1";
      j["turn"] = turn;
      j["prefill_tokens"] = ts.n_prefill;
      j["reused_tokens"] = ts.n_reused;
      j["discarded_tokens"] = ts.n_discarded;
      j["generated_tokens"] = ts.gen.n_generated;
      j["stop_reason"] = ts.gen.stop_reason;
      j["text"] = ts.answer;
      j["prefill_ids"] = ts.prefill;
      j["generated_ids"] = ts.gen.tokens;
      j["cache_tokens"] = chat.cached_tokens().size();
      j["timings"] = {{"prompt_ms", ts.gen.prompt_ms}, {"predicted_n", ts.gen.n_eval}, {"predicted_ms", ts.gen.gen_ms}};
      emit(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
    } else {
      emit("\n");
    }
    if (o.tiers.verbose)
      std::fprintf(stderr,
                   "moetier: turn %d: prefilled %d tokens (%d reused from the cache, %d discarded) in %.2f ms, "
                   "generated %d (%s), %.2f tokens per second\n",
                   turn, ts.n_prefill, ts.n_reused, ts.n_discarded, ts.gen.prompt_ms, ts.gen.n_generated,
                   ts.gen.stop_reason.c_str(), ts.gen.gen_tps());
    ++turn;
  }
}

void register_chat(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  auto c = std::make_shared<ChatOptions>();
  CLI::App* sub = app.add_subcommand("chat", "Interactive chat with a GGUF model (one line per message; /exit leaves)");
  add_run_options(*sub, *o);
  add_chat_options(*sub, *c);
  sub->callback([o, c, sub] {
    check_tier_options(o->tiers, [sub](const std::string& name) { return sub->count(name) > 0; }, false);
    run_chat(*o, *c);
  });
}

}  // namespace moetier::cli
