// `moetier synth` as a library: every tiny preset x every weight type round-trips through
// GgufModel::open (tensor list, shapes, metadata, hyper-parameters via load_hparams, deterministic bytes
// for a seed); full-size presets are checked from their tensor list only (never generated).
#include <doctest/doctest.h>

#include <fstream>
#include <iterator>
#include <set>

#include "runtime/gguf/gguf_model.hpp"
#include "runtime/models/hparams.hpp"
#include "runtime/models/size_breakdown.hpp"
#include "runtime/models/tensor_roles.hpp"
#include "runtime/synth/synth_model.hpp"
#include "runtime/synth/synth_vocab.hpp"
#include "tests/gguf/gguf_test_util.hpp"
#include "tests/shared_data.hpp"

using namespace moetier;
using namespace moetier::synth;

namespace {

constexpr GgmlType kTypes[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q8_0,
                               GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1,
                               GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::MXFP4};

std::vector<std::string> tiny_presets() {
  std::vector<std::string> v;
  for (const auto& p : all_presets())
    if (p.tiny) v.push_back(p.name);
  return v;
}

std::vector<char> read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

/// Checks hyper-parameters read back from the file against the preset.
void check_hparams(const models::ModelHparams& hp, const Preset& p, int64_t n_vocab) {
  CHECK(hp.arch_str == p.arch);
  CHECK(hp.n_embd == p.n_embd);
  CHECK(hp.n_layer == p.n_layer);
  CHECK(hp.n_head == p.n_head);
  CHECK(hp.n_vocab == n_vocab);
  CHECK(hp.n_ctx_train == p.n_ctx);
  CHECK(hp.n_expert == p.n_expert);
  CHECK(hp.n_expert_used == p.n_expert_used);
  CHECK(hp.rms_eps == doctest::Approx(p.rms_eps));
  CHECK(hp.rope_freq_base == doctest::Approx(p.rope_freq_base));
  CHECK(hp.rope_yarn == (p.yarn_factor > 0));
  if (p.arch == "deepseek2") {
    CHECK(hp.n_head_kv == 1);
    CHECK(hp.q_lora_rank == p.q_lora_rank);
    CHECK(hp.kv_lora_rank == p.kv_lora_rank);
    CHECK(hp.qk_nope_dim == p.qk_nope_dim);
    CHECK(hp.qk_rope_dim == p.qk_rope_dim);
    CHECK(hp.v_head_dim_mla == p.v_head_dim);
    CHECK(hp.n_layer_dense_lead == p.n_layer_dense_lead);
    CHECK(hp.n_expert_shared == p.n_expert_shared);
    CHECK(hp.n_ff_exp == p.n_ff_exp);
    CHECK(hp.gating == (p.gating_func == 2 ? models::Gating::Sigmoid : models::Gating::Softmax));
    CHECK(hp.norm_topk_prob == p.expert_weights_norm);
    CHECK(hp.expert_weights_scale == doctest::Approx(p.expert_weights_scale));
  } else {
    CHECK(hp.n_head_kv == p.n_head_kv);
    CHECK(hp.head_dim_k == p.head_dim);
    CHECK(hp.n_ff_exp == (p.n_ff_exp ? p.n_ff_exp : p.n_ff));
  }
  if (p.arch == "gpt-oss") CHECK(hp.sliding_window == p.sliding_window);
  if (p.arch == "qwen2moe") CHECK(hp.n_ff_shexp == p.n_ff_shexp);
  CHECK(models::kv_cache_bytes_per_token(hp, 2) * 2 == models::kv_cache_bytes_per_token(hp, 4));
}

}  // namespace

