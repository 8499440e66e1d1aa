// The report of `moetier inspect` (and `moetier synth --dry-run`): architecture, hyper-parameters,
// type histogram, size breakdown, decode bytes per token and KV-cache bytes per token. Built once as
// JSON (schema "moetier.inspect/1", documented in docs/inspect-json.md); the human-readable text is
// rendered from that JSON, so the two never disagree.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/gguf/gguf_file.hpp"
#include "runtime/gguf/gguf_value.hpp"

namespace moetier::cli {

/// What the report is computed from: a parsed GGUF model, or a synth model not yet written.
struct InspectInput {
  std::string file;        // path shown in the report
  uint32_t gguf_version = 0;  // 0: not a file yet (synth --dry-run)
  size_t n_files = 1;
  const gguf::Metadata* metadata = nullptr;
  const std::vector<gguf::TensorInfo>* tensors = nullptr;
};

/// Builds the report. An architecture moetier cannot run is reported (architecture_supported false,
/// hparams null); a recognised architecture whose hyper-parameters break a rule of
/// runtime/models/hparams_check.hpp (among themselves or against the tensor shapes) throws Error naming
/// the key / tensor, as `run` does; so does a tokenizer key that check_token_metadata rejects
/// (runtime/tokenizer/vocab.hpp), for any architecture.
nlohmann::ordered_json inspect_report(const InspectInput& in);

/// Human-readable rendering of inspect_report's JSON (GiB / MiB units, exact byte counts alongside).
std::string inspect_text(const nlohmann::ordered_json& report);

}  // namespace moetier::cli
