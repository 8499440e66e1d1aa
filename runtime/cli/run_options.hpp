// Options of `moetier run` (and the shared model / sampling options of `bench` and `profile`), in
// llama.cpp's spelling.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/cli/tier_options.hpp"

namespace CLI {
class App;
}

namespace moetier::cli {

struct RunOptions {
  std::string model;             // -m
  std::string prompt;            // -p
  std::string prompt_file;       // -f
  int32_t n_predict = 128;       // -n (-1: until EOS or the context is full; < -1 is refused)
  int64_t ctx = 0;               // -c (0: min(4096, training context))
  int threads = 0;               // -t (0: one per allowed physical core)
  float temp = 0.8f;             // --temp (0: greedy)
  int32_t top_k = 40;
  float top_p = 0.95f;
  float min_p = 0.05f;
  float repeat_penalty = 1.0f;
  int32_t repeat_last_n = 64;    // --repeat-last-n (0: off, -1: the context size, as llama.cpp)
  int64_t seed = -1;             // -1: random
  bool ignore_eos = false;
  bool display_prompt = true;
  bool json = false;
  std::string dump_logits;
  std::string record_routing;  // --record-routing FILE (JSONL)
  int64_t gemm_min_batch = 32;  // --gemm-min-batch (0: never; see sched::LinearExec::batch)
  bool no_mmap = false;         // --no-mmap: weights copied onto 2 MiB pages (weights_memory.hpp)
  TierOptions tiers;
};

/// Adds the options above to `sub` (CLI11), bound to `o`.
void add_run_options(CLI::App& sub, RunOptions& o);

}  // namespace moetier::cli
