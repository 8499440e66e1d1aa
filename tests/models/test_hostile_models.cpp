// Hostile model files through the built binary (MOETIER_BIN): `moetier run` and `moetier inspect` reject
// every hyper-parameter case of tests/models/hparam_cases.hpp, the repros on
// ../shared/models/mixtral-tiny-q8_0.gguf (rope dims 32 / 64 / 1000 crashed, 17 / 18 changed the logits
// silently; NaN epsilon / freq_base; expert_count 896; block_count 2^32-1; bos id and token types outside
// the vocabulary) and broken tokenizer keys with exit status 1 and one line naming the key or tensor,
// never a crash; NaN / inf weights stop `run` (text, --json, --dump-logits) with an error naming the
// position instead of printing tokens computed from them (the old code exited 0 with tokens [0,0,0,0]).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/half.hpp"
#include "runtime/gguf/gguf_model.hpp"
#include "runtime/models/model.hpp"
#include "runtime/synth/synth_model.hpp"
#include "tests/models/hparam_cases.hpp"
#include "tests/run_util.hpp"
#include "tests/shared_data.hpp"

using namespace moetier;
using test::RunResult;
using test::TempDir;

namespace {

using test::check_one_line_error;

synth::SynthModel preset(const std::string& name) { return test::f32_preset(name, 11); }

/// Writes `m` with its seeded random weights, tensor `poison` (F32) filled with `value` instead.
void write_model(const synth::SynthModel& m, const std::string& path, const std::string& poison = "",
                 float value = 0.0f) {
  size_t target = m.tensors.size();
  for (size_t i = 0; i < m.tensors.size(); ++i)
    if (m.tensors[i].name == poison) target = i;
  REQUIRE((poison.empty() || (target < m.tensors.size() && m.tensors[target].type == GgmlType::F32)));
  const auto fill = m.fill_fn();
  m.make_writer().write(path, [&](size_t ti, uint64_t off, std::span<std::byte> out) {
    if (ti != target) return fill(ti, off, out);
    for (size_t i = 0; i + 4 <= out.size(); i += 4) std::memcpy(out.data() + i, &value, 4);
  });
}

/// The offset of the value of metadata key `key` in GGUF bytes (after the key's u32 type id).
size_t value_at(const std::string& bytes, const std::string& key) {
  const size_t at = bytes.find(key);
  REQUIRE_MESSAGE(at != std::string::npos, "no key " << key);
  REQUIRE(bytes.find(key, at + 1) == std::string::npos);
  return at + key.size() + 4;
}

template <typename T>
void put(std::string& bytes, size_t at, T v) {
  REQUIRE(at + sizeof v <= bytes.size());
  std::memcpy(bytes.data() + at, &v, sizeof v);
}

const std::vector<std::string> kRun = {"run", "-p", "Hello world", "-n", "4", "--temp", "0"};
std::vector<std::string> run_args(const std::string& model, std::vector<std::string> extra = {}) {
  std::vector<std::string> a = kRun;
  a.insert(a.begin() + 1, {"-m", model});
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

}  // namespace

TEST_CASE("run and inspect reject every hostile hyper-parameter case with one line naming the key / tensor") {
  TempDir dir;
  // Controls: every unpatched tiny preset inspects, gpt-oss included.
  for (const auto& p : synth::all_presets()) {
    if (!p.tiny) continue;
    CAPTURE(p.name);
    const std::string path = dir.file("control.gguf");
    preset(p.name).make_writer().write(path, [](size_t, uint64_t, std::span<std::byte> out) {
      std::fill(out.begin(), out.end(), std::byte{0});
    });
    const RunResult r = test::run_moetier(dir, {"inspect", path});
    CAPTURE(r.err);
    CHECK(r.status == 0);
    CHECK(r.out.find("hyper-parameters") != std::string::npos);
  }
  for (const test::HparamCase& c : test::hparam_cases()) {
    const std::string rule = c.rule, preset_name = c.preset;
    CAPTURE(rule);
    CAPTURE(preset_name);
    synth::SynthModel m = preset(c.preset);
    c.patch(m);
    const std::string path = dir.file("case.gguf");
    m.make_writer().write(path, [](size_t, uint64_t, std::span<std::byte> out) {
      std::fill(out.begin(), out.end(), std::byte{0});  // never read: the checks come first
    });
    std::vector<std::string> parts = c.parts;
    parts.push_back(path);
    check_one_line_error(test::run_moetier(dir, run_args(path)), parts);
    check_one_line_error(test::run_moetier(dir, {"inspect", path}), parts);
    check_one_line_error(test::run_moetier(dir, {"inspect", "--json", path}), parts);
  }
}

TEST_CASE("the issue's repros on mixtral-tiny-q8_0.gguf: one line, exit 1, never a crash" *
          doctest::skip(test::no_shared())) {
  const std::string src = (test::shared_dir() / "models" / "mixtral-tiny-q8_0.gguf").string();
  const std::string original = test::slurp(src);
  REQUIRE(!original.empty());
  TempDir dir;
  {  // control: the unpatched model runs and inspects
    CHECK(test::run_moetier(dir, run_args(src)).status == 0);
    CHECK(test::run_moetier(dir, {"inspect", src}).status == 0);
  }
  struct Case {
    const char* key;
    bool is_float;
    double value;
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Case cases[] = {
      {"llama.rope.dimension_count", false, 32},  // double free or corruption, exit 134
      {"llama.rope.dimension_count", false, 64},  // SIGSEGV
      {"llama.rope.dimension_count", false, 1000},
      {"llama.rope.dimension_count", false, 17},  // accepted, logits changed
      {"llama.rope.dimension_count", false, 18},
      {"llama.expert_count", false, 896},
      {"llama.block_count", false, 4294967295.0},
      {"llama.attention.head_count_kv", false, 3},
      {"llama.attention.layer_norm_rms_epsilon", true, nan},
      {"llama.attention.layer_norm_rms_epsilon", true, -1},
      {"llama.attention.layer_norm_rms_epsilon", true, 1e38},  // all logits 0, exit 0
      {"llama.rope.freq_base", true, nan},
      {"llama.rope.freq_base", true, 0},
      {"tokenizer.ggml.bos_token_id", false, 32000},
      {"tokenizer.ggml.unknown_token_id", false, 4000000000.0},
  };
  for (const Case& c : cases) {
    const std::string key = c.key;
    CAPTURE(key);
    CAPTURE(c.value);
    std::string bytes = original;
    if (c.is_float)
      put(bytes, value_at(bytes, c.key), static_cast<float>(c.value));
    else
      put(bytes, value_at(bytes, c.key), static_cast<uint32_t>(c.value));
    const std::string path = dir.file("patched.gguf");
    test::spit(path, bytes);
    check_one_line_error(test::run_moetier(dir, run_args(path)), {path, c.key});
    check_one_line_error(test::run_moetier(dir, {"inspect", path}), {path, c.key});
  }
  {  // token_type 9 (outside the enum) for token 300
    std::string bytes = original;
    const size_t arr = value_at(bytes, "tokenizer.ggml.token_type");  // u32 elem type, u64 count, i32 values
    put(bytes, arr + 4 + 8 + 300 * 4, int32_t{9});
    const std::string path = dir.file("types.gguf");
    test::spit(path, bytes);
    check_one_line_error(test::run_moetier(dir, run_args(path)), {path, "tokenizer.ggml.token_type[300]", "9"});
    check_one_line_error(test::run_moetier(dir, {"inspect", path}), {path, "tokenizer.ggml.token_type[300]"});
  }
  {  // token 300 typed byte (6), though its text is not <0xHH>: rendered as a NUL byte before
    std::string bytes = original;
    put(bytes, value_at(bytes, "tokenizer.ggml.token_type") + 4 + 8 + 300 * 4, int32_t{6});
    const std::string path = dir.file("byte-type.gguf");
    test::spit(path, bytes);
    check_one_line_error(test::run_moetier(dir, run_args(path)), {path, "tokenizer.ggml.token_type[300]", "<0xHH>"});
    check_one_line_error(test::run_moetier(dir, {"inspect", path}), {path, "tokenizer.ggml.tokens[300]"});
  }
  for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    CAPTURE(bad);  // score of token 300 (f32 array): accepted before, changing the SentencePiece merges
    std::string bytes = original;
    const size_t arr = value_at(bytes, "tokenizer.ggml.scores");
    const uint32_t f32_id = 6;  // array<float32>
    REQUIRE(std::memcmp(bytes.data() + arr, &f32_id, 4) == 0);
    put(bytes, arr + 4 + 8 + 300 * 4, bad);
    const std::string path = dir.file("scores.gguf");
    test::spit(path, bytes);
    check_one_line_error(test::run_moetier(dir, run_args(path)), {path, "tokenizer.ggml.scores[300]"});
    check_one_line_error(test::run_moetier(dir, {"inspect", path}), {path, "tokenizer.ggml.scores[300]"});
  }
}

TEST_CASE("tokenizer keys outside the vocabulary or the token-type enum: run and inspect exit 1 naming the key") {
  TempDir dir;
  struct Case {
    const char* what;
    std::function<void(synth::SynthModel&)> patch;
    std::string part;
  };
  const Case cases[] = {
      {"bos id = n_vocab", [](synth::SynthModel& m) { test::set_uint(m, "tokenizer.ggml.bos_token_id", 512); },
       "tokenizer.ggml.bos_token_id"},
      {"eos id huge", [](synth::SynthModel& m) { test::set_uint(m, "tokenizer.ggml.eos_token_id", 1u << 31); },
       "tokenizer.ggml.eos_token_id"},
      {"pad id", [](synth::SynthModel& m) { test::set_uint(m, "tokenizer.ggml.padding_token_id", 600); },
       "tokenizer.ggml.padding_token_id"},
      {"token type 7",
       [](synth::SynthModel& m) {
         for (auto& [k, v] : m.metadata)
           if (k == "tokenizer.ggml.token_type") {
             auto a = std::make_shared<gguf::Array>(v.as_array());
             for (auto& item : a->items) item.data = int64_t{7};  // every token: all rendered empty before
             v.data = std::shared_ptr<const gguf::Array>(a);
           }
       },
       "tokenizer.ggml.token_type[0]"},
  };
  for (const Case& c : cases) {
    const std::string what = c.what;
    CAPTURE(what);
    synth::SynthModel m = preset("tiny-mixtral");
    c.patch(m);
    const std::string path = dir.file("tok.gguf");
    write_model(m, path);
    check_one_line_error(test::run_moetier(dir, run_args(path)), {path, c.part});
    check_one_line_error(test::run_moetier(dir, {"inspect", path}), {path, c.part});
  }
}

TEST_CASE("NaN / inf weights: run stops with the position before printing anything computed from them") {
  TempDir dir;
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  {  // control: the same model without poison runs, and its --json has tokens
    const std::string path = dir.file("clean.gguf");
    write_model(preset("tiny-mixtral"), path);
    const RunResult r = test::run_moetier(dir, run_args(path, {"--json"}));
    CHECK(r.status == 0);
    CHECK(r.out.find("generated_tokens") != std::string::npos);
  }
  struct Case {
    const char* preset;
    const char* tensor;
    float value;
  };
  const Case cases[] = {
      {"tiny-mixtral", "blk.0.ffn_gate_inp.weight", nan},   // router (the issue: tokens [0,0,0,0], exit 0)
      {"tiny-mixtral", "blk.1.ffn_down_exps.weight", inf},  // every expert of a layer
      {"tiny-mixtral", "output_norm.weight", nan},         {"tiny-qwen3moe", "blk.1.ffn_gate_exps.weight", -inf},
      {"tiny-deepseek2", "blk.0.ffn_up.weight", nan},  // dense layer
  };
  for (const Case& c : cases) {
    const std::string preset_name = c.preset, tensor = c.tensor;
    CAPTURE(preset_name);
    CAPTURE(tensor);
    const std::string path = dir.file("poisoned.gguf");
    write_model(preset(c.preset), path, c.tensor, c.value);
    {
      const RunResult r = test::run_moetier(dir, run_args(path));
      check_one_line_error(r, {path, "non-finite", "at position"});
      CHECK(r.out == "Hello world");  // the echoed prompt, and no generated text
    }
    {
      const RunResult r = test::run_moetier(dir, run_args(path, {"--json"}));
      check_one_line_error(r, {path, "non-finite"});
      CHECK(r.out.empty());
    }
    {
      const std::string dump = dir.file("logits.f32");
      const RunResult r = test::run_moetier(dir, run_args(path, {"--no-display-prompt", "--dump-logits", dump}));
      check_one_line_error(r, {path, "non-finite"});
      CHECK(r.out.empty());
      CHECK_FALSE(std::filesystem::exists(dump));
    }
  }
}

TEST_CASE("NaN weights of ../shared's mixtral-tiny-f32 router: exit 1 (was exit 0 with tokens [0,0,0,0])" *
          doctest::skip(test::no_shared())) {
  const std::string src = (test::shared_dir() / "models" / "mixtral-tiny-f32.gguf").string();
  std::string bytes = test::slurp(src);
  const gguf::TensorInfo info = [&] {
    auto g = gguf::GgufModel::open(src);
    return *g.find("blk.0.ffn_gate_inp.weight");
  }();
  REQUIRE(info.type == GgmlType::F32);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (uint64_t i = 0; i < info.n_bytes; i += 4) put(bytes, info.offset + i, nan);
  TempDir dir;
  const std::string path = dir.file("nan-router.gguf");
  test::spit(path, bytes);
  check_one_line_error(test::run_moetier(dir, run_args(path, {"--json"})), {path, "non-finite", "at position"});
}

TEST_CASE("Model::forward names the position (and, in debug builds, the layer) of non-finite values") {
  TempDir dir;
  const std::string path = dir.file("poisoned.gguf");
  write_model(preset("tiny-mixtral"), path, "blk.1.ffn_down_exps.weight", std::numeric_limits<float>::infinity());
  auto g = gguf::GgufModel::open(path);
  auto model = models::load_model(g);
  auto cache = model->new_cache(8);
  std::vector<float> logits;
  const std::vector<int32_t> toks = {1, 2, 3};
  try {
    model->forward(toks, cache, logits);
    FAIL("forward accepted non-finite logits");
  } catch (const Error& e) {
    const std::string msg = e.what();
    CAPTURE(msg);
    CHECK(msg.find(path) != std::string::npos);
#ifdef NDEBUG
    CHECK(msg.find("non-finite logits at position 2") != std::string::npos);  // the last prompt position
#else
    // Layer 1 is the last of 2: it carries only the last position's row.
    CHECK(msg.find("after layer 1 at position 2") != std::string::npos);
#endif
  }
  // An exp_probs_b score bias only steers the routing (it never reaches the logits): checked at load.
  const std::string ds = dir.file("nan-bias.gguf");
  write_model(preset("tiny-deepseek2"), ds, "blk.2.exp_probs_b.bias", std::numeric_limits<float>::quiet_NaN());
  auto gd = gguf::GgufModel::open(ds);
  try {
    (void)models::load_model(gd);
    FAIL("load_model accepted a NaN score bias");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("blk.2.exp_probs_b.bias") != std::string::npos);
  }
}

