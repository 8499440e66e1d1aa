// Seed corpus for fuzz_gguf: small valid GGUF files covering every metadata type, nested arrays, a
// custom alignment, several tensor types, split keys; plus "shrunk" copies of the ../shared models
// (all metadata and tensor names/types kept, arrays cut to 16 items, every tensor reduced to one block)
// so the fuzzer starts from realistic headers without megabytes of vocabulary.
// Usage: gguf_seed_gen OUT_DIR [SHARED_MODELS_DIR]
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "common/error.hpp"
#include "runtime/gguf/gguf_model.hpp"
#include "runtime/gguf/gguf_writer.hpp"

using namespace moetier;
using namespace moetier::gguf;

namespace {

void fill(size_t ti, uint64_t off, std::span<std::byte> out) {
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::byte>((ti * 7 + off + i) & 0xFF);
}

Value arr(ValueType elem, std::vector<Value> items) {
  auto a = std::make_shared<Array>();
  a->elem_type = elem;
  a->items = std::move(items);
  return Value{ValueType::ARRAY, std::shared_ptr<const Array>(std::move(a))};
}

Value shrink(const Value& v) {
  if (v.type != ValueType::ARRAY) return v;
  const Array& a = v.as_array();
  auto b = std::make_shared<Array>();
  b->elem_type = a.elem_type;
  for (size_t i = 0; i < a.strings.size() && i < 16; ++i) b->strings.push_back(a.strings[i]);
  for (size_t i = 0; i < a.items.size() && i < 16; ++i) b->items.push_back(shrink(a.items[i]));
  return Value{ValueType::ARRAY, std::shared_ptr<const Array>(std::move(b))};
}

void synthetic(const std::filesystem::path& dir) {
  {
    GgufWriter w;
    w.set_string("general.architecture", "llama");
    w.set("u8", Value{ValueType::UINT8, uint64_t{7}});
    w.set("i8", Value{ValueType::INT8, int64_t{-7}});
    w.set("u16", Value{ValueType::UINT16, uint64_t{700}});
    w.set("i16", Value{ValueType::INT16, int64_t{-700}});
    w.set_u32("u32", 70000);
    w.set_i32("i32", -70000);
    w.set_u64("u64", 1ull << 40);
    w.set("i64", Value{ValueType::INT64, int64_t{-(1ll << 40)}});
    w.set_f32("f32", 0.5f);
    w.set("f64", Value{ValueType::FLOAT64, 0.25});
    w.set_bool("b", true);
    w.set_string_array("strs", {"a", "bb", ""});
    w.set_f32_array("floats", {1.0f, 2.0f});
    w.set("nested", arr(ValueType::ARRAY, {arr(ValueType::INT8, {Value{ValueType::INT8, int64_t{1}}}),
                                           arr(ValueType::INT8, {})}));
    w.add_tensor("token_embd.weight", GgmlType::Q8_0, {4, 64});
    w.add_tensor("blk.0.ffn_up_exps.weight", GgmlType::Q4_K, {2, 2, 256});
    w.add_tensor("blk.0.ffn_gate.3.weight", GgmlType::F16, {2, 8});
    w.add_tensor("output_norm.weight", GgmlType::F32, {8});
    w.write((dir / "types.gguf").string(), fill);
  }
  {
    GgufWriter w(64);
    w.set_string("general.architecture", "qwen3moe");
    w.add_tensor("a", GgmlType::MXFP4, {3, 32});
    w.add_tensor("b", GgmlType::BF16, {5});
    w.write((dir / "align64.gguf").string(), fill);
  }
  {
    GgufWriter w;
    w.set("split.no", Value{ValueType::UINT16, uint64_t{0}});
    w.set("split.count", Value{ValueType::UINT16, uint64_t{2}});
    w.set("split.tensors.count", Value{ValueType::INT32, int64_t{2}});
    w.add_tensor("blk.1.attn_q.weight", GgmlType::Q6_K, {1, 256});
    w.write((dir / "split-00001-of-00002.gguf").string(), fill);
  }
  {
    GgufWriter w;  // metadata only
    w.set_string("tokenizer.ggml.model", "gpt2");
    w.set_string_array("tokenizer.ggml.merges", {"a b", "ab c"});
    w.write((dir / "vocab-only.gguf").string(), fill);
  }
}

void shrunk_copy(const std::filesystem::path& src, const std::filesystem::path& dir) {
  const GgufModel m = GgufModel::open(src.string());
  GgufWriter w;
  for (const auto& key : m.metadata().keys()) w.set(key, shrink(*m.metadata().find(key)));
  for (const auto& t : m.tensors()) {
    std::vector<int64_t> shape(t.shape.size(), 1);
    shape.back() = ggml_type_info(t.type).block_size;
    w.add_tensor(t.name, t.type, shape);
  }
  w.write((dir / ("shrunk-" + src.filename().string())).string(), fill);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR [SHARED_MODELS_DIR]\n", argv[0]);
    return 2;
  }
  try {
    const std::filesystem::path out = argv[1];
    std::filesystem::create_directories(out);
    synthetic(out);
    if (argc > 2 && std::filesystem::is_directory(argv[2]))
      for (const auto& e : std::filesystem::directory_iterator(argv[2]))
        if (e.path().extension() == ".gguf") shrunk_copy(e.path(), out);
  } catch (const Error& e) {
    std::fprintf(stderr, "gguf_seed_gen: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