TEST_CASE("presets: names, alias and errors") {
  CHECK(find_preset("deepseek-r1").name == "deepseek-v3");
  CHECK(tiny_presets().size() == 10);
  for (const char* n : {"deepseek-v3", "deepseek-v2-lite", "qwen3-30b-a3b", "qwen3-235b-a22b", "mixtral-8x7b",
                        "olmoe-1b-7b", "gpt-oss-20b", "gpt-oss-120b", "glm-4.5-air", "glm-4.5", "kimi-k2",
                        "minimax-m2"}) {
    CAPTURE(n);
    CHECK(!find_preset(n).tiny);
    CHECK(find_preset(n).source.find("https://huggingface.co/") == 0);
  }
  try {
    (void)find_preset("nope");
    FAIL("unknown preset accepted");
  } catch (const Error& e) {
    test::check_msg(e.what(), {"nope", "tiny-qwen3moe", "deepseek-r1"});
  }
  CHECK_THROWS_AS(build_synth_model({"tiny-mixtral", GgmlType::Q2_K, "", 1}), Error);
}

TEST_CASE("every tiny preset in every type round-trips through GgufModel::open") {
  test::TempDir dir("synth");
  for (const auto& name : tiny_presets()) {
    for (GgmlType type : kTypes) {
      CAPTURE(name);
      CAPTURE(ggml_type_name(type));
      const SynthModel m = build_synth_model({name, type, "", 1234});
      const std::string path = dir.file(name + ".gguf");
      write_synth_model(m, path);
      const gguf::GgufModel g = gguf::GgufModel::open(path);
      CHECK(g.architecture() == m.preset.arch);
      REQUIRE(g.tensors().size() == m.tensors.size());
      bool saw_type = false;
      for (size_t i = 0; i < m.tensors.size(); ++i) {
        const auto& t = g.tensors()[i];
        const auto& s = m.tensors[i];
        CHECK(t.name == s.name);
        CHECK(t.type == s.type);
        CHECK(t.shape == s.shape);
        CHECK(t.n_bytes == s.n_bytes);
        saw_type |= t.type == type;
        const auto role = models::classify_tensor(t.name).role;
        // glm4moe's NextN tensors (blk.N.nextn.*) have no role: they are loaded-and-ignored.
        CHECK((role != models::TensorRole::Other || t.name.find(".nextn.") != std::string::npos));
        if (t.shape.size() == 1 || role == models::TensorRole::Router) CHECK(t.type == GgmlType::F32);
      }
      CHECK(saw_type);
      // Metadata: same keys in the same order, general.* as expected.
      REQUIRE(g.metadata().keys().size() == m.metadata.size());
      for (size_t i = 0; i < m.metadata.size(); ++i) CHECK(g.metadata().keys()[i] == m.metadata[i].first);
      CHECK(g.metadata().require_int("general.file_type") == file_type_of(type));
      CHECK(g.metadata().require_string("general.name") == name);
      CHECK(g.metadata().require_string("tokenizer.ggml.model") == "gpt2");
      const auto hp = models::load_hparams(g.metadata(), path);
      check_hparams(hp, m.preset, 512);
      CHECK(g.require("token_embd.weight").shape == std::vector<int64_t>{512, m.preset.n_embd});
      // Every MoE layer has n_expert experts of equal size.
      const auto s = models::compute_size_breakdown(g.tensors());
      CHECK(static_cast<int64_t>(s.expert_layers.size()) == m.preset.n_layer - m.preset.n_layer_dense_lead);
      for (const auto& l : s.expert_layers) {
        CHECK(l.n_experts == m.preset.n_expert);
        CHECK(l.uniform_expert_bytes() * static_cast<uint64_t>(l.n_experts) == l.bytes);
      }
      CHECK(s.other == 0);
    }
  }
}