namespace {

/// `bytes` of GGUF `path` with the first value of `tensor` (of every row when all_rows) set to `value`:
/// the f32 element of F32 tensors, else the fp16 scale d that F16, Q4_0..Q8_0, Q4_K and Q5_K rows start with.
std::string poison_first(const std::string& path, const std::string& tensor, float value, bool all_rows) {
  std::string bytes = test::slurp(path);
  auto g = gguf::GgufModel::open(path);
  const gguf::TensorInfo* info = g.find(tensor);
  REQUIRE_MESSAGE(info != nullptr, "no tensor " << tensor);
  const uint64_t row_bytes = ggml_row_bytes(info->type, static_cast<uint64_t>(info->row_size()));
  const int64_t rows = all_rows ? info->n_rows() : 1;
  for (int64_t r = 0; r < rows; ++r) {
    const size_t at = info->offset + static_cast<uint64_t>(r) * row_bytes;
    switch (info->type) {
      case GgmlType::F32: put(bytes, at, value); break;
      case GgmlType::F16: case GgmlType::Q4_0: case GgmlType::Q4_1: case GgmlType::Q5_0: case GgmlType::Q5_1:
      case GgmlType::Q8_0: case GgmlType::Q4_K: case GgmlType::Q5_K: put(bytes, at, f32_to_fp16(value)); break;
      default: FAIL("poison_first: no scale at the start of a ", ggml_type_name(info->type), " row");
    }
  }
  return bytes;
}

/// `run` of `path` (text and --json) stops with one line naming the file and non-finite values: no
/// generated text, empty --json.
void check_stops_non_finite(TempDir& dir, const std::string& path) {
  {
    const RunResult r = test::run_moetier(dir, run_args(path));
    check_one_line_error(r, {path, "non-finite", "at position"});
    CHECK(r.out == "Hello world");  // the echoed prompt only
  }
  {
    const RunResult r = test::run_moetier(dir, run_args(path, {"--json"}));
    check_one_line_error(r, {path, "non-finite"});
    CHECK(r.out.empty());
  }
}

struct PoisonSite {
  const char* tensor;
  bool all_rows;  // every expert's first row block (so that a chosen expert is hit), else the first value
};
// Router (F32), an fp16 scale of attn_output / attn_q / the experts' gate, ffn_norm (F32): quantised
// activations dropped NaN (max(amax, NaN) keeps amax; an all-NaN hidden state quantised to d = 0), so these
// gave exit 0 with tokens [0,0,0,0] or changed tokens.
const PoisonSite kSites[] = {{"blk.0.ffn_gate_inp.weight", false}, {"blk.0.attn_output.weight", false},
                             {"blk.0.ffn_norm.weight", false},     {"blk.0.ffn_gate_exps.weight", true},
                             {"blk.0.attn_q.weight", false}};

}  // namespace

