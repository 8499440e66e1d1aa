// `moetier synth`: a complete, valid GGUF model of a preset architecture (llama.cpp's tensor names,
// shapes and metadata keys as its converters write them) with seeded random weights, written in chunks
// so that a 20 GB file costs about what writing 20 GB costs.
// Weight types: 2-D+ `.weight` tensors get the requested type, except the router (ffn_gate_inp) and 1-D
// tensors, which stay F32 as llama-quantize leaves them; a tensor whose rows do not divide into the
// type's blocks falls back as llama-quantize does (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, other
// 32-blocks -> F16). MXFP4 (gpt-oss's expert format) applies to routed experts only; the other
// matrices are then Q8_0; so do the 1-3-bit IQ types (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, as
// in the low-bit DeepSeek-R1 files), which fall back to IQ4_NL for rows not a multiple of 256 (IQ4_XS too).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "common/ggml_type.hpp"
#include "runtime/gguf/gguf_file.hpp"
#include "runtime/gguf/gguf_value.hpp"
#include "runtime/gguf/gguf_writer.hpp"
#include "runtime/synth/synth_fill.hpp"
#include "runtime/synth/synth_presets.hpp"

namespace moetier::synth {

struct SynthOptions {
  std::string preset;               // preset name (see all_presets())
  GgmlType type = GgmlType::F32;    // weight type (see can_synthesize)
  std::string vocab_from;           // GGUF whose tokenizer.* keys are copied; "" = self-made vocabulary
  uint64_t seed = 0;
};

/// One tensor of the model: name, type, shape outermost first, and how its values are drawn.
struct SynthTensor {
  std::string name;
  GgmlType type = GgmlType::F32;
  std::vector<int64_t> shape;
  ValueKind kind = ValueKind::Weight;
  float scale = 1.0f;  // std of Weight values
  uint64_t n_bytes = 0;
};

/// Everything that goes into the file, before any weight is drawn.
struct SynthModel {
  Preset preset;
  GgmlType type = GgmlType::F32;
  uint64_t seed = 0;
  std::vector<std::pair<std::string, gguf::Value>> metadata;  // in file order
  std::vector<SynthTensor> tensors;                          // in file order

  /// The metadata as a reader sees it (for load_hparams / inspect without writing the file).
  gguf::Metadata metadata_map() const;
  /// Tensor list as parse_gguf would report it (offsets left 0).
  std::vector<gguf::TensorInfo> tensor_infos() const;
  /// Sum of tensor bytes.
  uint64_t tensor_bytes() const;
  /// A writer holding the metadata and tensor list (no bytes drawn yet).
  gguf::GgufWriter make_writer() const;
  /// The fill callback for GgufWriter::write / to_bytes.
  gguf::GgufWriter::FillFn fill_fn() const;
};

/// Builds the model description. Throws Error for an unknown preset, a type synth cannot write, or an
/// unreadable / tokenizer-less --vocab-from file.
SynthModel build_synth_model(const SynthOptions& opts);
/// The same for a preset given by value (opts.preset is ignored): fuzz seeds and tests that need
/// dimensions no named preset has.
SynthModel build_synth_model(const Preset& preset, const SynthOptions& opts);

/// Writes the model to `path` (GGUF v3). progress(done_bytes, total_bytes) is called after each chunk.
void write_synth_model(const SynthModel& m, const std::string& path,
                       const gguf::GgufWriter::ProgressFn& progress = {});

/// llama.cpp's general.file_type (LLAMA_FTYPE_*) for a weight type, e.g. Q4_K -> 14 (MOSTLY_Q4_K_S).
uint32_t file_type_of(GgmlType type);

}  // namespace moetier::synth
