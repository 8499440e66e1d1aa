// Every GGUF file in ../shared/models reads, and its tensor names, types, shapes (ours: outermost
// first = reversed ggml ne) and byte sizes match the tables of ../shared/models/README.md section 4.
#include <doctest/doctest.h>

#include <filesystem>
#include <map>

#include "runtime/gguf/gguf_model.hpp"
#include "tests/gguf/gguf_test_util.hpp"
#include "tests/shared_data.hpp"

using namespace moetier;
using namespace moetier::gguf;

namespace {

std::string model_path(const std::string& stem) { return (test::shared_dir() / "models" / (stem + ".gguf")).string(); }

struct Row {
  std::string name;          // "blk.N.x" for per-layer rows
  std::vector<int64_t> ne;   // ggml order, innermost first (as README.md lists them)
  GgmlType type;
  std::vector<int> layers;   // empty for global tensors
};

uint64_t expected_bytes(const std::vector<int64_t>& ne, GgmlType t) {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  const auto& info = ggml_type_info(t);
  return static_cast<uint64_t>(n) / info.block_size * info.type_size;
}

/// Checks every row of `rows` against `m`, and that `m` has no other tensor when `complete`.
void check_rows(const GgufModel& m, const std::vector<Row>& rows, bool complete) {
  size_t n = 0;
  for (const auto& r : rows) {
    std::vector<std::string> names;
    if (r.layers.empty()) {
      names.push_back(r.name);
    } else {
      for (int il : r.layers) {
        const size_t at = r.name.find(".N.");
        names.push_back(fmt::format("{}.{}.{}", r.name.substr(0, at), il, r.name.substr(at + 3)));
      }
    }
    for (const auto& name : names) {
      CAPTURE(name);
      const TensorInfo* t = m.find(name);
      REQUIRE(t != nullptr);
      CHECK(t->type == r.type);
      CHECK(t->shape == std::vector<int64_t>(r.ne.rbegin(), r.ne.rend()));
      for (size_t i = 0; i < r.ne.size(); ++i) CHECK(t->ne(i) == r.ne[i]);
      CHECK(t->n_bytes == expected_bytes(r.ne, r.type));
      CHECK(m.data(*t).size() == t->n_bytes);
      ++n;
    }
  }
  if (complete) CHECK(m.tensors().size() == n);
}

constexpr auto F32 = GgmlType::F32;
constexpr auto Q8 = GgmlType::Q8_0;

}  // namespace

TEST_CASE("every file in ../shared/models reads" * doctest::skip(test::no_shared())) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(test::shared_dir() / "models")) {
    if (e.path().extension() != ".gguf") continue;
    CAPTURE(e.path().string());
    const GgufModel m = GgufModel::open(e.path().string());
    CHECK(m.file(0).version == 3);
    CHECK(m.file(0).alignment == 32);
    CHECK(m.file(0).file_size == std::filesystem::file_size(e.path()));
    CHECK(!m.tensors().empty());
    CHECK(m.metadata().get_string_array("tokenizer.ggml.tokens") != nullptr);
    ++n;
  }
  CHECK(n == 5);
}

