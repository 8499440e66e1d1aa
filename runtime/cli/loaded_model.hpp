// What `run`, `chat` and `serve` open before they generate: the GGUF (mapped, or copied onto 2 MiB
// pages with --no-mmap), the model, its tokenizer, and the resident bytes opening them took (counted in
// --ram-budget). Also the sampling and stopping parameters of `run`'s options.
#pragma once

#include <cstdint>
#include <optional>
#include <memory>
#include <string>

#include "runtime/chat/chat_template.hpp"
#include "runtime/cli/run_options.hpp"
#include "runtime/gguf/gguf_model.hpp"
#include "runtime/models/model.hpp"
#include "runtime/session/session.hpp"
#include "runtime/tokenizer/tokenizer.hpp"

namespace moetier::cli {

struct LoadOptions {
  int threads = 0;               // -t: the global pool is configured with it first (0: one per core)
  bool no_mmap = false;          // --no-mmap (Error with tier options: they keep part of the model elsewhere)
  bool tiers = false;            // a tier option was given
  int64_t gemm_min_batch = 32;   // --gemm-min-batch
  /// chat / serve: the model's chat template (--chat-template NAME forces one) is read once the file is
  /// open, before the --no-mmap copy and the model load, so a template error comes before the long part.
  bool chat = false;
  std::string chat_template;
  bool configure_pool = true;    // false: the caller configured the global pool already (profile)
};

/// Opens `path` and loads it. Errors (one line, naming the file): --no-mmap with tier options, any load
/// error, a tokenizer whose size is not the model's vocabulary. Neither copyable nor movable: the model
/// refers to the GGUF.
class LoadedModel {
 public:
  LoadedModel(const std::string& path, const LoadOptions& o);
  LoadedModel(const LoadedModel&) = delete;
  LoadedModel& operator=(const LoadedModel&) = delete;

  // Set while `g` is initialised (open_model), so it is declared, and initialised, before it.
 private:
  uint64_t rss_before_ = 0;

 public:
  std::optional<chat::ChatTemplate> tmpl;  // with LoadOptions::chat
  gguf::GgufModel g;
  std::unique_ptr<models::Model> model;
  tokenizer::Tokenizer tok;
  uint64_t metadata_bytes = 0;  // resident bytes of the metadata, tokenizer and header pages
};

/// GenerateParams of `run`'s options (-n, --temp, --top-k, --top-p, --min-p, --repeat-penalty,
/// --repeat-last-n, --seed, --ignore-eos); Error for invalid sampling parameters.
GenerateParams generate_params(const RunOptions& o);

}  // namespace moetier::cli
