// `moetier chat` (and `moetier run --chat`, alias -cnv as llama.cpp): an interactive chat in the terminal.
// One line of standard input is one user message; the answer streams to standard output. The KV cache
// keeps the conversation, so a turn prefills only its new tokens (runtime/chat/chat_session.hpp).
// Ctrl-C stops the answer being generated; Ctrl-C at the prompt, `/exit` or end of input leaves.
// -v prints each turn's token counts and speeds on stderr; --json prints one JSON line per turn instead
// of the streamed text.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "common/error.hpp"
#include "common/file_io.hpp"
#include "runtime/chat/chat_session.hpp"
#include "runtime/chat/chat_template.hpp"
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

std::atomic<bool> g_interrupt{false};
static_assert(std::atomic<bool>::is_always_lock_free, "the SIGINT handler stores to it");

extern "C" void on_sigint(int) { g_interrupt.store(true, std::memory_order_relaxed); }

/// Installs on_sigint for SIGINT without SA_RESTART, so that Ctrl-C also interrupts the read at the prompt.
/// The previous action comes back on destruction.
class SigintGuard {
 public:
  SigintGuard() {
    struct sigaction sa {};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    sigaction(SIGINT, &sa, &old_);
  }
  ~SigintGuard() { sigaction(SIGINT, &old_, nullptr); }
  SigintGuard(const SigintGuard&) = delete;
  SigintGuard& operator=(const SigintGuard&) = delete;

 private:
  struct sigaction old_ {};
};

void emit(std::string_view bytes) {
  if ((!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), stdout) != bytes.size()) || std::fflush(stdout) != 0)
    fail("cannot write to standard output: {}", std::strerror(errno));
}

enum class Read { kLine, kEnd, kInterrupted };

/// One line of standard input, without its line end.
Read read_line(std::string& line) {
  line.clear();
  for (;;) {
    errno = 0;
    const int c = std::fgetc(stdin);
    if (c == EOF) {
      if (g_interrupt.load() || errno == EINTR) {
        std::clearerr(stdin);
        return Read::kInterrupted;
      }
      return line.empty() ? Read::kEnd : Read::kLine;
    }
    if (c == '\n') break;
    line.push_back(static_cast<char>(c));
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return Read::kLine;
}

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
  GenerateParams gp;
  gp.n_predict = o.n_predict;
  gp.sampling.temperature = o.temp;
  gp.sampling.top_k = o.top_k;
  gp.sampling.top_p = o.top_p;
  gp.sampling.min_p = o.min_p;
  gp.sampling.repeat_penalty = o.repeat_penalty;
  gp.sampling.repeat_last_n = o.repeat_last_n;
  if (o.seed >= 0) gp.sampling.seed = static_cast<uint64_t>(o.seed);
  gp.stop_at_eog = !o.ignore_eos;
  gp.interrupt = &g_interrupt;
  (void)sampling::Sampler(gp.sampling);  // throws Error for invalid sampling parameters
  // As llama.cpp's conversation mode: -p / -f is the system message when --system is not given.
  std::string system = c.system;
  if (system.empty() && !o.prompt_file.empty()) system = read_input_file(o.prompt_file, "prompt file");
  if (system.empty()) system = o.prompt;

  sched::ThreadPoolOptions po;
  po.n_threads = o.threads;
  sched::configure_global_pool(po);
  const uint64_t rss_before_model = tiered::current_rss_bytes();
  if (o.no_mmap && o.tiers.any())
    fail("--no-mmap copies the whole model into memory; it cannot be combined with the tier options");
  auto g = gguf::GgufModel::open(o.model);
  const auto tmpl = chat::ChatTemplate::for_model(g, c.chat_template);
  if (o.no_mmap) copy_weights_to_memory(g);
  auto model = models::load_model(g);
  model->set_gemm_min_tokens(o.gemm_min_batch);
  const auto tok = tokenizer::Tokenizer::from_gguf(g);
  const uint64_t metadata_bytes = std::max(tiered::current_rss_bytes(), rss_before_model) - rss_before_model;
  if (tok.n_vocab() != model->hparams().n_vocab)
    fail("{}: tokenizer has {} tokens but the model's vocabulary is {}", o.model, tok.n_vocab(), model->hparams().n_vocab);
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
  std::string line;
  for (int turn = 1;; ) {
    if (tty) emit("> ");
    g_interrupt.store(false);
    const Read r = read_line(line);
    if (r == Read::kInterrupted || r == Read::kEnd) {
      if (tty) emit("\n");
      break;
    }
    if (line == "/exit") break;
    if (line.empty()) continue;
    g_interrupt.store(false);
    const chat::TurnStats ts = chat.turn(line, gp, [&](const std::string& piece) {
      if (!o.json) emit(piece);
    });
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
