#include "runtime/cli/run_options.hpp"

#include <CLI/CLI.hpp>

namespace moetier::cli {

void add_run_options(CLI::App& sub, RunOptions& o) {
  sub.add_option("-m,--model", o.model, "GGUF model file (first part of a split model)")->required();
  auto* p = sub.add_option("-p,--prompt", o.prompt, "Prompt text");
  auto* f = sub.add_option("-f,--file", o.prompt_file, "Read the prompt from a file");
  p->excludes(f);
  sub.add_option("-n,--n-predict", o.n_predict, "Tokens to generate (-1: until EOS or the context is full)");
  sub.add_option("-c,--ctx-size", o.ctx, "Context size in tokens (0: min(4096, training context))");
  sub.add_option("-t,--threads", o.threads, "Worker threads (0: one per allowed physical core)");
  sub.add_option("--gemm-min-batch", o.gemm_min_batch,
                 "Batch (tokens per expert, or per dense FFN) from which prefill dequantises weights and runs a "
                 "oneDNN f32 GEMM, as llama.cpp's BLAS backend does; 0: never (ggml CPU-backend numerics)")
      ->check(CLI::NonNegativeNumber);
  sub.add_option("--temp", o.temp, "Temperature (0: greedy)");
  sub.add_option("--top-k", o.top_k, "Top-k sampling (0: off)");
  sub.add_option("--top-p", o.top_p, "Top-p sampling (1: off)");
  sub.add_option("--min-p", o.min_p, "Min-p sampling (0: off)");
  sub.add_option("--repeat-penalty", o.repeat_penalty, "Repetition penalty (1: off)");
  sub.add_option("--repeat-last-n", o.repeat_last_n, "Tokens the repetition penalty looks back on");
  sub.add_option("-s,--seed", o.seed, "Sampling seed (-1: random)");
  sub.add_flag("--ignore-eos", o.ignore_eos, "Keep generating after an end-of-generation token");
  sub.add_flag("!--no-display-prompt", o.display_prompt, "Do not echo the prompt");
  sub.add_flag("--json", o.json, "Print one JSON result (schema moetier.run/1) instead of streaming text");
  sub.add_option("--dump-logits", o.dump_logits, "Write the last prompt position's logits (raw f32 [n_vocab])");
  sub.add_option("--record-routing", o.record_routing, "Write the run's routing trace (JSONL: layer, pos, experts, weights)");
  add_tier_options(sub, o.tiers);
}

}  // namespace moetier::cli
