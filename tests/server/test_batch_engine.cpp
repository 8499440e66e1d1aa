// server::BatchEngine: a request's logits and text are the same bits whether it runs alone or decodes
// together with others (and, greedy, the tokens `moetier run`'s Session gives); stop strings,
// cancellation and the bounded queue.
#include <doctest/doctest.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "runtime/gguf/gguf_model.hpp"
#include "runtime/models/model.hpp"
#include "runtime/server/batch_engine.hpp"
#include "runtime/session/session.hpp"
#include "runtime/synth/synth_model.hpp"
#include "runtime/tokenizer/tokenizer.hpp"
#include "tests/run_util.hpp"
#include "tests/shared_data.hpp"

using namespace moetier;
using server::GenEvent;

namespace {

struct Loaded {
  gguf::GgufModel g;
  std::unique_ptr<models::Model> model;
  tokenizer::Tokenizer tok;
  explicit Loaded(const std::string& path)
      : g(gguf::GgufModel::open(path)), model(models::load_model(g)), tok(tokenizer::Tokenizer::from_gguf(g)) {}
};

struct Outcome {
  std::string text, finish;
  std::vector<std::vector<float>> logits;  // what each generated token was sampled from
  bool error = false;
};

/// Waits for a request's events up to its Done / Error.
void collect(server::RequestHandle& h, Outcome& out) {
  GenEvent ev;
  for (;;) {
    REQUIRE(h.next(ev, 60000));
    if (ev.kind == GenEvent::Kind::Text) {
      out.text += ev.text;
      continue;
    }
    out.error = ev.kind == GenEvent::Kind::Error;
    out.finish = ev.finish_reason;
    return;
  }
}

std::vector<server::GenRequest> requests(int32_t n_vocab, bool greedy) {
  std::vector<server::GenRequest> rs;
  for (int i = 0; i < 4; ++i) {
    server::GenRequest r;
    for (int t = 0; t < 4 + 9 * i; ++t) r.prompt.push_back(static_cast<int32_t>((17 + 31 * t + 7 * i) % n_vocab));
    r.max_tokens = 6 + i;
    r.stop_at_eog = false;
    r.sampling.temperature = greedy ? 0.0f : 0.9f;
    r.sampling.seed = 100 + static_cast<uint64_t>(i);
    rs.push_back(r);
  }
  return rs;
}

/// Runs `rs` on an engine of `n_parallel` slots: one after another (1 slot) or all submitted at once.
std::vector<Outcome> run_engine(Loaded& m, std::vector<server::GenRequest> rs, int n_parallel, int64_t n_batch) {
  server::EngineOptions o;
  o.n_parallel = n_parallel;
  o.n_ctx_slot = 128;
  o.n_batch = n_batch;
  std::vector<Outcome> out(rs.size());
  server::BatchEngine engine(*m.model, m.tok, o);
  for (size_t i = 0; i < rs.size(); ++i) rs[i].on_logits = [&out, i](const std::vector<float>& l) { out[i].logits.push_back(l); };
  if (n_parallel == 1) {
    for (auto& r : rs) {
      auto h = engine.submit(r);
      REQUIRE(h);
      collect(*h, out[static_cast<size_t>(&r - rs.data())]);
    }
  } else {
    std::vector<std::shared_ptr<server::RequestHandle>> hs;
    for (auto& r : rs) hs.push_back(engine.submit(r));
    for (size_t i = 0; i < hs.size(); ++i) {
      REQUIRE(hs[i]);
      collect(*hs[i], out[i]);
    }
  }
  return out;
}

bool same_bits(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].size() != b[i].size() || std::memcmp(a[i].data(), b[i].data(), a[i].size() * sizeof(float)) != 0) return false;
  return true;
}

