#include "runtime/models/model.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "common/error.hpp"
#include "common/trace_events.hpp"
#include "cpu/ops.hpp"
#include "cpu/prefill_gemm.hpp"
#include "scheduler/thread_pool.hpp"

namespace moetier::models {

uint64_t KvCache::bytes() const {
  return static_cast<uint64_t>(n_ctx) * (k_width + v_width) * sizeof(float) * k.size();
}

uint64_t Model::kv_cache_bytes(int64_t n_ctx) const {
  return static_cast<uint64_t>(std::max<int64_t>(n_ctx, 0)) * static_cast<uint64_t>(cache_k_width() + cache_v_width()) *
         sizeof(float) * static_cast<uint64_t>(hp_.n_layer);
}

uint64_t Model::scratch_bytes(int64_t n_tokens, int64_t n_ctx, int n_workers) const {
  // Widest matrix input of the file: bounds the FFN widths (n_in of ffn_down) and every activation row.
  uint64_t max_in = static_cast<uint64_t>(hp_.n_embd);
  for (const gguf::TensorInfo& t : gguf_.tensors())
    if (t.shape.size() >= 2) max_in = std::max(max_in, static_cast<uint64_t>(t.row_size()));
  const auto n = static_cast<uint64_t>(std::max<int64_t>(n_tokens, 1));
  const auto e = static_cast<uint64_t>(hp_.n_embd), k = static_cast<uint64_t>(hp_.n_expert_used);
  const auto x = static_cast<uint64_t>(hp_.n_expert), w = static_cast<uint64_t>(std::max(n_workers, 1));
  const uint64_t per_token = 4 * e                                          // x_, cur_, attn_out_, ffn_out_
                             + static_cast<uint64_t>(attention_floats_per_token())
                             + 2 * x + 2 * k                                // router logits, prediction, top-k
                             + k * e + 3 * e                                // expert slots, gathered, out rows, shared
                             + 2 * max_in                                   // gate_ / up_ (n_ff <= max_in)
                             + 4 * max_in                                   // activation buffers, GEMM X (f32 + bf16)
                             + static_cast<uint64_t>(hp_.n_layer) * (2 * k + x);  // routing records
  // attention: a score row per query head of a KV group (at most n_head) and a packed V block (16 wide)
  const uint64_t per_worker = static_cast<uint64_t>(std::max<int64_t>(hp_.n_head, 1) + 16) *
                                  static_cast<uint64_t>(std::max<int64_t>(n_ctx, 1)) + 16
                              + static_cast<uint64_t>(cpu::kPrefillTileRows) * max_in;  // GEMM tile
  const uint64_t vocab = 8 * static_cast<uint64_t>(hp_.n_vocab);  // logits, last logits, candidates (12 B)
  return sizeof(float) * (per_token * n + per_worker * w + vocab);
}

Model::Model(const gguf::GgufModel& g, ModelHparams hp) : gguf_(g), hp_(std::move(hp)) {}

KvCache Model::new_cache(int64_t n_ctx) const {
  if (n_ctx < 1) fail("context size {} (expected >= 1)", n_ctx);
  KvCache c;
  c.n_ctx = n_ctx;
  c.k_width = cache_k_width();
  c.v_width = cache_v_width();
  c.k.resize(static_cast<size_t>(hp_.n_layer));
  c.v.resize(static_cast<size_t>(hp_.n_layer));
  for (int64_t il = 0; il < hp_.n_layer; ++il) {
    c.k[il].assign(static_cast<size_t>(n_ctx * c.k_width), 0.0f);
    c.v[il].assign(static_cast<size_t>(n_ctx * c.v_width), 0.0f);
  }
  return c;
}

namespace {
std::string blk(int il, const char* name) { return fmt::format("blk.{}.{}.weight", il, name); }
std::string blk_bias(int il, const char* name) { return fmt::format("blk.{}.{}.bias", il, name); }

#ifdef NDEBUG
constexpr bool kCheckEachLayer = false;
#else
constexpr bool kCheckEachLayer = true;  // debug builds also name the first layer whose output is not finite
#endif

/// Index of the first NaN / inf of x[0..n), or -1. The common all-finite case is one branch-free pass
/// over the exponent bits (vectorised), the search only runs when something is wrong.
int64_t first_non_finite(const float* x, int64_t n) {
  uint32_t any = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t b;
    std::memcpy(&b, x + i, sizeof b);
    any |= static_cast<uint32_t>((b & 0x7f800000u) == 0x7f800000u);
  }
  if (!any) return -1;
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i])) return i;
  return -1;
}
}  // namespace