TEST_CASE("mixtral-tiny-f32 matches README.md 4.4 exactly" * doctest::skip(test::no_shared())) {
  const GgufModel m = GgufModel::open(model_path("mixtral-tiny-f32"));
  const std::vector<int> L = {0, 1, 2};
  const std::vector<Row> rows = {
      {"token_embd.weight", {64, 32000}, F32, {}},
      {"output_norm.weight", {64}, F32, {}},
      {"output.weight", {64, 32000}, F32, {}},
      {"blk.N.attn_norm.weight", {64}, F32, L},
      {"blk.N.attn_q.weight", {64, 64}, F32, L},
      {"blk.N.attn_k.weight", {64, 16}, F32, L},
      {"blk.N.attn_v.weight", {64, 16}, F32, L},
      {"blk.N.attn_output.weight", {64, 64}, F32, L},
      {"blk.N.ffn_norm.weight", {64}, F32, L},
      {"blk.N.ffn_gate_inp.weight", {64, 8}, F32, L},
      {"blk.N.ffn_gate_exps.weight", {64, 256, 8}, F32, L},
      {"blk.N.ffn_up_exps.weight", {64, 256, 8}, F32, L},
      {"blk.N.ffn_down_exps.weight", {256, 64, 8}, F32, L},
  };
  check_rows(m, rows, true);
  CHECK(m.require("blk.1.ffn_up_exps.weight").n_bytes == 524288);
  const Metadata& md = m.metadata();
  CHECK(m.architecture() == "llama");
  CHECK(md.require_string("general.name") == "mixtral-tiny");
  CHECK(md.require_int("general.file_type") == 0);
  CHECK(md.require_int("llama.context_length") == 32768);
  CHECK(md.require_int("llama.embedding_length") == 64);
  CHECK(md.require_int("llama.block_count") == 3);
  CHECK(md.require_int("llama.attention.head_count") == 4);
  CHECK(md.require_int("llama.attention.head_count_kv") == 1);
  CHECK(md.require_float("llama.attention.layer_norm_rms_epsilon") == doctest::Approx(1e-5));
  CHECK(md.require_float("llama.rope.freq_base") == 1000000.0);
  CHECK(md.require_int("llama.feed_forward_length") == 256);
  CHECK(md.require_int("llama.expert_count") == 8);
  CHECK(md.require_int("llama.expert_used_count") == 2);
  CHECK(md.require_int("llama.rope.dimension_count") == 16);
  CHECK(md.require_int("llama.vocab_size") == 32000);
  CHECK(md.require_string("tokenizer.ggml.model") == "llama");
  CHECK(md.get_string_array("tokenizer.ggml.tokens")->size() == 32000);
  CHECK(md.get_float_array("tokenizer.ggml.scores")->size() == 32000);
  CHECK(md.get_int_array("tokenizer.ggml.token_type")->size() == 32000);
  CHECK(md.require_int("tokenizer.ggml.bos_token_id") == 1);
  CHECK(md.get_bool("tokenizer.ggml.add_bos_token") == true);
  CHECK(md.get_bool("tokenizer.ggml.add_eos_token") == false);
  CHECK(m.file(0).file_size == 21959456);
}