TEST_CASE("NaN / inf in quantised models (Q8_0 / Q4_K scales, router, norms): run stops, prints nothing") {
  TempDir dir;
  const float values[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()};
  for (GgmlType type : {GgmlType::Q8_0, GgmlType::Q4_K}) {
    synth::SynthOptions o;
    o.preset = "tiny-mixtral";
    o.type = type;
    o.seed = 5;
    const synth::SynthModel m = synth::build_synth_model(o);
    std::string clean_name = "clean-";
    clean_name += ggml_type_name(type);
    const std::string clean = dir.file(clean_name + ".gguf");
    write_model(m, clean);
    CHECK(test::run_moetier(dir, run_args(clean, {"--json"})).status == 0);  // control
    for (const PoisonSite& s : kSites)
      for (float v : values) {
        const std::string type_name(ggml_type_name(type)), tensor = s.tensor;
        CAPTURE(type_name);
        CAPTURE(tensor);
        CAPTURE(v);
        const std::string path = dir.file("poisoned.gguf");
        test::spit(path, poison_first(clean, s.tensor, v, s.all_rows));
        check_stops_non_finite(dir, path);
      }
  }
}

TEST_CASE("NaN / inf in ../shared's mixtral-tiny-q8_0 (the reviewer's offsets): run stops, prints nothing" *
          doctest::skip(test::no_shared())) {
  const std::string src = (test::shared_dir() / "models" / "mixtral-tiny-q8_0.gguf").string();
  TempDir dir;
  const float values[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity()};
  for (const PoisonSite& s : kSites)
    for (float v : values) {
      const std::string tensor = s.tensor;
      CAPTURE(tensor);
      CAPTURE(v);
      const std::string path = dir.file("poisoned.gguf");
      test::spit(path, poison_first(src, s.tensor, v, false));  // the first value only, as reported
      check_stops_non_finite(dir, path);
    }
}

