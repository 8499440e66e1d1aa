// Model: the forward pass of a MoE transformer loaded from GGUF, with its KV cache. The layer loop
// (embedding -> [norm -> attention -> residual -> norm -> FFN/MoE -> residual] x n_layer -> norm ->
// output) is shared; each architecture supplies its attention block and tensor bindings in one file,
// registered in model_registry.cpp. Source: llama.cpp src/models/*.cpp graph builders.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "runtime/gguf/gguf_model.hpp"
#include "runtime/models/hparams.hpp"
#include "cpu/ops.hpp"
#include "scheduler/linear_exec.hpp"
#include "runtime/models/moe_ffn.hpp"

namespace moetier::models {

/// f32 KV cache for n_ctx positions: per layer k [n_ctx, k_width], v [n_ctx, v_width] (v empty when the
/// architecture reads values out of k, as MLA's compressed cache does).
struct KvCache {
  int64_t n_ctx = 0;
  int64_t k_width = 0, v_width = 0;
  int64_t n_past = 0;  // positions filled
  std::vector<std::vector<float>> k, v;
  uint64_t bytes() const;
};

struct ForwardOptions {
  bool all_logits = false;                      // logits for every token instead of the last
  std::vector<RoutingRecord>* routing = nullptr;  // per layer routing (MoE layers; others left empty)
};

class Model {
 public:
  virtual ~Model() = default;
  const ModelHparams& hparams() const { return hp_; }
  const gguf::GgufModel& gguf() const { return gguf_; }

  /// A cache for n_ctx positions. Throws Error if n_ctx < 1.
  KvCache new_cache(int64_t n_ctx) const;
  /// Bytes new_cache(n_ctx) allocates (f32 rows of every layer), without allocating them.
  uint64_t kv_cache_bytes(int64_t n_ctx) const;
  /// Upper bound of the bytes of activation buffers (scratch) the forward passes of a session hold when
  /// its largest batch has `n_tokens` tokens, the cache `n_ctx` positions and the pool `n_workers`
  /// workers: hidden states, attention and router buffers, expert batches, quantised activations, GEMM
  /// X and tiles, attention score rows per worker, routing records, logits and the sampler's candidates.
  /// Buffers only grow, so this is what a run keeps from its largest batch on.
  uint64_t scratch_bytes(int64_t n_tokens, int64_t n_ctx, int n_workers) const;

  /// Runs `tokens` at positions cache.n_past .. + n - 1 (one batch: prefill, or one token: decode) and
  /// advances cache.n_past. logits: [n_out, n_vocab] f32 (resized) for the last token, or all tokens.
  /// Throws Error if the cache would overflow or a token id is out of range, and Error naming the file and
  /// the position if a logit is NaN / inf (debug builds: also the first layer whose output is not finite),
  /// so nothing is ever sampled from non-finite logits.
  void forward(std::span<const int32_t> tokens, KvCache& cache, std::vector<float>& logits,
               const ForwardOptions& opt = {});

  /// One sequence's part of a batch over several sequences (forward_batch).
  struct SeqChunk {
    std::span<const int32_t> tokens;  // appended at positions cache->n_past ..
    KvCache* cache = nullptr;         // the sequence's own cache (distinct per chunk)
    std::vector<float>* logits = nullptr;  // out: [n_out, n_vocab] (resized), last token or all tokens
  };
  /// Runs several sequences in one batch (the server's decode step): norms, routers, experts, the dense
  /// or shared FFN and the LM head see the tokens of every chunk together (an expert chosen by several
  /// sequences is read once); attention runs per chunk on its own cache. Each token's result is the one
  /// forward() gives for its sequence alone as long as no matrix product of the batch crosses the prefill
  /// GEMM threshold (gemm_min_tokens(): the GEMV, tile and AMX kernels are bit-identical to one another,
  /// the f32 GEMM is not); the server keeps decode batches below it. opt.routing requires a single chunk.
  /// Errors as forward() (checked for every chunk before any work); after an Error thrown mid-batch
  /// (non-finite values) the chunks' caches hold partial rows and must be reset by the caller.
  void forward_batch(std::span<const SeqChunk> chunks, const ForwardOptions& opt = {});

  /// Smallest per-matrix batch of the FFNs (tokens routed to one expert; the whole batch for dense and
  /// shared FFNs) computed by the prefill GEMM instead of ggml's dot products (LinearExec::batch); 0 = never.
  void set_gemm_min_tokens(int64_t n) { lin_.set_gemm_min_tokens(n); }
  int64_t gemm_min_tokens() const { return lin_.gemm_min_tokens(); }
  /// LinearExec::set_batch_invariant for every matrix of the model (forward_batch's decode steps).
  void set_batch_invariant(bool on) { lin_.set_batch_invariant(on); }
  /// Matrix products computed by the prefill GEMM so far (profiling and tests).
  uint64_t prefill_gemm_matmuls() const { return lin_.gemm_matmuls(); }