TEST_CASE("synth bytes are deterministic for a seed and differ across seeds") {
  test::TempDir dir("synth-det");
  for (GgmlType type : {GgmlType::Q4_K, GgmlType::F16, GgmlType::MXFP4}) {
    CAPTURE(ggml_type_name(type));
    const SynthModel a = build_synth_model({"tiny-gpt-oss", type, "", 7});
    write_synth_model(a, dir.file("a.gguf"));
    write_synth_model(build_synth_model({"tiny-gpt-oss", type, "", 7}), dir.file("b.gguf"));
    write_synth_model(build_synth_model({"tiny-gpt-oss", type, "", 8}), dir.file("c.gguf"));
    const auto ba = read_all(dir.file("a.gguf"));
    CHECK(ba.size() == a.make_writer().file_size());
    CHECK(ba == read_all(dir.file("b.gguf")));
    const auto bc = read_all(dir.file("c.gguf"));
    REQUIRE(bc.size() == ba.size());
    // Same header (seed is not stored), different data.
    const size_t header = a.make_writer().header_bytes().size();
    CHECK(std::equal(ba.begin(), ba.begin() + static_cast<std::ptrdiff_t>(header), bc.begin()));
    CHECK(ba != bc);
    // Tensors of one file differ from each other (per-tensor streams).
    const gguf::GgufModel g = gguf::GgufModel::open(dir.file("a.gguf"));
    const auto& q = g.require("blk.0.ffn_gate_exps.weight");
    const auto& u = g.require("blk.0.ffn_up_exps.weight");
    REQUIRE(q.n_bytes == u.n_bytes);
    CHECK(!std::equal(g.data(q).begin(), g.data(q).end(), g.data(u).begin()));
  }
}

TEST_CASE("tensor bytes do not depend on how the output is chunked") {
  for (GgmlType type : kTypes) {
    CAPTURE(ggml_type_name(type));
    const SynthModel m = build_synth_model({"tiny-mixtral", type, "", 99});
    const auto fill = m.fill_fn();
    for (size_t ti : {size_t{0}, size_t{4}, m.tensors.size() - 1}) {
      const uint64_t n = m.tensors[ti].n_bytes;
      std::vector<std::byte> whole(n), parts(n);
      fill(ti, 0, whole);
      // Odd chunk sizes that split blocks and element groups.
      uint64_t off = 0;
      for (uint64_t step = 1; off < n; step = step * 3 + 7) {
        const uint64_t len = std::min(step, n - off);
        fill(ti, off, std::span<std::byte>(parts.data() + off, len));
        off += len;
      }
      CHECK(whole == parts);
      // Filling the second half first gives the same bytes (no hidden state).
      std::vector<std::byte> rev(n);
      fill(ti, n / 2, std::span<std::byte>(rev.data() + n / 2, n - n / 2));
      fill(ti, 0, std::span<std::byte>(rev.data(), n / 2));
      CHECK(whole == rev);
    }
  }
}

TEST_CASE("self-made byte-level BPE vocabulary") {
  CHECK(byte_token(' ') == "\xC4\xA0");   // U+0120 'Ġ'
  CHECK(byte_token('\n') == "\xC4\x8A");  // U+010A 'Ċ'
  CHECK(byte_token('a') == "a");
  CHECK(byte_token(0xFF) == "\xC3\xBF");  // printable Latin-1 keeps its code point
  const SynthVocab v = make_byte_bpe_vocab(512, 1024);
  REQUIRE(v.tokens.size() == 512);
  REQUIRE(v.token_types.size() == 512);
  std::set<std::string> uniq(v.tokens.begin(), v.tokens.end());
  CHECK(uniq.size() == v.tokens.size());
  CHECK(v.merges.size() > 100);
  CHECK(v.bos_id == static_cast<int64_t>(256 + v.merges.size()));
  CHECK(v.eos_id == v.bos_id + 1);
  CHECK(v.tokens[static_cast<size_t>(v.bos_id)] == "<|bos|>");
  CHECK(v.token_types[static_cast<size_t>(v.eos_id)] == static_cast<int32_t>(TokenType::Control));
  for (size_t i = 0; i < v.merges.size(); ++i) {
    const auto sp = v.merges[i].find(' ');
    REQUIRE(sp != std::string::npos);
    const std::string a = v.merges[i].substr(0, sp), b = v.merges[i].substr(sp + 1);
    CHECK(uniq.count(a));
    CHECK(uniq.count(b));
    CHECK(v.tokens[256 + i] == a + b);
  }
  CHECK(make_byte_bpe_vocab(512, 1024).merges == v.merges);
  CHECK(make_byte_bpe_vocab(300, 1024).merges.size() == 42);
  CHECK(make_byte_bpe_vocab(129280, 1024).tokens.back().find("<|unused_") == 0);
  CHECK_THROWS_AS(make_byte_bpe_vocab(257, 10), Error);
}