void Model::load_common() {
  const auto& g = gguf_;
  const int64_t n_embd = hp_.n_embd;
  const gguf::TensorInfo& te = g.require("token_embd.weight");
  if (te.shape.size() != 2 || te.shape[1] != n_embd)
    fail("{}: tensor token_embd.weight: shape [{}] (expected {{n_vocab, {}}})", g.path(), fmt::join(te.shape, ", "),
         n_embd);
  if (hp_.n_vocab == 0) hp_.n_vocab = te.shape[0];
  tok_embd_ = weight_2d(g, "token_embd.weight", hp_.n_vocab, n_embd);
  output_norm_ = vector_f32(g, "output_norm.weight", n_embd);
  output_ = optional_weight_2d(g, "output.weight", hp_.n_vocab, n_embd);
  if (!output_.valid()) output_ = tok_embd_;  // tied embeddings

  layers_.resize(static_cast<size_t>(hp_.n_layer));
  for (int il = 0; il < hp_.n_layer; ++il) {
    LayerFfn& L = layers_[il];
    L.attn_norm = vector_f32(g, blk(il, attn_norm_name_.c_str()), n_embd);
    L.ffn_norm = vector_f32(g, blk(il, hp_.arch == Arch::GptOss ? "post_attention_norm" : ffn_norm_name_.c_str()), n_embd);
    L.moe = hp_.is_moe_layer(il);
    if (!L.moe) {
      L.dense.gate = weight_2d(g, blk(il, "ffn_gate"), hp_.n_ff, n_embd);
      L.dense.up = weight_2d(g, blk(il, "ffn_up"), hp_.n_ff, n_embd);
      L.dense.down = weight_2d(g, blk(il, "ffn_down"), n_embd, hp_.n_ff);
      continue;
    }
    MoeWeights& M = L.moe_w;
    const int64_t n_exp = hp_.n_expert, n_ff = hp_.n_ff_exp;
    M.router = weight_2d(g, blk(il, "ffn_gate_inp"), n_exp, n_embd);
    // gpt-oss: llama.cpp requires the router and expert biases (other architectures have none).
    const bool oss = hp_.arch == Arch::GptOss;
    M.router_bias = oss ? vector_f32(g, blk_bias(il, "ffn_gate_inp"), n_exp)
                        : optional_vector_f32(g, blk_bias(il, "ffn_gate_inp"), n_exp);
    M.cfg.gating = hp_.gating;
    M.cfg.n_expert = n_exp;
    M.cfg.n_used = hp_.n_expert_used;
    M.cfg.n_groups = hp_.n_expert_groups;
    M.cfg.n_group_used = hp_.n_group_used;
    M.cfg.norm_topk = hp_.norm_topk_prob;
    M.cfg.weights_scale = hp_.expert_weights_scale;
    M.cfg.score_bias = optional_vector_f32(g, fmt::format("blk.{}.exp_probs_b.bias", il), n_exp);
    // The score bias only steers which experts are chosen: a NaN there would change the routing without
    // ever reaching the logits, so it is checked here (n_expert floats).
    if (M.cfg.score_bias)
      if (const int64_t i = first_non_finite(M.cfg.score_bias, n_exp); i >= 0)
        fail("{}: tensor blk.{}.exp_probs_b.bias: element {} is {} (expected finite routing biases)", g.path(), il, i,
             M.cfg.score_bias[i]);
    if (g.find(blk(il, "ffn_gate_exps"))) {
      L.gate_exps = weight_3d(g, blk(il, "ffn_gate_exps"), n_exp, n_ff, n_embd);
      L.up_exps = weight_3d(g, blk(il, "ffn_up_exps"), n_exp, n_ff, n_embd);
      L.down_exps = weight_3d(g, blk(il, "ffn_down_exps"), n_exp, n_embd, n_ff);
      // gpt-oss expert biases [n_expert, n_ff] / [n_expert, n_embd]
      auto bias2d = [&](const char* name, int64_t n) -> const float* {
        const gguf::TensorInfo* t = oss ? &g.require(blk_bias(il, name)) : g.find(blk_bias(il, name));
        if (!t) return nullptr;
        if (t->type != GgmlType::F32 || t->shape != std::vector<int64_t>{n_exp, n})
          fail("{}: tensor {}: expected F32 {{{}, {}}}", g.path(), t->name, n_exp, n);
        return reinterpret_cast<const float*>(g.data(*t).data());
      };
      L.gate_exps_b = bias2d("ffn_gate_exps", n_ff);
      L.up_exps_b = bias2d("ffn_up_exps", n_ff);
      L.down_exps_b = bias2d("ffn_down_exps", n_embd);
    } else if (g.find(fmt::format("blk.{}.ffn_gate.0.weight", il))) {
      if (oss)  // the expert biases exist only in the stacked layout
        fail("{}: missing tensor {} (gpt-oss experts are stacked; per-expert tensors are not supported)", g.path(),
             blk(il, "ffn_gate_exps"));
      for (int e = 0; e < n_exp; ++e) {
        FfnWeights f;
        f.gate = weight_2d(g, fmt::format("blk.{}.ffn_gate.{}.weight", il, e), n_ff, n_embd);
        f.up = weight_2d(g, fmt::format("blk.{}.ffn_up.{}.weight", il, e), n_ff, n_embd);
        f.down = weight_2d(g, fmt::format("blk.{}.ffn_down.{}.weight", il, e), n_embd, n_ff);
        L.legacy.push_back(f);
      }
    } else {
      fail("{}: missing tensor {} (routed experts of layer {})", g.path(), blk(il, "ffn_gate_exps"), il);
    }
    // deepseek2 / glm4moe with expert_shared_count > 0 and qwen2moe (llama.cpp loads its shared expert
    // unconditionally) must have the shared expert: require() names the file and a missing tensor instead
    // of silently running without it. Other architectures use one when the file has it.
    const bool shared_required =
        ((hp_.arch == Arch::Deepseek2 || hp_.arch == Arch::Glm4Moe) && hp_.n_expert_shared > 0) ||
        hp_.arch == Arch::Qwen2Moe;
    if (shared_required || g.find(blk(il, "ffn_gate_shexp"))) {
      const gguf::TensorInfo& t = g.require(blk(il, "ffn_gate_shexp"));
      const int64_t n_sh = t.shape.size() == 2 ? t.shape[0] : hp_.n_ff_shexp;
      M.has_shared = true;
      M.shared.gate = weight_2d(g, blk(il, "ffn_gate_shexp"), n_sh, n_embd);
      M.shared.up = weight_2d(g, blk(il, "ffn_up_shexp"), n_sh, n_embd);
      M.shared.down = weight_2d(g, blk(il, "ffn_down_shexp"), n_embd, n_sh);
      // qwen2moe's shared-expert gate is stored as a vector [n_embd] (llama.cpp multiplies it as a
      // [1, n_embd] matrix); accept either form.
      if (const gguf::TensorInfo* sg = g.find(blk(il, "ffn_gate_inp_shexp")); sg && sg->shape.size() == 1) {
        const float* v = vector_f32(g, sg->name, n_embd);
        M.shared_gate = Weight{GgmlType::F32, reinterpret_cast<const std::byte*>(v), 1, n_embd,
                               ggml_row_bytes(GgmlType::F32, n_embd)};
      } else if (hp_.arch == Arch::Qwen2Moe) {
        M.shared_gate = weight_2d(g, blk(il, "ffn_gate_inp_shexp"), 1, n_embd);
      } else {
        M.shared_gate = optional_weight_2d(g, blk(il, "ffn_gate_inp_shexp"), 1, n_embd);
      }
    }
  }
  auto lookup = [this](int32_t layer, int32_t expert) { return resident_expert(layer, expert); };
  resident_ = std::make_unique<sched::ResidentExperts<decltype(lookup)>>(lookup);
  executor_.set_resident(resident_.get());
}

