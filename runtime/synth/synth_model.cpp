#include "runtime/synth/synth_model.hpp"

#include <memory>

#include "common/error.hpp"
#include "runtime/gguf/gguf_model.hpp"
#include "runtime/synth/synth_arch.hpp"
#include "runtime/synth/synth_vocab.hpp"

namespace moetier::synth {
namespace {

constexpr int64_t kMaxSelfMadeMerges = 1024;

gguf::Value string_array(std::vector<std::string> v) {
  auto a = std::make_shared<gguf::Array>();
  a->elem_type = gguf::ValueType::STRING;
  a->strings = std::move(v);
  return gguf::Value{gguf::ValueType::ARRAY, std::shared_ptr<const gguf::Array>(std::move(a))};
}

gguf::Value int32_array(const std::vector<int32_t>& v) {
  auto a = std::make_shared<gguf::Array>();
  a->elem_type = gguf::ValueType::INT32;
  a->items.reserve(v.size());
  for (int32_t x : v) a->items.push_back(gguf::Value{gguf::ValueType::INT32, int64_t{x}});
  return gguf::Value{gguf::ValueType::ARRAY, std::shared_ptr<const gguf::Array>(std::move(a))};
}

bool is_quantized(GgmlType t) { return ggml_type_info(t).block_size > 1; }

}  // namespace

uint32_t file_type_of(GgmlType type) {
  switch (type) {
    case GgmlType::F32: return 0;    // LLAMA_FTYPE_ALL_F32
    case GgmlType::F16: return 1;    // MOSTLY_F16
    case GgmlType::Q4_0: return 2;
    case GgmlType::Q4_1: return 3;
    case GgmlType::Q8_0: return 7;
    case GgmlType::Q5_0: return 8;
    case GgmlType::Q5_1: return 9;
    case GgmlType::Q4_K: return 14;  // MOSTLY_Q4_K_S
    case GgmlType::Q5_K: return 16;  // MOSTLY_Q5_K_S
    case GgmlType::Q6_K: return 18;
    case GgmlType::BF16: return 32;
    case GgmlType::MXFP4: return 38;  // MOSTLY_MXFP4_MOE
    case GgmlType::IQ2_XXS: return 19;
    case GgmlType::IQ2_XS: return 20;
    case GgmlType::IQ3_XXS: return 23;
    case GgmlType::IQ1_S: return 24;
    case GgmlType::IQ4_NL: return 25;
    case GgmlType::IQ3_S: return 26;
    case GgmlType::IQ2_S: return 28;
    case GgmlType::IQ4_XS: return 30;
    case GgmlType::IQ1_M: return 31;
    default: fail("synth: no llama.cpp file type for {}", ggml_type_name(type));
  }
}

SynthModel build_synth_model(const SynthOptions& opts) { return build_synth_model(find_preset(opts.preset), opts); }

SynthModel build_synth_model(const Preset& preset, const SynthOptions& opts) {
  SynthModel m;
  m.preset = preset;
  m.type = opts.type;
  m.seed = opts.seed;
  if (!can_synthesize(opts.type))
    fail("synth: cannot write {} weights (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, "
         "Q6_K, MXFP4, IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ4_NL, IQ4_XS)",
         ggml_type_name(opts.type));

  // Tokenizer first: it fixes n_vocab.
  std::vector<std::pair<std::string, gguf::Value>> tok;
  int64_t n_vocab = m.preset.n_vocab;
  if (!opts.vocab_from.empty()) {
    const auto src = gguf::GgufModel::open(opts.vocab_from);
    const auto* tokens = src.metadata().get_string_array("tokenizer.ggml.tokens");
    if (!tokens || tokens->empty()) fail("{}: no tokenizer.ggml.tokens to copy (--vocab-from)", opts.vocab_from);
    n_vocab = static_cast<int64_t>(tokens->size());
    for (const auto& key : src.metadata().keys())
      if (key.rfind("tokenizer.", 0) == 0) tok.emplace_back(key, *src.metadata().find(key));
  } else {
    SynthVocab v = make_byte_bpe_vocab(n_vocab, kMaxSelfMadeMerges);
    tok.emplace_back("tokenizer.ggml.model", gguf::Value{gguf::ValueType::STRING, std::string("gpt2")});
    tok.emplace_back("tokenizer.ggml.pre", gguf::Value{gguf::ValueType::STRING, std::string("default")});
    tok.emplace_back("tokenizer.ggml.tokens", string_array(std::move(v.tokens)));
    tok.emplace_back("tokenizer.ggml.token_type", int32_array(v.token_types));
    tok.emplace_back("tokenizer.ggml.merges", string_array(std::move(v.merges)));
    tok.emplace_back("tokenizer.ggml.bos_token_id", gguf::Value{gguf::ValueType::UINT32, static_cast<uint64_t>(v.bos_id)});
    tok.emplace_back("tokenizer.ggml.eos_token_id", gguf::Value{gguf::ValueType::UINT32, static_cast<uint64_t>(v.eos_id)});
    tok.emplace_back("tokenizer.ggml.padding_token_id",
                     gguf::Value{gguf::ValueType::UINT32, static_cast<uint64_t>(v.eos_id)});
    tok.emplace_back("tokenizer.ggml.add_bos_token", gguf::Value{gguf::ValueType::BOOL, true});
    tok.emplace_back("tokenizer.ggml.add_eos_token", gguf::Value{gguf::ValueType::BOOL, false});
  }

  detail::ModelBuilder b(m);
  b.str("general.architecture", m.preset.arch);
  b.str("general.name", m.preset.name);
  b.u32("general.file_type", file_type_of(opts.type));
  if (is_quantized(opts.type)) b.u32("general.quantization_version", 2);
  detail::build_architecture(b, n_vocab);
  for (auto& kv : tok) b.value(kv.first, std::move(kv.second));

  for (auto& t : m.tensors) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    t.n_bytes = ggml_row_bytes(t.type, static_cast<uint64_t>(n));
  }
  return m;
}

