// compute_size_breakdown: role sums equal the total; routed experts per layer and per expert for
// stacked and legacy layouts; decode bytes per token; and the numbers README.md implies for the
// ../shared models.
#include <doctest/doctest.h>

#include <fmt/format.h>

#include "runtime/gguf/gguf_model.hpp"
#include "runtime/models/size_breakdown.hpp"
#include "runtime/synth/synth_model.hpp"
#include "tests/shared_data.hpp"

using namespace moetier;
using namespace moetier::models;

namespace {

gguf::TensorInfo tensor(std::string name, GgmlType type, std::vector<int64_t> shape) {
  gguf::TensorInfo t;
  t.name = std::move(name);
  t.type = type;
  t.shape = std::move(shape);
  t.n_bytes = ggml_row_bytes(type, static_cast<uint64_t>(t.n_elements()));
  return t;
}

uint64_t role_sum(const SizeBreakdown& s) {
  return s.embedding + s.output + s.attention + s.norm + s.dense_ffn + s.shared_experts + s.routed_experts + s.router +
         s.other + s.nextn;
}

gguf::GgufModel open_shared(const std::string& stem) {
  return gguf::GgufModel::open((test::shared_dir() / "models" / (stem + ".gguf")).string());
}

}  // namespace

TEST_CASE("roles, stacked experts and decode bytes on a hand-made tensor list") {
  const std::vector<gguf::TensorInfo> ts = {
      tensor("token_embd.weight", GgmlType::Q8_0, {100, 64}),         // 100 rows x 68 bytes
      tensor("output_norm.weight", GgmlType::F32, {64}),
      tensor("output.weight", GgmlType::Q8_0, {100, 64}),
      tensor("blk.0.attn_q.weight", GgmlType::F32, {64, 64}),
      tensor("blk.0.attn_norm.weight", GgmlType::F32, {64}),
      tensor("blk.0.ffn_gate.weight", GgmlType::F32, {128, 64}),      // dense layer
      tensor("blk.1.ffn_gate_inp.weight", GgmlType::F32, {4, 64}),
      tensor("blk.1.exp_probs_b.bias", GgmlType::F32, {4}),
      tensor("blk.1.ffn_gate_exps.weight", GgmlType::Q4_0, {4, 32, 64}),
      tensor("blk.1.ffn_up_exps.weight", GgmlType::Q4_0, {4, 32, 64}),
      tensor("blk.1.ffn_down_exps.weight", GgmlType::Q8_0, {4, 64, 32}),
      tensor("blk.1.ffn_up_shexp.weight", GgmlType::F32, {32, 64}),
      tensor("blk.1.ffn_gate_inp_shexp.weight", GgmlType::F32, {64}),
      tensor("mystery.weight", GgmlType::F32, {8}),
  };
  const SizeBreakdown s = compute_size_breakdown(ts);
  uint64_t total = 0;
  for (const auto& t : ts) total += t.n_bytes;
  CHECK(s.total == total);
  CHECK(role_sum(s) == total);
  CHECK(s.embedding == 100 * 68);
  CHECK(s.embedding_row_bytes == 68);
  CHECK(s.output == 100 * 68);
  CHECK(!s.tied_output);
  CHECK(s.norm == 2 * 64 * 4);
  CHECK(s.attention == 64 * 64 * 4);
  CHECK(s.dense_ffn == 128 * 64 * 4);
  CHECK(s.router == 4 * 64 * 4 + 16);
  CHECK(s.shared_experts == 32 * 64 * 4 + 64 * 4);
  CHECK(s.other == 32);
  const uint64_t per_expert = 2 * (32 * 2 * 18) + 64 * 34;  // gate + up (Q4_0) + down (Q8_0)
  CHECK(s.routed_experts == 4 * per_expert);
  REQUIRE(s.expert_layers.size() == 1);
  CHECK(s.expert_layers[0].layer == 1);
  CHECK(s.expert_layers[0].n_experts == 4);
  CHECK(s.expert_layers[0].uniform_expert_bytes() == per_expert);
  CHECK(s.expert_layers[0].top_k_bytes(2) == 2 * per_expert);
  CHECK(s.expert_layers[0].top_k_bytes(9) == 4 * per_expert);
  CHECK(s.decode_bytes_per_token(2) == total - 4 * per_expert - 100 * 68 + 68 + 2 * per_expert);
  CHECK(s.decode_bytes_per_token(0) == total - 4 * per_expert - 100 * 68 + 68);
}

