// The throughput model (runtime/tuning/throughput_model.hpp) on hand-made work and profiles whose
// predictions are worked out by hand in each row: DRAM- vs compute-bound decode, a missing kernel figure,
// the disk tier's misses, KV-cache reads, parallel sequences and the prompt.
#include <doctest/doctest.h>

#include "runtime/tuning/throughput_model.hpp"

using namespace moetier::tuning;

namespace {

/// DRAM 10 GB/s; Q4_K: 1 token at `k1` GB/s, 8 tokens at 20 GB/s (weight bytes), 100 GFLOP/s at 32; a disk
/// of 1 GB/s; no dispatch overhead figure.
MachineProfile profile(double k1) {
  MachineProfile m;
  m.dram = {{2, 10.0, {"t", 1, 2, 1}}};
  m.disk = {{1 << 20, 8, 1.0, {"t", 1, 1, 1}}};
  m.kernels = {{"Q4_K", 1, k1, 1.0, {"t", 1, 2, 1}}, {"Q4_K", 8, 20.0, 1.0, {"t", 1, 2, 1}},
               {"Q4_K", 32, 1.0, 100.0, {"t", 1, 2, 1}}};
  return m;
}

ModelWork dense(const std::string& type) {
  ModelWork w;
  w.non_expert.add(type, 1e9, 2e9);  // 1 GB of weights, 2e9 elements
  return w;
}

}  // namespace

TEST_CASE("throughput model: decode, worked by hand") {
  struct Row {
    const char* name;
    ModelWork w;
    double k1;
    int parallel;
    double decode_tps;
    const char* binds;
  };
  ModelWork kv = dense("Q4_K");
  kv.kv_bytes_per_position = 2e6;  // x 1000 positions = 2 GB at 10 GB/s = 0.2 s
  ModelWork streamed;              // 4 experts of 0.25 GB, all used by every token, all on NVMe, half hit
  streamed.n_moe_layers = 1;
  streamed.n_expert = 4;
  streamed.n_expert_used = 4;
  streamed.expert.add("Q4_K", 0.25e9, 0.5e9);
  streamed.dram_share = 0;
  streamed.nvme_share = 1;
  streamed.hit_rate = 0.5;
  streamed.expert_read_bytes = 1 << 20;
  const std::vector<Row> rows{
      // 1 GB at 5 GB/s of kernel (0.2 s) > 1 GB at 10 GB/s of DRAM (0.1 s)
      {"compute bound", dense("Q4_K"), 5, 1, 5.0, "CPU compute"},
      // kernel 0.05 s < DRAM 0.1 s
      {"DRAM bound", dense("Q4_K"), 20, 1, 10.0, "DRAM bandwidth"},
      // no Q6_K figure: DRAM rate only
      {"no kernel figure", dense("Q6_K"), 5, 1, 10.0, "DRAM bandwidth"},
      // DRAM 0.1 s + KV 0.2 s
      {"KV cache", kv, 20, 1, 1 / 0.3, "KV-cache reads"},
      // hits 0.5 GB from DRAM (0.05 s) vs compute 1 GB at 100 GB/s (0.01 s); misses 0.5 GB at 1 GB/s (0.5 s)
      {"disk misses", streamed, 100, 1, 1 / 0.55, "disk bandwidth"},
      // 4 tokens: compute between 1 token (1 GB / 20 GB/s) and 8 (1 GB / 20 GB/s) = 0.05 s; DRAM 0.1 s, once
      {"4 sequences", dense("Q4_K"), 20, 4, 40.0, "DRAM bandwidth"},
  };
  for (const Row& r : rows) {
    CAPTURE(r.name);
    PredictShape s;
    s.threads = 2;
    s.parallel = r.parallel;
    s.decode_context = 1000;
    s.prompt_tokens = 64;
    s.n_batch = 64;
    const Prediction p = predict(r.w, profile(r.k1), s);
    CHECK(p.decode_tps == doctest::Approx(r.decode_tps).epsilon(1e-9));
    CHECK(p.binds == r.binds);
    CHECK(p.notes.empty() == (std::string(r.name) != "no kernel figure"));
  }
}

TEST_CASE("throughput model: prompt at 64 tokens takes the GEMM rate") {
  PredictShape s;
  s.threads = 2;
  s.prompt_tokens = 128;
  s.n_batch = 64;  // two chunks of 64
  // Each chunk: 2 x 2e9 elements x 64 tokens / 100 GFLOP/s = 2.56 s (> 0.1 s of DRAM): 128 / 5.12 s.
  const Prediction p = predict(dense("Q4_K"), profile(5), s);
  CHECK(p.prompt_tps == doctest::Approx(128 / 5.12).epsilon(1e-9));
  CHECK(p.prompt_binds == "CPU compute");
}

