// `moetier serve`: an OpenAI-compatible HTTP server (runtime/server/) over one model, in llama-server's
// option spelling: -m, -c (the whole context, split evenly over the slots), -np/--parallel, -b, -t,
// --host, --port, --api-key, --alias, the tier options of `run`.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <pthread.h>
#include <string>
#include <thread>

#include "common/error.hpp"
#include "runtime/chat/chat_template.hpp"
#include "runtime/cli/commands.hpp"
#include "runtime/cli/context_size.hpp"
#include "runtime/cli/loaded_model.hpp"
#include "runtime/cli/option_checks.hpp"
#include "runtime/cli/tier_options.hpp"
#include "runtime/cli/weights_memory.hpp"
#include "runtime/gguf/gguf_model.hpp"
#include "runtime/models/model.hpp"
#include "runtime/server/batch_engine.hpp"
#include "runtime/server/http_server.hpp"
#include "runtime/tokenizer/tokenizer.hpp"
#include "scheduler/thread_pool.hpp"

namespace moetier::cli {
namespace {

struct ServeOptions {
  std::string model;
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string api_key;
  std::string alias;
  std::string chat_template;  // --chat-template NAME (empty: the model's)
  int parallel = 4;
  int64_t ctx = 0;
  int64_t batch = 512;
  int threads = 0;
  int queue = 64;
  bool no_mmap = false;
  int64_t gemm_min_batch = 32;
  TierOptions tiers;
};

bool loopback(const std::string& host) { return host == "127.0.0.1" || host == "localhost" || host == "::1"; }

std::string tier_metrics(const RunTiers& tiers) {
  std::string out;
  const auto metric = [&](const char* name, const char* type, const char* help, const std::string& labels, double v) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{}{} {}\n", name, help, name, type, name, labels, v);
  };
  if (tiers.streamed) {
    const auto t = tiers.streamed->cache()->total_stats();
    const auto d = tiers.streamed->total_demand();
    metric("moetier_expert_cache_hits_total", "counter", "Expert requests served from the DRAM cache.", "", static_cast<double>(d.hits));
    metric("moetier_expert_cache_prefetched_total", "counter", "Expert requests whose read a prefetch had started.", "",
           static_cast<double>(d.prefetched));
    metric("moetier_expert_cache_misses_total", "counter", "Expert requests that waited for a read.", "", static_cast<double>(d.misses));
    metric("moetier_tier_bytes_read_total", "counter", "Expert bytes read from a tier.", "{tier=\"nvme\"}", static_cast<double>(t.bytes_read));
  }
  if (tiers.device)
    metric("moetier_device_h2d_bytes_total", "counter", "Bytes copied host to device.", "",
           static_cast<double>(tiers.device->device().stats().h2d_bytes));
  return out;
}

server::HttpServer* g_server = nullptr;

void serve(const ServeOptions& o) {
  if (!o.chat_template.empty()) (void)chat::ChatTemplate::by_name(o.chat_template);  // a bad name fails first
  check_tier_files(o.tiers);
  // SIGINT / SIGTERM are taken by one thread (sigwait) that stops the server; every other thread,
  // the pool's and the engine's included, is started with them blocked.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  LoadedModel lm(o.model, {o.threads, o.no_mmap, o.tiers.any(), o.gemm_min_batch, true, o.chat_template});
  const chat::ChatTemplate& tmpl = *lm.tmpl;
  auto& model = lm.model;
  const auto& tok = lm.tok;
  const uint64_t metadata_bytes = lm.metadata_bytes;
  const int64_t n_ctx = resolve_context(model->hparams(), o.ctx);
  const int64_t per_slot = n_ctx / o.parallel;
  if (per_slot < 1) fail("-c {} is less than one position per slot (--parallel {})", n_ctx, o.parallel);
  check_kv_cache_fits(model->hparams(), per_slot * o.parallel, fmt::format("-c {} over {} slots", n_ctx, o.parallel));
  // The budget holds every slot's KV cache (per_slot x parallel positions) and the larger of a prompt chunk
  // and a decode batch.
  auto tiers = setup_tiers(*model, o.tiers, RunShape{per_slot * o.parallel, std::max<int64_t>(o.batch, o.parallel), metadata_bytes});
  warn_above_training_context(model->hparams(), per_slot);

  server::EngineOptions eo;
  eo.n_parallel = o.parallel;
  eo.n_ctx_slot = per_slot;
  eo.n_batch = o.batch;
  eo.max_queue = o.queue;
  server::BatchEngine engine(*model, tok, eo);

  server::ServerConfig sc;
  sc.host = o.host;
  sc.port = o.port;
  sc.api_key = o.api_key;
  sc.model_id = o.alias.empty() ? std::filesystem::path(o.model).filename().string() : o.alias;
  // A request in a slot or the queue holds its HTTP thread until its response ends; 8 more threads answer
  // /health, /metrics, the 503s of a full queue and idle keep-alive connections meanwhile.
  sc.http_threads = std::min(o.parallel + o.queue + 8, 1024);
  sc.render_chat = [&tmpl](const std::vector<server::Message>& msgs) {
    std::vector<chat::ChatMessage> m;
    for (const auto& x : msgs) m.push_back({x.role, x.content});
    try {
      return tmpl.render(m, true);
    } catch (const Error& e) {  // the family's own rules (e.g. alternating roles): the request's fault
      throw server::ApiError(400, e.what(), "messages");
    }
  };
  sc.template_bos = tmpl.tokens().bos;
  sc.extra_metrics = [&tiers] { return tier_metrics(tiers); };
  server::HttpServer http(engine, tok, sc);
  http.bind();
  if (!loopback(o.host) && o.api_key.empty())
    std::fprintf(stderr, "moetier: WARNING: listening on %s without --api-key: anyone who can reach this address can "
                         "use the model\n", o.host.c_str());
  std::fprintf(stderr, "moetier: serving %s on http://%s:%d (%d slots x %lld tokens of context, chat template %s)\n",
               sc.model_id.c_str(), o.host.c_str(), http.bound_port(), o.parallel, static_cast<long long>(per_slot),
               tmpl.name().c_str());
  g_server = &http;
  std::atomic<bool> served{false};
  std::thread waiter([&stop_signals, &engine, &served] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    if (served) return;  // serve() returned on its own; this signal only releases the waiter
    // Every request ends with an error event (streams: then [DONE]) before the connections close: cancel
    // them, give the HTTP workers a moment to write that, then stop. A second signal exits at once.
    engine.cancel_all();
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (std::chrono::steady_clock::now() < until) {
      const auto st = engine.stats();
      if (st.active == 0 && st.queued == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    if (g_server) g_server->stop();
    std::thread([sigs = stop_signals] {
      int again = 0;
      sigwait(&sigs, &again);
      std::fprintf(stderr, "moetier: second signal: exiting without waiting for open connections\n");
      std::_Exit(1);
    }).detach();
  });
  http.serve();
  served = true;
  g_server = nullptr;
  pthread_kill(waiter.native_handle(), SIGTERM);  // releases the waiter if no signal came
  waiter.join();
  std::fprintf(stderr, "moetier: server stopped\n");
}

}  // namespace

void register_serve(CLI::App& app) {
  auto o = std::make_shared<ServeOptions>();
  CLI::App* sub = app.add_subcommand("serve", "OpenAI-compatible HTTP server (chat completions, completions, models, metrics)");
  sub->add_option("-m,--model", o->model, "GGUF model file (first part of a split model)")->required();
  sub->add_option("--host", o->host, "Address to listen on (default 127.0.0.1; another address needs --api-key to be safe)")
      ->check(non_empty());
  sub->add_option("--port", o->port, "TCP port (0: any free port, printed at start)")->check(in_range(0, 65535));
  sub->add_option("--api-key", o->api_key, "Require 'Authorization: Bearer KEY' on every endpoint but /health");
  sub->add_option("--chat-template", o->chat_template,
                  "Chat template family for /v1/chat/completions (default: detected from the model; see `moetier chat --help`)")
      ->check(non_empty());
  sub->add_option("--alias", o->alias, "Model id in /v1/models and the responses (default: the file name)");
  sub->add_option("--parallel", o->parallel, "Sequences decoded together (slots; also -np); -c is split evenly over them")
      ->check(in_range(1, 256));
  sub->add_option("-c,--ctx-size", o->ctx, "Context of all slots together, in tokens (0: min(4096, training context))")
      ->check(in_range(0, std::numeric_limits<int32_t>::max(), "0: min(4096, training context)"));
  sub->add_option("-b,--batch-size", o->batch, "Prompt tokens prefilled per step (a longer prompt is chunked)")
      ->check(in_range(1, 1 << 20));
  sub->add_option("-t,--threads", o->threads, "Worker threads (0: one per allowed physical core)")
      ->check(in_range(0, 65536, "0: one per allowed physical core"));
  sub->add_option("--queue", o->queue, "Requests that may wait for a slot before new ones get 503")->check(in_range(0, 1 << 20));
  sub->add_flag("--no-mmap", o->no_mmap, "Copy the weights into memory on 2 MiB pages (as `run --no-mmap`)");
  sub->add_option("--gemm-min-batch", o->gemm_min_batch, "As `run` (prompt prefill only; decode steps never take the GEMM)")
      ->check(in_range(0, std::numeric_limits<int32_t>::max(), "0: never"));
  add_tier_options(*sub, o->tiers);
  sub->callback([o, sub] {
    check_tier_options(o->tiers, [sub](const std::string& name) { return sub->count(name) > 0; }, false);
    serve(*o);
  });
}

}  // namespace moetier::cli