TEST_CASE("the Q8_0 and deepseek2 files match README.md (spot checks)" * doctest::skip(test::no_shared())) {
  const std::vector<int> L3 = {0, 1, 2}, L2 = {0, 1}, dense = {0}, moe = {1, 2};
  SUBCASE("mixtral-tiny-q8_0") {
    const GgufModel m = GgufModel::open(model_path("mixtral-tiny-q8_0"));
    check_rows(m,
               {{"output.weight", {64, 32000}, Q8, {}},
                {"output_norm.weight", {64}, F32, {}},
                {"token_embd.weight", {64, 32000}, Q8, {}},
                {"blk.N.attn_k.weight", {64, 16}, Q8, L3},
                {"blk.N.attn_norm.weight", {64}, F32, L3},
                {"blk.N.attn_output.weight", {64, 64}, Q8, L3},
                {"blk.N.attn_q.weight", {64, 64}, Q8, L3},
                {"blk.N.attn_v.weight", {64, 16}, Q8, L3},
                {"blk.N.ffn_down_exps.weight", {256, 64, 8}, Q8, L3},
                {"blk.N.ffn_gate_exps.weight", {64, 256, 8}, Q8, L3},
                {"blk.N.ffn_gate_inp.weight", {64, 8}, F32, L3},
                {"blk.N.ffn_norm.weight", {64}, F32, L3},
                {"blk.N.ffn_up_exps.weight", {64, 256, 8}, Q8, L3}},
               true);
    CHECK(m.metadata().require_int("general.file_type") == 7);
    CHECK(m.metadata().require_int("general.quantization_version") == 2);
  }
  SUBCASE("qwen3moe-tiny-q8_0") {
    const GgufModel m = GgufModel::open(model_path("qwen3moe-tiny-q8_0"));
    check_rows(m,
               {{"output_norm.weight", {64}, F32, {}},
                {"token_embd.weight", {64, 151936}, Q8, {}},
                {"blk.N.attn_k.weight", {64, 64}, Q8, L2},
                {"blk.N.attn_k_norm.weight", {32}, F32, L2},
                {"blk.N.attn_norm.weight", {64}, F32, L2},
                {"blk.N.attn_output.weight", {128, 64}, Q8, L2},
                {"blk.N.attn_q.weight", {64, 128}, Q8, L2},
                {"blk.N.attn_q_norm.weight", {32}, F32, L2},
                {"blk.N.attn_v.weight", {64, 64}, Q8, L2},
                {"blk.N.ffn_down_exps.weight", {256, 64, 16}, Q8, L2},
                {"blk.N.ffn_gate_exps.weight", {64, 256, 16}, Q8, L2},
                {"blk.N.ffn_gate_inp.weight", {64, 16}, F32, L2},
                {"blk.N.ffn_norm.weight", {64}, F32, L2},
                {"blk.N.ffn_up_exps.weight", {64, 256, 16}, Q8, L2}},
               true);
    CHECK(m.find("output.weight") == nullptr);  // tied output
    CHECK(m.metadata().require_int("qwen3moe.expert_feed_forward_length") == 256);
    CHECK(m.metadata().get_string_array("tokenizer.ggml.merges")->size() == 151387);
  }
  SUBCASE("deepseek2-tiny-f32") {
    const GgufModel m = GgufModel::open(model_path("deepseek2-tiny-f32"));
    check_rows(m,
               {{"token_embd.weight", {64, 102400}, F32, {}},
                {"blk.N.attn_q_b.weight", {32, 192}, F32, L3},
                {"blk.N.attn_kv_a_mqa.weight", {64, 80}, F32, L3},
                {"blk.N.attn_k_b.weight", {32, 64, 4}, F32, L3},
                {"blk.N.attn_v_b.weight", {64, 32, 4}, F32, L3},
                {"blk.N.ffn_gate.weight", {64, 256}, F32, dense},
                {"blk.N.exp_probs_b.bias", {16}, F32, moe},
                {"blk.N.ffn_down_exps.weight", {256, 64, 16}, F32, moe},
                {"blk.N.ffn_up_shexp.weight", {64, 256}, F32, moe}},
               false);
    CHECK(m.tensors().size() == 2 + 3 * 10 + 3 + 2 * 8);
    CHECK(m.find("blk.0.ffn_gate_exps.weight") == nullptr);
    CHECK(m.metadata().require_int("deepseek2.attention.kv_lora_rank") == 64);
    CHECK(m.metadata().require_string("deepseek2.rope.scaling.type") == "yarn");
  }
  SUBCASE("deepseek2-tiny-q8_0") {
    const GgufModel m = GgufModel::open(model_path("deepseek2-tiny-q8_0"));
    check_rows(m,
               {{"token_embd.weight", {64, 102400}, Q8, {}},
                {"blk.N.attn_k_b.weight", {32, 64, 4}, Q8, L3},
                {"blk.N.attn_q_a_norm.weight", {32}, F32, L3},
                {"blk.N.ffn_down.weight", {256, 64}, Q8, dense},
                {"blk.N.ffn_gate_inp.weight", {64, 16}, F32, moe},
                {"blk.N.ffn_gate_exps.weight", {64, 256, 16}, Q8, moe}},
               false);
    CHECK(m.tensors().size() == 51);
    CHECK(m.file(0).file_size == 12897504);
  }
}