const FfnWeights* Model::non_expert_ffn(int32_t layer) const {
  const LayerFfn& L = layers_.at(static_cast<size_t>(layer));
  if (!L.moe) return &L.dense;
  return L.moe_w.has_shared ? &L.moe_w.shared : nullptr;
}

FfnWeights Model::resident_expert(int32_t layer, int32_t expert) const {
  const LayerFfn& L = layers_[layer];
  if (!L.legacy.empty()) return L.legacy[expert];
  FfnWeights f;
  f.gate = L.gate_exps.at(expert);
  f.up = L.up_exps.at(expert);
  f.down = L.down_exps.at(expert);
  if (L.gate_exps_b) f.gate_bias = L.gate_exps_b + expert * hp_.n_ff_exp;
  if (L.up_exps_b) f.up_bias = L.up_exps_b + expert * hp_.n_ff_exp;
  if (L.down_exps_b) f.down_bias = L.down_exps_b + expert * hp_.n_embd;
  return f;
}

namespace {
using Clock = std::chrono::steady_clock;
uint64_t elapsed_ns(Clock::time_point t0) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
}
}  // namespace

void Model::forward(std::span<const int32_t> tokens, KvCache& cache, std::vector<float>& logits,
                    const ForwardOptions& opt) {
  const SeqChunk chunk{tokens, &cache, &logits};
  forward_batch(std::span<const SeqChunk>(&chunk, 1), opt);
}

