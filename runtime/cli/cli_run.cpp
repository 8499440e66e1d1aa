// `moetier run`: generate text from a GGUF model, in llama.cpp's CLI conventions
// (-m -p/-f -n -c -t --temp --top-k --top-p --min-p --repeat-penalty --seed). Tokens stream to stdout;
// timings go to stderr at the end as llama.cpp prints them; --json prints one machine-readable result;
// --dump-logits writes the last prompt position's logits as raw little-endian f32 [n_vocab].
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "common/error.hpp"
#include "common/file_io.hpp"
#include "runtime/cli/chat_options.hpp"
#include "runtime/cli/commands.hpp"
#include "offload/routing_trace.hpp"
#include "runtime/cli/context_size.hpp"
#include "runtime/cli/loaded_model.hpp"
#include "runtime/cli/option_checks.hpp"
#include "runtime/cli/run_options.hpp"
#include "runtime/cli/weights_memory.hpp"
#include "runtime/gguf/gguf_model.hpp"
#include "runtime/models/model.hpp"
#include "runtime/session/session.hpp"
#include "runtime/tokenizer/tokenizer.hpp"
#include "scheduler/thread_pool.hpp"

namespace moetier::cli {
namespace {

/// Writes `bytes` to stdout and flushes; a write error (full disk, closed pipe) stops the run with an
/// Error instead of generating into the void.
void emit(std::string_view bytes) {
  if ((!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), stdout) != bytes.size()) || std::fflush(stdout) != 0)
    fail("cannot write to standard output: {}", std::strerror(errno));
}

void print_timings(const GenerateStats& st) {
  auto line = [](const char* what, double ms, int n, const char* unit) {
    std::fprintf(stderr, "moetier: %16s = %10.2f ms / %5d %-6s (%8.2f ms per token, %8.2f tokens per second)\n", what,
                 ms, n, unit, n ? ms / n : 0.0, ms > 0 ? n * 1000.0 / ms : 0.0);
  };
  line("prompt eval time", st.prompt_ms, st.n_prompt, "tokens");
  line("eval time", st.gen_ms, st.n_eval, "runs");
}

/// Throws Error when `prompt` is certainly longer than `n_ctx` tokens, without tokenising it (a 50 MB
/// prompt file takes tens of seconds and gigabytes to encode): no token stands for more bytes of the
/// prompt than its piece has, so a prompt of more than n_ctx x (longest piece) bytes needs more than
/// n_ctx tokens. A small margin covers normalisation (SentencePiece's added leading space).
void refuse_prompt_that_cannot_fit(const tokenizer::Tokenizer& tok, const std::string& prompt, int64_t n_ctx) {
  constexpr uint64_t kMarginBytes = 64;
  // Every piece has at least one byte, so a prompt this short always passes: skip the vocabulary scan.
  if (prompt.size() <= static_cast<uint64_t>(n_ctx) + kMarginBytes) return;
  size_t longest = 1;
  for (int32_t id = 0; id < tok.n_vocab(); ++id) longest = std::max(longest, tok.piece(id, true).size());
  const uint64_t most = static_cast<uint64_t>(n_ctx) * longest + kMarginBytes;
  if (prompt.size() > most)
    fail("prompt is {} bytes: longer than the context of {} tokens can hold (at most {} bytes, with the "
         "vocabulary's longest token of {} bytes; -c {})",
         prompt.size(), n_ctx, most, longest, n_ctx);
}