TEST_CASE("legacy per-expert tensors and tied output") {
  std::vector<gguf::TensorInfo> ts = {tensor("token_embd.weight", GgmlType::F32, {50, 16})};
  for (int e = 0; e < 3; ++e)
    for (const char* part : {"ffn_gate", "ffn_up", "ffn_down"})
      ts.push_back(tensor(fmt::format("blk.0.{}.{}.weight", part, e), GgmlType::F32, {e == 2 ? 64 : 32, 16}));
  const SizeBreakdown s = compute_size_breakdown(ts);
  CHECK(s.tied_output);
  REQUIRE(s.expert_layers.size() == 1);
  const auto& l = s.expert_layers[0];
  REQUIRE(l.n_experts == 3);
  CHECK(l.expert_bytes[0] == 3 * 32 * 16 * 4);
  CHECK(l.expert_bytes[2] == 3 * 64 * 16 * 4);
  CHECK(l.uniform_expert_bytes() == 0);
  CHECK(l.top_k_bytes(1) == l.expert_bytes[2]);
  CHECK(s.dense_ffn == 0);
  // Tied output: token_embd is the LM head and is read whole.
  CHECK(s.decode_bytes_per_token(1) == 50 * 16 * 4 + l.expert_bytes[2]);
}

TEST_CASE("format_bytes uses binary units") {
  CHECK(format_bytes(17) == "17 B");
  CHECK(format_bytes(1536) == "1.50 KiB");
  CHECK(format_bytes(3ull << 30) == "3.00 GiB");
  CHECK(format_bytes(380ull * 1000 * 1000 * 1000) == "354 GiB");
}

TEST_CASE("breakdown of every tiny synth preset sums to the total") {
  for (const auto& p : synth::all_presets()) {
    CAPTURE(p.name);
    const auto m = synth::build_synth_model({p.name, GgmlType::Q8_0, "", 0});
    const SizeBreakdown s = compute_size_breakdown(m.tensor_infos());
    CHECK(role_sum(s) == s.total);
    CHECK(s.total == m.tensor_bytes());
    CHECK(s.other == 0);
    CHECK((s.nextn > 0) == (p.n_nextn > 0));  // glm4moe's NextN layer: counted apart, never as experts
    CHECK(s.attention > 0);
    CHECK(s.norm > 0);
    CHECK(s.router > 0);
    CHECK((s.shared_experts > 0) == (p.n_expert_shared > 0));
    CHECK((s.dense_ffn > 0) == (p.n_layer_dense_lead > 0));
    CHECK(s.tied_output == p.tied_output);
    CHECK(s.routed_experts == [&] {
      uint64_t n = 0;
      for (const auto& l : s.expert_layers) n += l.uniform_expert_bytes() * static_cast<uint64_t>(p.n_expert);
      return n;
    }());
  }
}

TEST_CASE("breakdowns of the ../shared models match README.md" * doctest::skip(test::no_shared())) {
  SUBCASE("mixtral-tiny-f32") {
    const auto m = open_shared("mixtral-tiny-f32");
    const SizeBreakdown s = compute_size_breakdown(m.tensors());
    CHECK(s.total == m.total_tensor_bytes());
    CHECK(role_sum(s) == s.total);
    // 3 layers x 3 stacked tensors of [8, 256, 64] F32 = 524288 bytes each.
    CHECK(s.routed_experts == 3 * 3 * 524288);
    REQUIRE(s.expert_layers.size() == 3);
    for (const auto& l : s.expert_layers) {
      CHECK(l.n_experts == 8);
      CHECK(l.uniform_expert_bytes() == 3 * 524288 / 8);
    }
    CHECK(s.embedding == 32000ull * 64 * 4);
    CHECK(s.output == 32000ull * 64 * 4);
    CHECK(s.attention == 3 * (2 * 64 * 64 + 2 * 64 * 16) * 4);
    CHECK(s.norm == (1 + 3 * 2) * 64 * 4);
    CHECK(s.router == 3 * 64 * 8 * 4);
    CHECK(s.shared_experts == 0);
    CHECK(s.dense_ffn == 0);
    CHECK(s.decode_bytes_per_token(2) == s.total - s.routed_experts - s.embedding + 64 * 4 + 3 * 2 * 196608);
  }
  SUBCASE("qwen3moe-tiny-q8_0 (tied output)") {
    const auto m = open_shared("qwen3moe-tiny-q8_0");
    const SizeBreakdown s = compute_size_breakdown(m.tensors());
    CHECK(s.tied_output);
    CHECK(s.embedding == 151936ull * 64 / 32 * 34);
    CHECK(s.routed_experts == 2 * 3 * (16ull * 256 * 64 / 32 * 34));
    CHECK(s.decode_bytes_per_token(4) == s.total - s.routed_experts + 2 * 4 * (3 * 256 * 64 / 32 * 34));
  }
  SUBCASE("deepseek2-tiny-f32") {
    const auto m = open_shared("deepseek2-tiny-f32");
    const SizeBreakdown s = compute_size_breakdown(m.tensors());
    CHECK(role_sum(s) == s.total);
    CHECK(s.dense_ffn == 3 * 64 * 256 * 4);
    CHECK(s.shared_experts == 2 * 3 * 64 * 256 * 4);
    CHECK(s.router == 2 * (64 * 16 + 16) * 4);
    CHECK(s.routed_experts == 2 * 3 * 16ull * 64 * 256 * 4);
    REQUIRE(s.expert_layers.size() == 2);
    CHECK(s.expert_layers[0].layer == 1);
    CHECK(s.other == 0);
  }
}