TEST_CASE("--vocab-from copies every tokenizer key and sets the vocabulary size") {
  test::TempDir dir("synth-vocab");
  gguf::GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_string("tokenizer.ggml.model", "llama");
  std::vector<std::string> toks;
  for (int i = 0; i < 300; ++i) toks.push_back("tok" + std::to_string(i));
  w.set_string_array("tokenizer.ggml.tokens", toks);
  w.set_f32_array("tokenizer.ggml.scores", std::vector<float>(300, -1.0f));
  w.set_u32("tokenizer.ggml.bos_token_id", 3);
  w.set_string("tokenizer.chat_template", "{{ x }}");
  w.set_u32("unrelated.key", 1);
  const std::string src = dir.file("vocab.gguf");
  w.write(src, test::pattern_fill);

  const SynthModel m = build_synth_model({"tiny-qwen3moe", GgmlType::Q8_0, src, 3});
  const gguf::Metadata md = m.metadata_map();
  CHECK(md.require_string("tokenizer.ggml.model") == "llama");
  CHECK(*md.get_string_array("tokenizer.ggml.tokens") == toks);
  CHECK(md.get_float_array("tokenizer.ggml.scores")->size() == 300);
  CHECK(md.require_int("tokenizer.ggml.bos_token_id") == 3);
  CHECK(md.require_string("tokenizer.chat_template") == "{{ x }}");
  CHECK(!md.contains("unrelated.key"));
  CHECK(!md.contains("tokenizer.ggml.merges"));
  CHECK(md.require_int("qwen3moe.vocab_size") == 300);
  for (const auto& t : m.tensors)
    if (t.name == "token_embd.weight" || t.name == "output.weight") CHECK(t.shape.front() == 300);
  CHECK(models::load_hparams(md, "x").n_vocab == 300);

  gguf::GgufWriter empty;
  empty.set_string("general.architecture", "llama");
  empty.write(dir.file("novocab.gguf"), test::pattern_fill);
  CHECK_THROWS_WITH_AS(build_synth_model({"tiny-qwen3moe", GgmlType::Q8_0, dir.file("novocab.gguf"), 3}),
                       doctest::Contains("no tokenizer.ggml.tokens"), Error);
}

TEST_CASE("--vocab-from a ../shared model" * doctest::skip(test::no_shared())) {
  const std::string src = (test::shared_dir() / "models" / "mixtral-tiny-q8_0.gguf").string();
  const SynthModel m = build_synth_model({"tiny-mixtral", GgmlType::Q4_0, src, 1});
  const gguf::GgufModel v = gguf::GgufModel::open(src);
  const gguf::Metadata md = m.metadata_map();
  int copied = 0;
  for (const auto& k : v.metadata().keys())
    if (k.rfind("tokenizer.", 0) == 0) {
      CHECK(md.contains(k));
      ++copied;
    }
  CHECK(copied >= 8);
  CHECK(md.require_int("llama.vocab_size") == 32000);
  CHECK(m.tensors.front().shape == std::vector<int64_t>{32000, 128});
}