void run(const RunOptions& o) {
  // Everything that can be checked without the model is checked first: a bad option must not cost the
  // minutes of opening a large model, nor leave the echoed prompt on stdout.
  if (o.ctx < 0) fail("-c {} (expected >= 0; 0: min(4096, training context))", o.ctx);
  // Files: inputs must be regular files, outputs absent or regular files (common/file_io.hpp).
  if (!o.dump_logits.empty()) check_output_file(o.dump_logits, "logits (--dump-logits)");
  if (!o.record_routing.empty()) check_output_file(o.record_routing, "routing trace (--record-routing)");
  check_tier_files(o.tiers);
  {
    std::vector<NamedFile> inputs;
    for (const auto& part : model_part_paths(o.model)) inputs.push_back({"-m", part});
    inputs.push_back({"-f", o.prompt_file});
    inputs.push_back({"--plan", o.tiers.plan});
    inputs.push_back({"--trace", o.tiers.trace});
    check_distinct_files(inputs, {{"--dump-logits", o.dump_logits},
                                  {"--record-routing", o.record_routing},
                                  {"--save-plan", o.tiers.save_plan}});
  }
  GenerateParams gp = generate_params(o);
  std::string prompt = o.prompt;
  if (!o.prompt_file.empty()) prompt = read_input_file(o.prompt_file, "prompt file");

  LoadedModel lm(o.model, {o.threads, o.no_mmap, o.tiers.any(), o.gemm_min_batch});
  auto& model = lm.model;
  const auto& tok = lm.tok;
  const uint64_t metadata_bytes = lm.metadata_bytes;

  const int64_t n_ctx = resolve_context(model->hparams(), o.ctx);  // Error when its KV cache cannot fit
  refuse_prompt_that_cannot_fit(tok, prompt, n_ctx);
  const std::vector<int32_t> tokens = tok.encode(prompt, true, true);
  if (o.repeat_last_n == -1) gp.sampling.repeat_last_n = static_cast<int32_t>(n_ctx);  // llama.cpp: -1 = context
  if (static_cast<int64_t>(tokens.size()) > n_ctx)
    fail("prompt is {} tokens, longer than the context of {} (-c {})", tokens.size(), n_ctx, n_ctx);

  auto tiers = setup_tiers(*model, o.tiers, RunShape{n_ctx, static_cast<int64_t>(tokens.size()), metadata_bytes});

  std::unique_ptr<offload::RoutingTraceWriter> trace;
  if (!o.record_routing.empty()) trace = std::make_unique<offload::RoutingTraceWriter>(o.record_routing);
  const auto record = [&](int64_t pos0, const std::vector<models::RoutingRecord>& layers) {
    const size_t k = static_cast<size_t>(model->hparams().n_expert_used);
    for (size_t il = 0; il < layers.size(); ++il) {
      const auto& r = layers[il];
      if (r.ids.empty()) continue;
      const size_t n_rows = r.ids.size() / k;
      // The last layer of a prefill routes only the last token (the one whose logits are wanted): the
      // record says which token of the batch its first row is.
      const int64_t first_pos = pos0 + r.first_token;
      for (size_t t = 0; t < n_rows; ++t) {
        offload::RoutingRecord rec;
        rec.layer = static_cast<int32_t>(il);
        rec.pos = static_cast<int32_t>(first_pos + static_cast<int64_t>(t));
        rec.experts.assign(r.ids.begin() + static_cast<long>(t * k), r.ids.begin() + static_cast<long>((t + 1) * k));
        rec.weights.assign(r.weights.begin() + static_cast<long>(t * k), r.weights.begin() + static_cast<long>((t + 1) * k));
        trace->write(rec);
      }
    }
  };

  Session session = allocate_kv_cache(model->hparams(), n_ctx, o.ctx > 0 ? fmt::format("-c {}", n_ctx) : "the default context",
                                      [&] { return Session(*model, tok, n_ctx); });
  warn_above_training_context(model->hparams(), n_ctx);
  std::string text;
  if (!o.json && o.display_prompt) emit(prompt);
  std::vector<float> last_logits;
  const GenerateStats st = session.generate(
      tokens, gp,
      [&](const std::string& piece) {
        text += piece;
        if (!o.json) emit(piece);
      },
      o.dump_logits.empty() ? nullptr : &last_logits, trace ? std::function(record) : nullptr);
  if (trace) trace->close();
  if (!o.json) emit("\n");

  if (!o.dump_logits.empty())
    write_output_file(o.dump_logits,
                      std::string_view(reinterpret_cast<const char*>(last_logits.data()), last_logits.size() * sizeof(float)),
                      "logits (--dump-logits)");
  if (o.json) {
    nlohmann::json j;
    j["schema"] = "moetier.run/1";
    j["model"] = o.model;
    j["prompt"] = prompt;
    j["prompt_tokens"] = tokens;
    j["generated_tokens"] = st.tokens;
    j["text"] = text;
    j["stop_reason"] = st.stop_reason;
    j["timings"] = {{"prompt_n", st.n_prompt}, {"prompt_ms", st.prompt_ms}, {"prompt_tokens_per_s", st.prompt_tps()},
                    {"predicted_n", st.n_eval}, {"predicted_ms", st.gen_ms}, {"predicted_tokens_per_s", st.gen_tps()}};
    j["threads"] = sched::global_pool().size();
    j["prefill_gemm"] = {{"min_batch", o.gemm_min_batch}, {"matmuls", model->prefill_gemm_matmuls()}};
    if (tiers.streamed) {
      const auto t = tiers.streamed->cache()->total_stats();
      const auto d = tiers.streamed->total_demand();
      const auto& ps = model->prediction_stats();
      j["expert_cache"] = {{"requests", d.requests()}, {"hits", d.hits}, {"prefetched", d.prefetched}, {"misses", d.misses},
                           {"bytes_read", t.bytes_read}, {"stall_ms", t.stall_ns / 1e6}, {"evictions", t.evictions},
                           {"prefetch_predicted", ps.predicted}, {"prefetch_correct", ps.correct}};
    }
    if (tiers.device) {
      auto& dev = tiers.device->device();
      const auto b = dev.stats();
      const auto c = model->executor().cpu_stats();
      j["device"] = {{"name", dev.name()},
                     {"capacity_bytes", dev.capacity_bytes()},
                     {"used_bytes", dev.used_bytes()},
                     {"placed_experts", tiers.device->placement().n_experts},
                     {"placed_ffns", tiers.device->placement().n_shared},
                     {"h2d_bytes", b.h2d_bytes},
                     {"device_groups", b.groups},
                     {"device_busy_ms", b.busy_ns / 1e6},
                     {"cpu_groups", c.groups},
                     {"cpu_busy_ms", c.busy_ns / 1e6}};
      if (const auto* sl = tiers.device->slots())
        j["device"]["dynamic_slots"] = {{"hit_rate", sl->stats().hit_rate()}, {"placed", sl->stats().placed},
                                        {"evicted", sl->stats().evicted}, {"bytes_copied", sl->stats().bytes_copied}};
    }
    emit(j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  }
  print_timings(st);
  if (tiers.device) {
    if (o.tiers.verbose) std::fprintf(stderr, "moetier: %s", tiers.device->stats_report().c_str());
    const auto b = tiers.device->device().stats();
    const auto c = model->executor().cpu_stats();
    std::fprintf(stderr, "moetier: device %s: %llu groups (busy %.1f ms), cpu %llu groups (busy %.1f ms), %.1f MB copied host->device\n",
                 tiers.device->device().name().c_str(), static_cast<unsigned long long>(b.groups), b.busy_ns / 1e6,
                 static_cast<unsigned long long>(c.groups), c.busy_ns / 1e6, b.h2d_bytes / 1e6);
  }
  if (tiers.streamed) {
    const auto t = tiers.streamed->cache()->total_stats();
    const auto d = tiers.streamed->total_demand();
    const uint64_t req = d.requests();
    const auto& ps = model->prediction_stats();
    if (o.tiers.verbose) std::fprintf(stderr, "moetier: %s", tiers.streamed->stats_report().c_str());
    std::fprintf(stderr,
                 "moetier: expert cache: %llu requests, %.1f%% hits, %.1f%% prefetched, %.1f%% misses, %.1f MB read, "
                 "stalled %.1f ms; next-layer prediction %.1f%% right\n",
                 static_cast<unsigned long long>(req), req ? 100.0 * d.hits / req : 0.0,
                 req ? 100.0 * d.prefetched / req : 0.0, req ? 100.0 * d.misses / req : 0.0, t.bytes_read / 1e6,
                 t.stall_ns / 1e6,
                 ps.predicted ? 100.0 * ps.correct / ps.predicted : 0.0);
  }
}

}  // namespace

void register_run(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  auto c = std::make_shared<ChatOptions>();
  CLI::App* sub = app.add_subcommand("run", "Generate text from a GGUF model");
  add_run_options(*sub, *o);
  sub->add_flag("--chat,--conversation", c->chat,
                "Interactive chat (as `moetier chat`; -cnv too, as llama.cpp); -p / -f is then the system message");
  add_chat_options(*sub, *c);
  sub->callback([o, c, sub] {
    check_tier_options(o->tiers, [sub](const std::string& name) { return sub->count(name) > 0; }, false);
    if (c->chat) return run_chat(*o, *c);
    if (!c->chat_template.empty() || !c->system.empty()) fail("--chat-template and --system need --chat");
    run(*o);
  });
}

}  // namespace moetier::cli
