// models::load_model rejects broken models with one moetier::Error naming the file and the tensor (or
// key) and what was expected: a missing tensor, a wrong shape, an unsupported tensor type (TQ1_0), an
// F16 norm vector, gpt-oss's sinks and biases, an unsupported architecture; and it does so before any large
// allocation, even when the metadata claims huge dimensions. Models are tiny presets of `moetier synth`
// (runtime/synth) with one tensor or key patched before writing; the cases of the hyper-parameter table
// are in tests/models/hparam_cases.hpp.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <new>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "runtime/gguf/gguf_model.hpp"
#include "runtime/models/model.hpp"
#include "runtime/synth/synth_model.hpp"
#include "tests/models/hparam_cases.hpp"
#include "tests/run_util.hpp"

using namespace moetier;

// ---- the largest single operator-new request (this executable replaces the global operator new) ----
namespace {
std::atomic<size_t> g_max_alloc{0};
void* tracked_alloc(size_t n) {
  size_t cur = g_max_alloc.load(std::memory_order_relaxed);
  while (n > cur && !g_max_alloc.compare_exchange_weak(cur, n, std::memory_order_relaxed)) {
  }
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* tracked_aligned_alloc(size_t n, std::align_val_t al) {
  size_t cur = g_max_alloc.load(std::memory_order_relaxed);
  while (n > cur && !g_max_alloc.compare_exchange_weak(cur, n, std::memory_order_relaxed)) {
  }
  const size_t a = static_cast<size_t>(al);
  if (void* p = std::aligned_alloc(a, (std::max<size_t>(n, 1) + a - 1) / a * a)) return p;
  throw std::bad_alloc();
}
}  // namespace

void* operator new(size_t n) { return tracked_alloc(n); }
void* operator new[](size_t n) { return tracked_alloc(n); }
void* operator new(size_t n, std::align_val_t a) { return tracked_aligned_alloc(n, a); }
void* operator new[](size_t n, std::align_val_t a) { return tracked_aligned_alloc(n, a); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { std::free(p); }

namespace {

using test::TempDir;

synth::SynthModel preset(const std::string& name) { return test::f32_preset(name, 3); }

synth::SynthTensor& tensor(synth::SynthModel& m, const std::string& name) {
  auto it = std::find_if(m.tensors.begin(), m.tensors.end(), [&](const auto& t) { return t.name == name; });
  REQUIRE_MESSAGE(it != m.tensors.end(), "preset has no tensor " << name);
  return *it;
}

void remove_tensor(synth::SynthModel& m, const std::string& name) {
  (void)tensor(m, name);
  std::erase_if(m.tensors, [&](const auto& t) { return t.name == name; });
}

/// Sets (or adds) metadata key `key`.
void set_key(synth::SynthModel& m, const std::string& key, gguf::Value v) {
  auto it = std::find_if(m.metadata.begin(), m.metadata.end(), [&](const auto& kv) { return kv.first == key; });
  if (it == m.metadata.end()) m.metadata.emplace_back(key, std::move(v));
  else it->second = std::move(v);
}

/// Writes `m` with zero bytes (loading never reads the values).
std::string write(const TempDir& dir, const synth::SynthModel& m, const std::string& name) {
  const std::string path = dir.file(name);
  m.make_writer().write(path, [](size_t, uint64_t, std::span<std::byte> out) {
    std::fill(out.begin(), out.end(), std::byte{0});
  });
  return path;
}

/// load_model's error message; FAILs if it loads. Records the largest allocation made meanwhile.
std::string load_error(const std::string& path, size_t* max_alloc = nullptr) {
  auto g = gguf::GgufModel::open(path);
  g_max_alloc.store(0);
  try {
    auto model = models::load_model(g);
  } catch (const Error& e) {
    if (max_alloc) *max_alloc = g_max_alloc.load();
    return e.what();
  }
  FAIL("load_model accepted " << path);
  return {};
}

void check_msg(const std::string& msg, std::initializer_list<std::string> parts) {
  CAPTURE(msg);
  for (const auto& p : parts) CHECK_MESSAGE(msg.find(p) != std::string::npos, "lacks \"" << p << "\"");
  CHECK(msg.find('\n') == std::string::npos);  // one line
}

constexpr size_t kSmallAlloc = 1 << 20;  // the tiny models' own bookkeeping stays far below 1 MiB

}  // namespace

TEST_CASE("the unpatched tiny presets load and run (control for the cases below)") {
  TempDir dir;
  for (const char* name : {"tiny-mixtral", "tiny-qwen3moe", "tiny-deepseek2", "tiny-gpt-oss"}) {
    CAPTURE(name);
    synth::SynthModel m = preset(name);
    const std::string path = dir.file(std::string(name) + ".gguf");
    synth::write_synth_model(m, path);
    auto g = gguf::GgufModel::open(path);
    auto model = models::load_model(g);
    REQUIRE(model != nullptr);
    auto cache = model->new_cache(8);
    std::vector<float> logits;
    const std::vector<int32_t> toks = {1, 2, 3};
    model->forward(toks, cache, logits);
    CHECK(static_cast<int64_t>(logits.size()) == model->hparams().n_vocab);
    CHECK(std::all_of(logits.begin(), logits.end(), [](float x) { return std::isfinite(x); }));
  }
}

TEST_CASE("a missing tensor is named with the file") {
  TempDir dir;
  for (const char* name : {"blk.1.ffn_up_exps.weight", "blk.0.attn_k.weight", "output_norm.weight",
                           "token_embd.weight", "blk.1.ffn_gate_inp.weight", "blk.0.attn_norm.weight"}) {
    CAPTURE(name);
    synth::SynthModel m = preset("tiny-mixtral");
    remove_tensor(m, name);
    const std::string path = write(dir, m, "missing.gguf");
    size_t max_alloc = 0;
    const std::string msg = load_error(path, &max_alloc);
    check_msg(msg, {path, name, "missing"});
    CHECK(max_alloc < kSmallAlloc);
  }
  // MLA tensors of deepseek2.
  for (const char* name : {"blk.1.attn_kv_a_mqa.weight", "blk.2.attn_v_b.weight", "blk.0.attn_k_b.weight"}) {
    CAPTURE(name);
    synth::SynthModel m = preset("tiny-deepseek2");
    remove_tensor(m, name);
    const std::string path = write(dir, m, "missing-ds.gguf");
    check_msg(load_error(path), {path, name, "missing"});
  }
  // gpt-oss: sinks, attention biases, router and expert biases are all required (as in llama.cpp).
  for (const char* name : {"blk.1.attn_sinks.weight", "blk.0.attn_q.bias", "blk.1.attn_output.bias",
                           "blk.0.ffn_gate_inp.bias", "blk.1.ffn_down_exps.bias", "blk.0.post_attention_norm.weight"}) {
    CAPTURE(name);
    synth::SynthModel m = preset("tiny-gpt-oss");
    remove_tensor(m, name);
    const std::string path = write(dir, m, "missing-oss.gguf");
    check_msg(load_error(path), {path, name, "missing"});
  }
  {
    synth::SynthModel m = preset("tiny-gpt-oss");
    test::to_legacy_experts(m, 1, 8);
    const std::string path = write(dir, m, "legacy-oss.gguf");
    check_msg(load_error(path), {path, "blk.1.ffn_gate_exps.weight", "stacked"});
  }
}

TEST_CASE("a wrong shape is named with the file, the tensor, the shape and the expected shape") {
  TempDir dir;
  {
    synth::SynthModel m = preset("tiny-mixtral");
    tensor(m, "blk.0.attn_q.weight").shape = {128, 64};  // expected {128, 128}
    const std::string path = write(dir, m, "shape.gguf");
    check_msg(load_error(path), {path, "blk.0.attn_q.weight", "{128, 64}", "{128, 128}"});
  }
  {
    synth::SynthModel m = preset("tiny-mixtral");
    tensor(m, "blk.1.ffn_gate_exps.weight").shape = {7, 256, 128};  // 7 experts instead of 8
    const std::string path = write(dir, m, "shape3.gguf");
    check_msg(load_error(path), {path, "blk.1.ffn_gate_exps.weight", "{7, 256, 128}", "{8, 256, 128}"});
  }
  {
    synth::SynthModel m = preset("tiny-qwen3moe");
    tensor(m, "blk.0.attn_k_norm.weight").shape = {16};  // per-head norm of width 32
    const std::string path = write(dir, m, "shape-norm.gguf");
    check_msg(load_error(path), {path, "blk.0.attn_k_norm.weight", "32"});
  }
  {
    synth::SynthModel m = preset("tiny-gpt-oss");
    tensor(m, "blk.1.attn_sinks.weight").shape = {5};  // one sink per query head: 4
    const std::string path = write(dir, m, "shape-sinks.gguf");
    check_msg(load_error(path), {path, "blk.1.attn_sinks.weight", "4"});
  }
}

TEST_CASE("an unsupported tensor type (TQ1_0) or a non-F32 norm is rejected by name") {
  TempDir dir;
  {
    synth::SynthModel m = preset("tiny-mixtral");
    tensor(m, "blk.0.ffn_down_exps.weight").type = GgmlType::TQ1_0;  // rows of 256 = one TQ1_0 block
    const std::string path = write(dir, m, "tq1.gguf");
    size_t max_alloc = 0;
    check_msg(load_error(path, &max_alloc), {path, "blk.0.ffn_down_exps.weight", "TQ1_0", "unsupported"});
    CHECK(max_alloc < kSmallAlloc);
  }
  {
    synth::SynthModel m = preset("tiny-mixtral");
    tensor(m, "blk.1.ffn_norm.weight").type = GgmlType::F16;
    const std::string path = write(dir, m, "f16norm.gguf");
    check_msg(load_error(path), {path, "blk.1.ffn_norm.weight", "F16", "F32"});
  }
}

TEST_CASE("an unsupported architecture names the file and the architecture") {
  TempDir dir;
  {
    synth::SynthModel m = preset("tiny-mixtral");
    set_key(m, "general.architecture", gguf::Value{gguf::ValueType::STRING, std::string("mamba")});
    const std::string path = write(dir, m, "mamba.gguf");
    check_msg(load_error(path), {path, "mamba", "unsupported architecture"});
  }
}

TEST_CASE("metadata claiming huge dimensions fails on the first mismatch, before any large allocation") {
  TempDir dir;
  struct Case {
    const char* key;
    uint64_t value;
    const char* tensor;  // named in the error
  };
  const Case cases[] = {
      {"llama.block_count", uint64_t{1} << 30, "blk.2."},           // 2 layers present of 2^30 claimed
      {"llama.vocab_size", uint64_t{1} << 40, "token_embd.weight"},  // embedding has 512 rows
      {"llama.expert_count", uint64_t{1} << 30, "blk.0.ffn_gate_inp.weight"},
      {"llama.feed_forward_length", uint64_t{1} << 34, "blk.0.ffn_gate_exps.weight"},
      {"llama.block_count", 0xFFFFFFFFu, "llama.block_count"},  // 2^32-1 layers claimed, 2 present
      {"llama.block_count", uint64_t{1} << 62, "llama.block_count"},
      {"llama.rope.dimension_count", 1000, "llama.rope.dimension_count"},
      {"llama.attention.head_count", uint64_t{1} << 40, "llama.attention.key_length"},  // head dim 0
      {"llama.attention.head_count_kv", uint64_t{1} << 40, "llama.attention.head_count_kv"},
      {"llama.attention.key_length", uint64_t{1} << 40, "blk.0.attn_q.weight"},
      {"llama.expert_used_count", uint64_t{1} << 40, "llama.expert_used_count"},
      {"llama.context_length", uint64_t{1} << 40, "llama.context_length"},
  };
  // The tracker sees allocations made through std containers (so a small maximum below means something).
  g_max_alloc.store(0);
  {
    std::vector<char> big(2 * kSmallAlloc, 1);
    volatile char* p = big.data();
    p[kSmallAlloc] = 2;
    CHECK(p[kSmallAlloc] == 2);
  }
  CHECK(g_max_alloc.load() >= 2 * kSmallAlloc);
  for (const Case& c : cases) {
    const std::string key = c.key;
    CAPTURE(key);
    synth::SynthModel m = preset("tiny-mixtral");
    set_key(m, c.key, gguf::Value{gguf::ValueType::UINT64, c.value});
    const std::string path = write(dir, m, "huge.gguf");
    size_t max_alloc = 0;
    check_msg(load_error(path, &max_alloc), {path, c.tensor});
    CHECK(max_alloc < kSmallAlloc);
  }
}

TEST_CASE("load_model rejects every hostile hyper-parameter case in one line naming the file and the key / tensor, "
          "before any large allocation") {
  TempDir dir;
  for (const test::HparamCase& c : test::hparam_cases()) {
    const std::string rule = c.rule, preset_name = c.preset;
    CAPTURE(rule);
    CAPTURE(preset_name);
    synth::SynthModel m = preset(c.preset);
    c.patch(m);
    const std::string path = write(dir, m, "case.gguf");
    size_t max_alloc = 0;
    const std::string msg = load_error(path, &max_alloc);
    std::vector<std::string> parts = c.parts;
    parts.push_back(path);
    for (const auto& p : parts) CHECK_MESSAGE(msg.find(p) != std::string::npos, msg << " lacks \"" << p << "\"");
    CHECK(msg.find('\n') == std::string::npos);
    CHECK(max_alloc < kSmallAlloc);
  }
}

TEST_CASE("a shared expert the architecture has cannot be dropped: its missing tensors are named") {
  // deepseek2 with expert_shared_count > 0 and qwen2moe (always) ran without the shared expert, exit 0,
  // when ffn_gate_shexp was missing (and with none of the three).
  TempDir dir;
  struct Case {
    const char* preset;
    std::vector<std::string> removed;
    const char* named;  // the tensor the message names
  };
  const Case cases[] = {
      {"tiny-deepseek2", {"blk.1.ffn_gate_shexp.weight"}, "blk.1.ffn_gate_shexp.weight"},
      {"tiny-deepseek2",
       {"blk.2.ffn_gate_shexp.weight", "blk.2.ffn_up_shexp.weight", "blk.2.ffn_down_shexp.weight"},
       "blk.2.ffn_gate_shexp.weight"},
      {"tiny-deepseek-v2-lite", {"blk.1.ffn_gate_shexp.weight"}, "blk.1.ffn_gate_shexp.weight"},
      {"tiny-qwen2moe", {"blk.0.ffn_gate_shexp.weight"}, "blk.0.ffn_gate_shexp.weight"},
      {"tiny-qwen2moe",
       {"blk.1.ffn_gate_shexp.weight", "blk.1.ffn_up_shexp.weight", "blk.1.ffn_down_shexp.weight",
        "blk.1.ffn_gate_inp_shexp.weight"},
       "blk.1.ffn_gate_shexp.weight"},
      {"tiny-qwen2moe", {"blk.1.ffn_gate_inp_shexp.weight"}, "blk.1.ffn_gate_inp_shexp.weight"},
      {"tiny-qwen2moe", {"blk.0.attn_q.bias"}, "blk.0.attn_q.bias"},
      {"tiny-qwen2moe", {"blk.1.attn_v.bias"}, "blk.1.attn_v.bias"},
  };
  for (const Case& c : cases) {
    const std::string preset_name = c.preset, named = c.named;
    CAPTURE(preset_name);
    CAPTURE(named);
    synth::SynthModel m = preset(c.preset);
    for (const auto& t : c.removed) remove_tensor(m, t);
    const std::string path = write(dir, m, "no-shexp.gguf");
    check_msg(load_error(path), {path, c.named, "missing"});
  }
  // Control: deepseek2 with expert_shared_count 0 and no shared tensors loads.
  synth::SynthModel m = preset("tiny-deepseek2");
  test::set_uint(m, "deepseek2.expert_shared_count", 0);
  std::erase_if(m.tensors, [](const auto& t) { return t.name.find("_shexp") != std::string::npos; });
  const std::string path = write(dir, m, "no-shared.gguf");
  auto g = gguf::GgufModel::open(path);
  CHECK_NOTHROW((void)models::load_model(g));
}