TEST_CASE("full-size presets: tensor lists and sizes without writing") {
  struct Expect {
    const char* preset;
    GgmlType type;
    double min_gb, max_gb;
  };
  // DeepSeek-V3 671B params at 4.5 bits ~ 380 GB; Qwen3-30B-A3B ~ 17-18 GB.
  for (const Expect& e : {Expect{"deepseek-v3", GgmlType::Q4_K, 369.0, 391.0},
                          Expect{"qwen3-30b-a3b", GgmlType::Q4_K, 17.0, 18.0},
                          Expect{"mixtral-8x7b", GgmlType::Q4_K, 25.0, 27.0},
                          Expect{"qwen3-235b-a22b", GgmlType::Q4_K, 125.0, 140.0},
                          Expect{"deepseek-v2-lite", GgmlType::Q4_K, 8.5, 10.0},
                          Expect{"olmoe-1b-7b", GgmlType::Q4_K, 3.5, 4.5},
                          Expect{"gpt-oss-20b", GgmlType::MXFP4, 11.0, 14.0},
                          // ggml-org/gpt-oss-120b-GGUF (MXFP4 experts) is about 63 GB
                          Expect{"gpt-oss-120b", GgmlType::MXFP4, 60.0, 66.0}}) {
    CAPTURE(e.preset);
    const SynthModel m = build_synth_model({e.preset, e.type, "", 0});
    const double gb = static_cast<double>(m.tensor_bytes()) / 1e9;
    CHECK(gb >= e.min_gb);
    CHECK(gb <= e.max_gb);
    const auto md = m.metadata_map();
    const auto hp = models::load_hparams(md, e.preset);
    check_hparams(hp, m.preset, m.preset.n_vocab);
    const auto s = models::compute_size_breakdown(m.tensor_infos());
    CHECK(s.total == m.tensor_bytes());
    CHECK(s.other == 0);
    CHECK(static_cast<int64_t>(s.expert_layers.size()) == hp.n_layer - hp.n_layer_dense_lead);
    CHECK(s.decode_bytes_per_token(hp.n_expert_used) < s.total);
    // The writer agrees with the tensor list (no bytes drawn).
    CHECK(m.make_writer().file_size() > m.tensor_bytes());
  }
  // DeepSeek-V3: 61 layers (3 dense), MLA, 256 experts of 3 x 2048 x 7168 Q4_K each.
  const SynthModel v3 = build_synth_model({"deepseek-r1", GgmlType::Q4_K, "", 0});
  const auto s = models::compute_size_breakdown(v3.tensor_infos());
  CHECK(s.expert_layers.size() == 58);
  CHECK(s.expert_layers.front().layer == 3);
  CHECK(s.expert_layers.front().uniform_expert_bytes() == 3ull * 2048 * 7168 / 256 * 144);
  CHECK(v3.metadata_map().require_int("deepseek2.expert_gating_func") == 2);
  // gpt-oss MXFP4: routed experts MXFP4, the other matrices Q8_0, router and biases F32.
  const SynthModel oss = build_synth_model({"gpt-oss-20b", GgmlType::MXFP4, "", 0});
  for (const auto& t : oss.tensors) {
    CAPTURE(t.name);
    const auto c = models::classify_tensor(t.name);
    if (c.role == models::TensorRole::RoutedExpert && !c.is_bias) CHECK(t.type == GgmlType::MXFP4);
    else if (t.shape.size() >= 2 && !c.is_bias && c.role != models::TensorRole::Router) CHECK(t.type == GgmlType::Q8_0);
    else CHECK(t.type == GgmlType::F32);
  }
  // Q4_K rows of 2880 (not a multiple of 256) fall back to Q5_0 as llama-quantize does.
  for (const auto& t : build_synth_model({"gpt-oss-20b", GgmlType::Q4_K, "", 0}).tensors)
    if (t.shape.size() >= 2 && t.type != GgmlType::F32) CHECK(t.type == (t.shape.back() % 256 ? GgmlType::Q5_0 : GgmlType::Q4_K));
}