TEST_CASE("throughput model: weight mix of a tensor list") {
  std::vector<moetier::gguf::TensorInfo> t(4);
  t[0] = {"token_embd.weight", moetier::GgmlType::Q4_K, {1000, 256}, 0, 0, 144000};
  t[1] = {"blk.0.attn_q.weight", moetier::GgmlType::Q4_K, {256, 256}, 0, 0, 36864};
  t[2] = {"blk.0.ffn_gate_exps.weight", moetier::GgmlType::Q4_K, {4, 512, 256}, 0, 0, 4 * 73728};
  t[3] = {"output.weight", moetier::GgmlType::Q6_K, {1000, 256}, 0, 0, 210000};
  ModelWork w;
  fill_weight_mix(t, 4, w);
  // token_embd: one row (144 bytes, no arithmetic); attn_q whole; the LM head whole.
  CHECK(w.non_expert.by_type.at("Q4_K").first == doctest::Approx(144 + 36864));
  CHECK(w.non_expert.by_type.at("Q4_K").second == doctest::Approx(256 * 256));
  CHECK(w.non_expert.by_type.at("Q6_K").first == doctest::Approx(210000));
  CHECK(w.n_moe_layers == 1);
  CHECK(w.expert.bytes() == doctest::Approx(73728));
  CHECK(w.expert.by_type.at("Q4_K").second == doctest::Approx(512 * 256));
}

TEST_CASE("throughput model: calibrated attention, router and norms in the decode step, worked by hand") {
  MachineProfile m = profile(20);  // dense Q4_K: DRAM 0.1 s > compute 0.05 s
  // Attention per layer: 1000 us at 500 positions, 3000 us at 2000, for a shape of 100 elements; the
  // router 10 us for 50 elements; rms_norm 1 us for 10; dispatch 1 us.
  m.overheads = {{"attention", 1000, {"t", 1, 2, 1}, 500, 100},
                 {"attention", 3000, {"t", 1, 2, 1}, 2000, 100},
                 {"router", 10, {"t", 1, 2, 1}, 0, 50},
                 {"rms_norm", 1, {"t", 1, 1, 1}, 0, 10},
                 {"pool_dispatch", 1, {"t", 0, 2, 1}}};
  // Interpolation in the context (linear between figures, proportional outside), scaled by elements.
  CHECK(attention_us(m, 1000, 200) == doctest::Approx(2 * (1000 + 500.0 / 1500 * 2000)));
  CHECK(attention_us(m, 250, 100) == doctest::Approx(500));
  CHECK(attention_us(m, 4000, 100) == doctest::Approx(6000));
  CHECK(attention_us(profile(20), 1000, 200) == -1);  // no figures

  ModelWork w = dense("Q4_K");
  w.n_layer = 2;
  w.n_moe_layers = 2;  // routers only (no expert weights in this work)
  w.n_expert_used = 1;
  w.attn_elements = 200;
  w.router_elements = 100;
  w.norm_elements = 30;
  w.n_norms = 5;
  PredictShape s;
  s.threads = 2;
  s.decode_context = 1000;
  s.prompt_tokens = 64;
  s.n_batch = 64;
  const Prediction p = predict(w, m, s);
  const double attn = 2 * 2 * (1000 + 500.0 / 1500 * 2000) * 1e-6;  // 2 layers, 2 x the measured shape
  const double router = 2 * 20e-6, norms = 5 * 3e-6;
  const double dispatch = (2 * (6 + 2 * 1) + 2) * 1e-6;  // router and norms timed: 6 + 2k per layer, + 2
  CHECK(p.attention_measured);
  CHECK(p.kv_s == doctest::Approx(attn));
  CHECK(p.router_s == doctest::Approx(router));
  CHECK(p.norm_s == doctest::Approx(norms));
  CHECK(p.overhead_s == doctest::Approx(dispatch));
  CHECK(p.decode_tps == doctest::Approx(1 / (0.1 + attn + router + norms + dispatch)).epsilon(1e-9));
  CHECK(p.binds == "DRAM bandwidth");
  // Prompt: one chunk of 64 tokens, 2.56 s of GEMM; attention at the middle position 32 (below the first
  // figure: 1000 x 32 / 500 us, x 2 elements, x 2 layers) per token; router and norms per token.
  const double prompt_s = 2.56 + 64 * (2 * 2 * 1000 * 32 / 500.0 * 1e-6) + 64 * (router + norms) + dispatch;
  CHECK(p.prompt_tps == doctest::Approx(64 / prompt_s).epsilon(1e-9));

  // With prefill figures (per prompt token: 100 us at 500 positions, elements 100), the prompt takes them:
  // the middle position 32 -> 100 x 32 / 500 us, x 2 elements, x 2 layers.
  m.overheads.push_back({"attention_prefill", 100, {"t", 1, 2, 1}, 500, 100});
  const double prompt_pf = 2.56 + 64 * (2 * 2 * 100 * 32 / 500.0 * 1e-6) + 64 * (router + norms) + dispatch;
  CHECK(predict(w, m, s).prompt_tps == doctest::Approx(64 / prompt_pf).epsilon(1e-9));
  CHECK(predict(w, m, s).decode_tps == doctest::Approx(p.decode_tps).epsilon(1e-12));  // decode unchanged

  // A long context: attention binds (2 layers x 2 x 3000 x 16 us = 0.192 s > 0.1 s of DRAM).
  s.decode_context = 32000;
  CHECK(predict(w, m, s).binds == "attention");
  // Without the figures (an older profile), the same work keeps the old dispatch count and no router / norms.
  m.overheads = {{"pool_dispatch", 1, {"t", 0, 2, 1}}};
  const Prediction q = predict(w, m, s);
  CHECK(!q.attention_measured);
  CHECK(q.router_s == 0);
  CHECK(q.norm_s == 0);
  CHECK(q.overhead_s == doctest::Approx((2 * (9 + 2 * 1) + 2) * 1e-6));
}