void Model::forward_batch(std::span<const SeqChunk> chunks, const ForwardOptions& opt) {
  const int64_t n_embd = hp_.n_embd;
  if (chunks.empty()) fail("forward: empty batch");
  if (opt.routing && chunks.size() != 1) fail("forward: routing records need a single sequence");
  // Row offsets of each chunk in the batch; every chunk is checked before anything runs.
  std::vector<int64_t> off(chunks.size() + 1, 0);
  for (size_t c = 0; c < chunks.size(); ++c) {
    const SeqChunk& ch = chunks[c];
    const auto n = static_cast<int64_t>(ch.tokens.size());
    if (n == 0) fail("forward: empty batch");
    if (ch.cache == nullptr || ch.logits == nullptr) fail("forward: a sequence without cache or logits");
    for (size_t d = 0; d < c; ++d)
      if (chunks[d].cache == ch.cache) fail("forward: two parts of one batch share a KV cache");
    if (ch.cache->n_past + n > ch.cache->n_ctx)
      fail("context overflow: {} positions in use + {} new tokens > context size {}", ch.cache->n_past, n,
           ch.cache->n_ctx);
    for (int32_t t : ch.tokens)
      if (t < 0 || t >= hp_.n_vocab) fail("token id {} out of range (n_vocab {})", t, hp_.n_vocab);
    off[c + 1] = off[c] + n;
  }
  const int64_t n = off.back();
  trace::Scope step_span("forward", "model");  // one step (prefill chunk or decode token) in a trace
  step_span.arg("tokens", n).arg("sequences", static_cast<int64_t>(chunks.size()));
  if (opt.routing) opt.routing->assign(static_cast<size_t>(hp_.n_layer), {});
  executor_.begin_step();
  // Rows carried per chunk: all of its tokens until the last layer, then only those whose logits are
  // wanted (the last one unless all_logits; llama.cpp does the same).
  std::vector<int64_t> row0(off), rows_of(chunks.size());
  for (size_t c = 0; c < chunks.size(); ++c) rows_of[c] = off[c + 1] - off[c];
  // Non-finite values (NaN / inf weights, overflowing activations) stop the run here, before anything
  // is sampled or printed from them. Carried row r of chunk c is position n_past_at_start + n_c - rows_c + r.
  std::vector<int64_t> pos0(chunks.size());
  for (size_t c = 0; c < chunks.size(); ++c) pos0[c] = chunks[c].cache->n_past;
  const auto check_finite = [&](const float* v, int64_t width, const char* what, int il) {
    for (size_t c = 0; c < chunks.size(); ++c)
      for (int64_t r = 0; r < rows_of[c]; ++r) {
        const float* row = v + (row0[c] + r) * width;
        const int64_t i = first_non_finite(row, width);
        if (i < 0) continue;
        const int64_t pos = pos0[c] + (off[c + 1] - off[c]) - rows_of[c] + r;
        if (il >= 0)
          fail("{}: non-finite {} after layer {} at position {} (element {} is {}): the layer's weights hold "
               "NaN / inf or its activations overflowed",
               gguf_.path(), what, il, pos, i, row[i]);
        fail("{}: non-finite {} at position {} (logit of token {} is {}): the model's weights hold NaN / inf or "
             "its activations overflowed (a debug build names the first layer)",
             gguf_.path(), what, pos, i, row[i]);
      }
  };

  x_.resize(static_cast<size_t>(n * n_embd));
  cur_.resize(x_.size());
  attn_out_.resize(x_.size());
  ffn_out_.resize(x_.size());
  for (size_t c = 0; c < chunks.size(); ++c)
    for (int64_t t = 0; t < rows_of[c]; ++t)
      LinearExec::get_row(tok_embd_, chunks[c].tokens[static_cast<size_t>(t)], x_.data() + (off[c] + t) * n_embd);

  int64_t rows = n;  // rows carried in all
  for (int il = 0; il < hp_.n_layer; ++il) {
    const LayerFfn& L = layers_[il];
    for (int64_t t = 0; t < rows; ++t)
      cpu::rms_norm(x_.data() + t * n_embd, L.attn_norm, cur_.data() + t * n_embd, n_embd, hp_.rms_eps);
    auto t0 = Clock::now();
    {
      trace::Scope span("attention", "attention");
      span.arg("layer", il).arg("tokens", rows);
      attn_seqs_.clear();
      for (size_t c = 0; c < chunks.size(); ++c) attn_seqs_.push_back({row0[c], rows_of[c], chunks[c].cache});
      attention_batch(il, cur_.data(), attn_seqs_, rows, attn_out_.data());
    }
    phase_times_.attention_ns += elapsed_ns(t0);
    if (il == hp_.n_layer - 1 && !opt.all_logits && rows > static_cast<int64_t>(chunks.size())) {
      // Only the last token of each chunk needs logits: keep its row, packed in chunk order.
      for (size_t c = 0; c < chunks.size(); ++c) {
        const int64_t src = row0[c] + rows_of[c] - 1;
        std::copy_n(attn_out_.data() + src * n_embd, n_embd, attn_out_.data() + static_cast<int64_t>(c) * n_embd);
        std::copy_n(x_.data() + src * n_embd, n_embd, x_.data() + static_cast<int64_t>(c) * n_embd);
        row0[c] = static_cast<int64_t>(c);
        rows_of[c] = 1;
      }
      rows = static_cast<int64_t>(chunks.size());
    }
    for (int64_t i = 0; i < rows * n_embd; ++i) x_[i] += attn_out_[i];  // ffn_inp
    for (int64_t t = 0; t < rows; ++t)
      cpu::rms_norm(x_.data() + t * n_embd, L.ffn_norm, cur_.data() + t * n_embd, n_embd, hp_.rms_eps);
    t0 = Clock::now();
    trace::Scope ffn_span(L.moe ? "moe" : "ffn", "ffn");
    ffn_span.arg("layer", il).arg("tokens", rows);
    if (L.moe) {
      RoutingRecord* rec = opt.routing ? &(*opt.routing)[il] : nullptr;
      ffn_.moe(L.moe_w, il, cur_.data(), rows, n_embd, ffn_out_.data(), rec, ffn_act_);
      if (rec) rec->first_token = n - rows;
      // Apply the next layer's router to this hidden state so a streaming source starts its reads early.
      if (executor_.wants_prediction() && il + 1 < hp_.n_layer && layers_[il + 1].moe)
        ffn_.predict(layers_[il + 1].moe_w, il + 1, cur_.data(), rows);
    } else {
      ffn_.dense(il, L.dense, cur_.data(), rows, ffn_out_.data(), ffn_act_);
    }
    phase_times_.ffn_ns += elapsed_ns(t0);
    ffn_span.end();
    for (int64_t i = 0; i < rows * n_embd; ++i) x_[i] += ffn_out_[i];  // l_out
    if constexpr (kCheckEachLayer) check_finite(x_.data(), n_embd, "hidden state", il);
  }
  for (size_t c = 0; c < chunks.size(); ++c) chunks[c].cache->n_past += off[c + 1] - off[c];

  for (int64_t t = 0; t < rows; ++t)
    cpu::rms_norm(x_.data() + t * n_embd, output_norm_, cur_.data() + t * n_embd, n_embd, hp_.rms_eps);
  // One sequence: straight into its logits; several: one LM-head batch, then split.
  std::vector<float>& all = chunks.size() == 1 ? *chunks[0].logits : logits_all_;
  all.resize(static_cast<size_t>(rows * hp_.n_vocab));
  float* out = all.data();
  const auto t_out = Clock::now();
  lin_(output_, cur_.data(), rows, out);
  phase_times_.output_ns += elapsed_ns(t_out);
  check_finite(out, hp_.n_vocab, "logits", -1);
  if (chunks.size() > 1)
    for (size_t c = 0; c < chunks.size(); ++c)
      chunks[c].logits->assign(out + row0[c] * hp_.n_vocab, out + (row0[c] + rows_of[c]) * hp_.n_vocab);
}

void Model::run_attention(const cpu::AttentionArgs& a, int64_t n_head) {
  sched::ThreadPool& pool = sched::global_pool();
  const int64_t n_kv = a.pos0 + a.n_tokens;
  if (attn_scratch_.size() < static_cast<size_t>(pool.size())) attn_scratch_.resize(static_cast<size_t>(pool.size()));
  const auto floats = static_cast<size_t>(cpu::attention_scratch_floats(a));
  for (auto& s : attn_scratch_)
    if (s.size() < floats) s.resize(floats);
  // Work ~ tokens x KV positions x head dims; below ~64 K multiply-adds one thread is faster.
  if (pool.size() == 1 || a.n_tokens * n_kv * (a.d_k + a.d_v) * n_head < (int64_t{1} << 16)) {
    cpu::attention(a, 0, n_head, attn_scratch_[0].data());
    return;
  }
  pool.parallel_for(n_head, 1, [&](int64_t b, int64_t e, int w) {
    cpu::attention(a, b, e, attn_scratch_[static_cast<size_t>(w)].data());
  });
}

}  // namespace moetier::models
