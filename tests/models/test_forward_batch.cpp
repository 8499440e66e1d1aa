// Model::forward_batch (the server's decode step over several sequences): every sequence's logits are
// the bits forward() gives for it alone, on the shared llama.cpp models (Q8_0 and F32) and on synth
// Q4_K / Q5_0 models where experts chosen by many sequences take the tile and AMX kernels.
#include <doctest/doctest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "runtime/gguf/gguf_model.hpp"
#include "runtime/models/model.hpp"
#include "runtime/synth/synth_model.hpp"
#include "tests/run_util.hpp"
#include "tests/shared_data.hpp"

using namespace moetier;

namespace {

int32_t argmax(const std::vector<float>& v) {
  size_t best = 0;
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] > v[best]) best = i;
  return static_cast<int32_t>(best);
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

/// n_seq sequences with prompts of different lengths, then `steps` greedy decode steps: once each alone
/// through forward(), once together through forward_batch(). Returns the number of (sequence, step)
/// logits rows that differ in any bit (0 expected). The first step of the batched run mixes a 2-token
/// chunk with 1-token chunks.
int differing_rows(const std::string& path, int n_seq, int steps) {
  const auto g = gguf::GgufModel::open(path);
  auto model = models::load_model(g);
  const int64_t n_vocab = model->hparams().n_vocab;
  std::mt19937 rng(11);
  std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(n_seq));
  for (int s = 0; s < n_seq; ++s)
    for (int i = 0; i < 3 + 2 * s; ++i)
      prompts[static_cast<size_t>(s)].push_back(static_cast<int32_t>(rng() % static_cast<uint32_t>(n_vocab)));
  // Step 0 feeds two tokens to sequence 0 (the rest of its prompt) and one to the others.
  const auto step_tokens = [&](int s, int step, int32_t prev) {
    if (step == 0 && s == 0) return std::vector<int32_t>{prev, static_cast<int32_t>(7 % n_vocab)};
    return std::vector<int32_t>{prev};
  };

  std::vector<std::vector<std::vector<float>>> alone(static_cast<size_t>(n_seq));
  for (int s = 0; s < n_seq; ++s) {
    auto cache = model->new_cache(64);
    std::vector<float> logits;
    model->set_batch_invariant(false);  // prompts as `run` prefills them (llama.cpp's batch orders)
    model->forward(prompts[static_cast<size_t>(s)], cache, logits);
    model->set_batch_invariant(true);  // the server's decode steps
    for (int step = 0; step < steps; ++step) {
      model->forward(step_tokens(s, step, argmax(logits)), cache, logits);
      alone[static_cast<size_t>(s)].push_back(logits);
    }
  }

  std::vector<models::KvCache> caches;
  std::vector<std::vector<float>> logits(static_cast<size_t>(n_seq));
  model->set_batch_invariant(false);
  for (int s = 0; s < n_seq; ++s) {
    caches.push_back(model->new_cache(64));
    model->forward(prompts[static_cast<size_t>(s)], caches.back(), logits[static_cast<size_t>(s)]);
  }
  int differ = 0;
  model->set_batch_invariant(true);
  for (int step = 0; step < steps; ++step) {
    std::vector<std::vector<int32_t>> toks;
    for (int s = 0; s < n_seq; ++s) toks.push_back(step_tokens(s, step, argmax(logits[static_cast<size_t>(s)])));
    std::vector<models::Model::SeqChunk> chunks;
    for (int s = 0; s < n_seq; ++s)
      chunks.push_back({toks[static_cast<size_t>(s)], &caches[static_cast<size_t>(s)], &logits[static_cast<size_t>(s)]});
    model->forward_batch(chunks);
    for (int s = 0; s < n_seq; ++s)
      if (!same_bits(logits[static_cast<size_t>(s)], alone[static_cast<size_t>(s)][static_cast<size_t>(step)])) ++differ;
  }
  return differ;
}

}  // namespace

TEST_CASE("forward_batch: each sequence gets the bits of running it alone (shared llama.cpp models)" *
          doctest::skip(test::no_shared())) {
  for (const char* stem : {"mixtral-tiny-q8_0", "qwen3moe-tiny-q8_0", "deepseek2-tiny-f32", "deepseek2-tiny-q8_0"}) {
    const std::string name = stem;
    CAPTURE(name);
    CHECK(differing_rows((test::shared_dir() / "models" / (name + ".gguf")).string(), 4, 4) == 0);
  }
}

TEST_CASE("forward_batch: 12 sequences on Q4_K / Q5_0 synth models (experts shared by >= 9 tokens)") {
  test::TempDir dir;
  for (const char* preset : {"tiny-qwen3moe", "tiny-deepseek2", "tiny-olmoe", "tiny-glm4moe", "tiny-gpt-oss", "tiny-kimi-k2"})
    for (GgmlType type : {GgmlType::Q4_K, GgmlType::Q5_0}) {
      const std::string name = std::string(preset) + " " + std::string(ggml_type_name(type));
      CAPTURE(name);
      const std::string path = dir.file(std::string(preset) + ".gguf");
      synth::write_synth_model(synth::build_synth_model({preset, type, "", 5}), path);
      CHECK(differing_rows(path, 12, 3) == 0);
    }
}

TEST_CASE("forward_batch refuses a batch whose parts share a cache, and checks every part first") {
  test::TempDir dir;
  const std::string path = dir.file("m.gguf");
  synth::write_synth_model(synth::build_synth_model({"tiny-qwen3moe", GgmlType::Q8_0, "", 1}), path);
  const auto g = gguf::GgufModel::open(path);
  auto model = models::load_model(g);
  auto a = model->new_cache(4), b = model->new_cache(4);
  std::vector<float> la, lb;
  const std::vector<int32_t> one{1}, five{1, 2, 3, 4, 5};
  std::vector<models::Model::SeqChunk> shared{{one, &a, &la}, {one, &a, &lb}};
  CHECK_THROWS_WITH_AS(model->forward_batch(shared), doctest::Contains("share a KV cache"), Error);
  std::vector<models::Model::SeqChunk> overflow{{one, &a, &la}, {five, &b, &lb}};
  CHECK_THROWS_WITH_AS(model->forward_batch(overflow), doctest::Contains("context overflow"), Error);
  CHECK(a.n_past == 0);  // nothing ran: the first part's cache is untouched
}