void check_alone_equals_batched(const std::string& path) {
  Loaded m(path);
  const int32_t n_vocab = static_cast<int32_t>(m.model->hparams().n_vocab);
  for (bool greedy : {true, false}) {
    CAPTURE(greedy);
    const auto rs = requests(n_vocab, greedy);
    // Alone: one slot, one request at a time, whole prompts in one chunk (as `run` prefills them).
    const auto alone = run_engine(m, rs, 1, 512);
    // Together: 4 slots; prompts of 4..31 tokens are prefilled one per step while the others already
    // decode, so decode batches mix sequences at different positions and change size as requests end.
    const auto together = run_engine(m, rs, 4, 512);
    for (size_t i = 0; i < rs.size(); ++i) {
      CAPTURE(i);
      CHECK(!alone[i].error);
      CHECK(alone[i].finish == "length");
      CHECK(alone[i].logits.size() == static_cast<size_t>(rs[i].max_tokens));
      CHECK(same_bits(alone[i].logits, together[i].logits));
      CHECK(alone[i].text == together[i].text);
    }
    if (!greedy) continue;
    // Greedy, the tokens are those of Session::generate (`moetier run --temp 0`).
    for (size_t i = 0; i < rs.size(); ++i) {
      Session s(*m.model, m.tok, 128);
      GenerateParams gp;
      gp.n_predict = rs[i].max_tokens;
      gp.stop_at_eog = false;
      gp.sampling.temperature = 0;
      const auto st = s.generate(rs[i].prompt, gp, nullptr);
      std::vector<int32_t> argmaxes;
      for (const auto& l : alone[i].logits) argmaxes.push_back(sampling::argmax(l));
      CHECK(argmaxes == st.tokens);
    }
  }
  // Prompts prefilled in chunks of 8 tokens (-b 8): every request still finishes well-formed. (Bits may
  // differ from one-chunk prefill where a batch-size-dependent order applies: F32's tinyBLAS, the GEMM.)
  const auto chunked = run_engine(m, requests(n_vocab, true), 4, 8);
  for (const auto& o : chunked) CHECK((!o.error && o.finish == "length"));
}

}  // namespace

TEST_CASE("engine: each request gets the bits of running alone (shared llama.cpp models)" * doctest::skip(test::no_shared())) {
  for (const char* stem : {"mixtral-tiny-q8_0", "qwen3moe-tiny-q8_0", "deepseek2-tiny-f32"}) {
    const std::string name = stem;
    CAPTURE(name);
    check_alone_equals_batched((test::shared_dir() / "models" / (name + ".gguf")).string());
  }
}

TEST_CASE("engine: each request gets the bits of running alone (synth Q4_K)") {
  test::TempDir dir;
  const std::string path = dir.file("q4k.gguf");
  synth::write_synth_model(synth::build_synth_model({"tiny-qwen3moe", GgmlType::Q4_K, "", 3}), path);
  check_alone_equals_batched(path);
}

TEST_CASE("engine: stop strings end the text before them; cancel frees the slot; a full queue refuses") {
  test::TempDir dir;
  const std::string path = dir.file("m.gguf");
  synth::write_synth_model(synth::build_synth_model({"tiny-qwen3moe", GgmlType::Q8_0, "", 3}), path);
  Loaded m(path);
  server::EngineOptions o;
  o.n_parallel = 1;
  o.n_ctx_slot = 256;
  o.max_queue = 1;
  server::BatchEngine engine(*m.model, m.tok, o);
  server::GenRequest r;
  r.prompt = {5, 6, 7};
  r.max_tokens = 24;
  r.stop_at_eog = false;
  r.sampling.temperature = 0;

  Outcome full;
  collect(*engine.submit(r), full);
  REQUIRE(full.text.size() >= 8);
  // A stop string taken from the middle of the greedy text: the text ends right before its first
  // occurrence, with finish_reason "stop".
  const std::string stop = full.text.substr(full.text.size() / 2, 3);
  const size_t at = full.text.find(stop);
  server::GenRequest rs = r;
  rs.stop = {stop};
  Outcome stopped;
  collect(*engine.submit(rs), stopped);
  CHECK(stopped.finish == "stop");
  CHECK(stopped.text == full.text.substr(0, at));

  // Cancel: a long request stops soon after cancel(), and the slot takes the next request.
  server::GenRequest longr = r;
  longr.max_tokens = 200;
  auto h = engine.submit(longr);
  GenEvent ev;
  REQUIRE(h->next(ev, 60000));
  h->cancel();
  for (int i = 0; i < 500 && engine.stats().active > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(engine.stats().active == 0);
  const uint64_t generated = engine.stats().generated_tokens;
  CHECK(generated < 24 + 24 + 200);  // the cancelled request did not run to its max_tokens

  // Queue: the slot busy with a long request, one more waits, the next is refused.
  auto busy = engine.submit(longr);
  for (int i = 0; i < 500 && engine.stats().active == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  REQUIRE(engine.stats().active == 1);
  auto waiting = engine.submit(r);
  CHECK(waiting != nullptr);
  CHECK(engine.submit(r) == nullptr);
  busy->cancel();
  Outcome w;
  collect(*waiting, w);
  CHECK(w.text == full.text);  // the queued request ran as the first did
}