  /// Wall time forward() has spent in each phase since the model was made (steady clock, ns; the calling
  /// thread's view, workers included): attention blocks (Q/K/V/output projections, RoPE, KV cache,
  /// attention itself), FFN blocks (router, routed experts, shared or dense FFN, prediction) and the LM
  /// head; the rest of a step is norms, residual adds and the embedding lookup. The routed and shared
  /// experts' compute alone is executor().layer_stats()' cpu_ns. For `bench`'s decode breakdown.
  struct PhaseTimes {
    uint64_t attention_ns = 0, ffn_ns = 0, output_ns = 0;
  };
  const PhaseTimes& phase_times() const { return phase_times_; }

  /// The MoE executor: where routed experts' bytes come from (the resident source is installed at
  /// load; the tiered store installs a streaming source), the device backend, statistics.
  sched::MoeExecutor& executor() { return executor_; }
  const sched::MoeExecutor& executor() const { return executor_; }
  /// Installs a streaming expert source (the tiered store: experts homed on NVMe); nullptr removes it,
  /// so every expert is read from the mmapped file again. `s` must outlive its use.
  void set_streamed_experts(sched::ExpertSource* s) { executor_.set_streamed(s); }
  /// Prediction statistics of the next-layer prefetch (only counted while a source wants them).
  using PredictionStats = sched::MoeExecutor::PredictionStats;
  const PredictionStats& prediction_stats() const { return executor_.prediction_stats(); }
  /// The resident lookup (slices of the mmapped stacked tensors).
  FfnWeights resident_expert(int32_t layer, int32_t expert) const;
  /// The FFN of layer `layer` that is not a routed expert: its shared expert (MoE layer) or its dense
  /// FFN (dense layer); nullptr for a MoE layer without a shared expert.
  const FfnWeights* non_expert_ffn(int32_t layer) const;

 protected:
  Model(const gguf::GgufModel& g, ModelHparams hp);
  /// Widths of one cache row per layer.
  virtual int64_t cache_k_width() const = 0;
  virtual int64_t cache_v_width() const = 0;
  /// f32 elements of the architecture's attention buffers per token of a batch (scratch_bytes).
  virtual int64_t attention_floats_per_token() const = 0;
  /// out [n, n_embd] = attention of layer il over x [n, n_embd] (normed); writes the cache rows.
  virtual void attention(int il, const float* x, int64_t n, KvCache& cache, float* out) = 0;
  /// Rows [row0, row0 + n) of a batch that belong to one sequence and its cache.
  struct AttnSeq {
    int64_t row0 = 0, n = 0;
    KvCache* cache = nullptr;
  };
  /// Attention of several sequences over x / out [n_rows, n_embd] (forward_batch): one attention() per
  /// sequence by default; an architecture may run its projections over all rows at once (same bits in
  /// batch-invariant mode, and one read of the weights for the whole batch).
  virtual void attention_batch(int il, const float* x, std::span<const AttnSeq> seqs, int64_t n_rows, float* out) {
    (void)n_rows;
    for (const AttnSeq& s : seqs)
      attention(il, x + s.row0 * hp_.n_embd, s.n, *s.cache, out + s.row0 * hp_.n_embd);
  }
  /// cpu::attention for heads [0, n_head) of `a` (positions up to a.pos0 + a.n_tokens - 1), heads split
  /// over the worker pool when the work is large enough (heads are independent: same bits).
  void run_attention(const cpu::AttentionArgs& a, int64_t n_head);
  /// Loads the shared parts (embeddings, norms, FFN / MoE tensors) once the derived class is ready.
  void load_common();

  const gguf::GgufModel& gguf_;
  ModelHparams hp_;
  LinearExec lin_;
  sched::MoeExecutor executor_{lin_};
  FfnExec ffn_{lin_, executor_};
  FfnAct ffn_act_ = FfnAct::SwiGLU;
  std::string attn_norm_name_ = "attn_norm";
  std::string ffn_norm_name_ = "ffn_norm";  // glm4moe: post_attention_norm

 private:
  struct LayerFfn {
    const float* attn_norm = nullptr;
    const float* ffn_norm = nullptr;
    bool moe = false;
    FfnWeights dense;
    MoeWeights moe_w;
    StackedWeight gate_exps, up_exps, down_exps;
    std::vector<FfnWeights> legacy;  // per-expert layout
    const float *gate_exps_b = nullptr, *up_exps_b = nullptr, *down_exps_b = nullptr;
  };
  Weight tok_embd_, output_;
  const float* output_norm_ = nullptr;
  std::vector<LayerFfn> layers_;
  std::unique_ptr<sched::ExpertSource> resident_;
  std::vector<float> x_, cur_, attn_out_, ffn_out_;
  std::vector<float> logits_all_;
  std::vector<AttnSeq> attn_seqs_;  // the LM head's rows of a batch of several sequences
  PhaseTimes phase_times_;
  std::vector<std::vector<float>> attn_scratch_;  // one score row per pool worker
};

/// Loads the model of `g` (architecture from general.architecture). Throws Error naming the file for
/// an unsupported architecture, a missing tensor, a wrong shape or an unsupported tensor type, before
/// any large allocation.
std::unique_ptr<Model> load_model(const gguf::GgufModel& g);

}  // namespace moetier::models
