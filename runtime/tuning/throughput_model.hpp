// The throughput model of `moetier plan`: predicted decode and prompt tokens/s of a placement from the
// machine profile's measured rates. Per step (one decode token of each of `parallel` sequences, or one
// prompt chunk of up to n_batch tokens):
//   - DRAM tier: the non-expert weights and the DRAM-resident experts and cache hits, read once per step
//     (experts: the distinct experts the step's tokens route to, uniform routing), in
//     max(bytes / DRAM bandwidth at the thread count, compute) — reading and computing overlap; compute is
//     per weight type, from the kernel figures measured on weights streamed from DRAM: below 8 tokens per
//     matrix, interpolated between the GEMV's measured 1- and 8-token times; 8..32, between the 8-token
//     time and the GEMM's at 32; from 32, 2 x elements x tokens / the GEMM's GFLOP/s at the nearest
//     measured batch size;
//   - disk tier: the streamed experts' cache misses, bytes / the disk rate measured at the model's expert
//     read size, added (a miss stalls the layer that needs it);
//   - attention: with the profile's "attention" figures, every sequence's token costs per layer the
//     figure's time at the decode context (linear between the measured context lengths, proportional
//     below the first and above the last), scaled by the model's n_head x (d_k + d_v) / the measured one,
//     but no less than reading its K and V at the DRAM rate; without them, the K and V reads at the DRAM
//     rate; a prompt token's attention: the "attention_prefill" figures (a chunk's tokens at its middle
//     position), else the decode figures, added;
//   - router and norms: with the profile's "router" / "rms_norm" figures, per token, each MoE layer's
//     router and each norm (2 per layer + the output norm), scaled by the model's shape, added;
//   - overheads: the thread pool's dispatch cost x the parallel steps of a forward (per layer ~6
//     products + the experts' 2 each, and, when not timed by their own figures, the router and 2 norms), added;
//   - a device tier's bytes at its rate (plan computes that time), added.
// Weight types without a kernel figure are taken at the DRAM rate (bandwidth only) and listed in notes.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "runtime/gguf/gguf_file.hpp"
#include "runtime/tuning/machine_profile.hpp"

namespace moetier::tuning {

/// Bytes and weight elements by ggml type name.
struct WeightMix {
  std::map<std::string, std::pair<double, double>> by_type;  ///< type -> (bytes, elements)
  void add(const std::string& type, double bytes, double elements);
  double bytes() const;
  WeightMix scaled(double f) const;
};

/// What one token reads, as the placement puts it.
struct ModelWork {
  WeightMix non_expert;        ///< non-routed weights a decode token reads (embedding: one row)
  WeightMix expert;            ///< one routed expert (gate + up + down), averaged over the MoE layers
  int64_t n_moe_layers = 0, n_expert = 0, n_expert_used = 0, n_layer = 0;
  double dram_share = 1.0;     ///< share of routed-expert reads whose home is DRAM
  double nvme_share = 0.0;     ///< share whose home is NVMe (the rest: the device tier)
  double hit_rate = 1.0;       ///< cache hit rate of the streamed experts
  uint64_t expert_read_bytes = 0;  ///< bytes of one expert read from disk
  double kv_bytes_per_position = 0;  ///< K + V bytes of one context position, all layers
  double device_seconds_per_token = 0;  ///< device tier time of one decode token (0: none)
  // Per-token overheads' shapes (0: unknown, not timed).
  double attn_elements = 0;    ///< n_head x (d_k + d_v) as cpu::attention is called (MLA: compressed widths)
  double router_elements = 0;  ///< n_expert x n_embd of one MoE layer's F32 router
  double norm_elements = 0;    ///< n_embd (one rms_norm)
  int64_t n_norms = 0;         ///< rms_norms per token (2 per layer + the output norm)
};

/// Shape of the prediction.
struct PredictShape {
  int threads = 1;
  int parallel = 1;          ///< sequences decoding together
  int64_t prompt_tokens = 512;
  int64_t n_batch = 512;     ///< prompt chunk
  int64_t decode_context = 512;  ///< context length a decode token attends to
};

struct Prediction {
  double decode_tps = 0, prompt_tps = 0;  ///< all sequences together
  // Seconds of one decode step by part (kv_s: attention, measured or its K / V reads; router_s, norm_s:
  // 0 without their figures).
  double dram_s = 0, compute_s = 0, disk_s = 0, kv_s = 0, router_s = 0, norm_s = 0, overhead_s = 0, device_s = 0, step_s = 0;
  bool attention_measured = false;  ///< kv_s comes from the profile's attention figures
  double dram_bytes = 0, disk_bytes = 0, kv_bytes = 0;  ///< per decode step
  double dram_gbps = 0, disk_gbps = 0;
  std::string binds;                 ///< what bounds decode: "DRAM bandwidth", "CPU compute", ...
  std::string prompt_binds;          ///< the same for the prompt
  std::vector<std::string> notes;    ///< rates that were missing and what was used instead
};

/// The non-expert and per-expert weight mix of `tensors` (tied output: token_embd read whole; NextN
/// layers skipped), with n_expert experts per MoE layer.
void fill_weight_mix(const std::vector<gguf::TensorInfo>& tensors, int64_t n_expert, ModelWork& w);

/// Microseconds of one token's attention in one layer at `context` positions for a shape of `elements`
/// (see ModelWork::attn_elements) from the profile's figures named `what` ("attention": a decode token;
/// "attention_prefill": a token of a prompt chunk); -1 when it has none.
double attention_us(const MachineProfile& m, double context, double elements, const char* what = "attention");

/// Predicts decode and prompt speed. Throws Error when the profile has no DRAM figure.
Prediction predict(const ModelWork& w, const MachineProfile& m, const PredictShape& s);

}  // namespace moetier::tuning