TEST_CASE("../shared's deepseek2-tiny-q8_0 without its shared-expert tensors: run exits 1 naming the tensor" *
          doctest::skip(test::no_shared())) {
  // Renaming a tensor (same length) drops it from the file without rewriting the layout. The old code ran
  // without the shared expert, exit 0.
  const std::string src = (test::shared_dir() / "models" / "deepseek2-tiny-q8_0.gguf").string();
  const std::string original = test::slurp(src);
  TempDir dir;
  const std::vector<std::vector<std::string>> drops = {
      {"blk.1.ffn_gate_shexp.weight"},
      {"blk.1.ffn_gate_shexp.weight", "blk.1.ffn_up_shexp.weight", "blk.1.ffn_down_shexp.weight"}};
  for (const auto& drop : drops) {
    CAPTURE(drop.size());
    std::string bytes = original;
    for (const std::string& name : drop) {
      const size_t at = bytes.find(name);
      REQUIRE(at != std::string::npos);
      REQUIRE(bytes.find(name, at + 1) == std::string::npos);
      bytes[at + name.find("shexp") + 4] = 'q';  // ..._shexq.weight: not a tensor the model asks for
    }
    const std::string path = dir.file("no-shexp.gguf");
    test::spit(path, bytes);
    const RunResult r = test::run_moetier(dir, run_args(path));
    check_one_line_error(r, {path, "missing tensor blk.1.ffn_gate_shexp.weight"});
    CHECK(r.out.empty());
  }
}