gguf::Metadata SynthModel::metadata_map() const {
  gguf::Metadata md;
  md.set_context("synth:" + preset.name);
  for (const auto& [k, v] : metadata) md.insert(k, v);
  return md;
}

std::vector<gguf::TensorInfo> SynthModel::tensor_infos() const {
  std::vector<gguf::TensorInfo> out;
  out.reserve(tensors.size());
  for (const auto& t : tensors) {
    gguf::TensorInfo i;
    i.name = t.name;
    i.type = t.type;
    i.shape = t.shape;
    i.n_bytes = t.n_bytes;
    out.push_back(std::move(i));
  }
  return out;
}

uint64_t SynthModel::tensor_bytes() const {
  uint64_t n = 0;
  for (const auto& t : tensors) n += t.n_bytes;
  return n;
}

gguf::GgufWriter SynthModel::make_writer() const {
  gguf::GgufWriter w;
  for (const auto& [k, v] : metadata) w.set(k, v);
  for (const auto& t : tensors) w.add_tensor(t.name, t.type, t.shape);
  return w;
}

gguf::GgufWriter::FillFn SynthModel::fill_fn() const {
  auto specs = std::make_shared<std::vector<FillSpec>>();
  specs->reserve(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i)
    specs->push_back({tensors[i].type, tensors[i].kind, tensors[i].scale, tensor_stream(seed, i)});
  return [specs](size_t tensor_index, uint64_t offset, std::span<std::byte> out) {
    fill_tensor_bytes((*specs)[tensor_index], offset, out);
  };
}

void write_synth_model(const SynthModel& m, const std::string& path, const gguf::GgufWriter::ProgressFn& progress) {
  m.make_writer().write(path, m.fill_fn(), progress);
}

}  // namespace moetier::synth
