// Internal to runtime/synth: the per-architecture tensor lists and hyper-parameter keys of synthetic
// models, as llama.cpp's convert_hf_to_gguf.py writes them and llama-model.cpp loads them (tensor names
// from gguf-py's TENSOR_NAMES, shapes from each architecture's load_tensors).
#pragma once

#include <string>
#include <vector>

#include "runtime/synth/synth_model.hpp"

namespace moetier::synth::detail {

/// Collects metadata and tensors in file order, choosing each tensor's type and value distribution.
class ModelBuilder {
 public:
  ModelBuilder(SynthModel& m) : m_(m) {}

  void u32(const std::string& key, int64_t v);
  void f32(const std::string& key, double v);
  void boolean(const std::string& key, bool v);
  void str(const std::string& key, std::string v);
  void value(const std::string& key, gguf::Value v);
  /// `<arch>.<key>` shorthands.
  void arch_u32(const std::string& key, int64_t v) { u32(m_.preset.arch + "." + key, v); }
  void arch_f32(const std::string& key, double v) { f32(m_.preset.arch + "." + key, v); }
  void arch_bool(const std::string& key, bool v) { boolean(m_.preset.arch + "." + key, v); }
  void arch_str(const std::string& key, std::string v) { str(m_.preset.arch + "." + key, std::move(v)); }

  /// Adds a weight (name ends ".weight"): type chosen per the rules in synth_model.hpp; Weight values of
  /// std 1/sqrt(shape.back()), or Norm values when `norm`.
  void weight(const std::string& name, std::vector<int64_t> shape, bool norm = false);
  /// Adds an F32 tensor of N(0, 1) * scale values (biases, score biases, attention sinks).
  void f32_tensor(const std::string& name, std::vector<int64_t> shape, float scale);

  const Preset& p() const { return m_.preset; }
  SynthModel& model() { return m_; }

 private:
  SynthModel& m_;
};

/// Adds the architecture's hyper-parameter keys (after general.*) and all its tensors.
void build_architecture(ModelBuilder& b, int64_t n_vocab);

}  // namespace moetier::synth::detail
