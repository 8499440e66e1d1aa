#include "runtime/cli/run_options.hpp"

#include <CLI/CLI.hpp>

#include <limits>

#include "runtime/cli/option_checks.hpp"

namespace moetier::cli {

void add_run_options(CLI::App& sub, RunOptions& o) {
  constexpr long double kMaxI32 = std::numeric_limits<int32_t>::max();
  sub.add_option("-m,--model", o.model, "GGUF model file (first part of a split model)")->required();
  auto* p = sub.add_option("-p,--prompt", o.prompt, "Prompt text");
  auto* f = sub.add_option("-f,--file", o.prompt_file, "Read the prompt from a file (a regular file)")->check(non_empty());
  p->excludes(f);
  sub.add_option("-n,--n-predict", o.n_predict, "Tokens to generate (-1: until EOS or the context is full)")
      ->check(in_range(-1, kMaxI32, "-1: until end of generation or a full context"));
  sub.add_option("-c,--ctx-size", o.ctx, "Context size in tokens (0: min(4096, training context))")
      ->check(in_range(0, kMaxI32, "0: min(4096, training context)"));
  sub.add_option("-t,--threads", o.threads, "Worker threads (0: one per allowed physical core)")
      ->check(in_range(0, 65536, "0: one per allowed physical core"));
  sub.add_flag("--no-mmap", o.no_mmap,
               "Copy the weights into memory on 2 MiB pages instead of mapping the file (as llama.cpp's --no-mmap; "
               "faster decode, the file's page cache is dropped behind the copy); not with the tier options");
  sub.add_option("--gemm-min-batch", o.gemm_min_batch,
                 "Batch (tokens per expert, or per dense FFN) from which prefill dequantises weights and runs a "
                 "oneDNN f32 GEMM, as llama.cpp's BLAS backend does (not for Q4_K / Q5_K on AMX CPUs, whose exact int8 tiles "
                 "are faster); 0: never (ggml CPU-backend numerics)")
      ->check(in_range(0, kMaxI32, "0: never"));
  sub.add_option("--temp", o.temp, "Temperature (<= 0: greedy)")
      ->check(finite_at_least<float>(-std::numeric_limits<long double>::infinity()));
  sub.add_option("--top-k", o.top_k, "Top-k sampling (0: off)")->check(in_range(0, kMaxI32, "0: off"));
  sub.add_option("--top-p", o.top_p, "Top-p sampling (1: off)")->check(in_range<float>(0, 1));  // 0 is refused by the sampler
  sub.add_option("--min-p", o.min_p, "Min-p sampling (0: off)")->check(in_range<float>(0, 1));
  sub.add_option("--repeat-penalty", o.repeat_penalty, "Repetition penalty (1: off)")->check(finite_at_least<float>(0));
  sub.add_option("--repeat-last-n", o.repeat_last_n, "Tokens the repetition penalty looks back on (0: off, -1: the context size)")
      ->check(in_range(-1, kMaxI32, "0: off, -1: the context size"));
  sub.add_option("-s,--seed", o.seed, "Sampling seed (-1: random)")
      ->check(in_range(-1, static_cast<long double>(std::numeric_limits<int64_t>::max()), "-1: random"));
  sub.add_flag("--ignore-eos", o.ignore_eos, "Keep generating after an end-of-generation token");
  sub.add_flag("!--no-display-prompt", o.display_prompt, "Do not echo the prompt");
  sub.add_flag("--json", o.json, "Print one JSON result (schema moetier.run/1) instead of streaming text");
  sub.add_option("--dump-logits", o.dump_logits, "Write the last prompt position's logits (raw f32 [n_vocab])")
      ->check(non_empty());
  sub.add_option("--record-routing", o.record_routing, "Write the run's routing trace (JSONL: layer, pos, experts, weights)")
      ->check(non_empty());
  add_tier_options(sub, o.tiers);
}

}  // namespace moetier::cli
