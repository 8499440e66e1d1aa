// The throughput model of `moetier plan` (see throughput_model.hpp).
#include "runtime/tuning/throughput_model.hpp"

#include <algorithm>
#include <cmath>
#include <set>

#include "common/error.hpp"
#include "runtime/models/tensor_roles.hpp"

namespace moetier::tuning {

void WeightMix::add(const std::string& type, double bytes, double elements) {
  auto& e = by_type[type];
  e.first += bytes;
  e.second += elements;
}

double WeightMix::bytes() const {
  double b = 0;
  for (const auto& [t, e] : by_type) b += e.first;
  return b;
}

WeightMix WeightMix::scaled(double f) const {
  WeightMix m;
  for (const auto& [t, e] : by_type) m.by_type[t] = {e.first * f, e.second * f};
  return m;
}

void fill_weight_mix(const std::vector<gguf::TensorInfo>& tensors, int64_t n_expert, ModelWork& w) {
  bool tied = true;
  for (const auto& t : tensors)
    if (models::classify_tensor(t.name).role == models::TensorRole::Output) tied = false;
  std::set<int32_t> moe_layers;
  WeightMix experts;
  for (const auto& t : tensors) {
    if (t.name.find(".nextn.") != std::string::npos) continue;
    const auto c = models::classify_tensor(t.name);
    const std::string type(ggml_type_name(t.type));
    const auto bytes = static_cast<double>(t.n_bytes), elements = static_cast<double>(t.n_elements());
    if (c.role == models::TensorRole::RoutedExpert) {
      experts.add(type, bytes, elements);
      moe_layers.insert(c.layer);
    } else if (c.role == models::TensorRole::Embedding && !tied) {
      const double rows = static_cast<double>(std::max<int64_t>(1, t.n_rows()));
      w.non_expert.add(type, bytes / rows, 0);  // a lookup: bytes, no arithmetic
    } else if (c.role == models::TensorRole::Norm || c.role == models::TensorRole::OutputNorm || c.is_bias) {
      w.non_expert.add(type, bytes, 0);
    } else {
      w.non_expert.add(type, bytes, elements);
    }
  }
  w.n_moe_layers = static_cast<int64_t>(moe_layers.size());
  w.n_expert = n_expert;
  if (w.n_moe_layers > 0 && n_expert > 0) w.expert = experts.scaled(1.0 / static_cast<double>(w.n_moe_layers * n_expert));
}

namespace {

struct StepCost {
  double dram_bytes = 0, disk_bytes = 0, compute_s = 0;
};

/// Compute seconds of `mix` (read once) applied to `tokens` tokens.
double compute_seconds(const WeightMix& mix, double tokens, const MachineProfile& m, double dram_gbps,
                       std::set<std::string>& missing) {
  double s = 0;
  for (const auto& [type, e] : mix.by_type) {
    if (e.second == 0) continue;  // lookups, norms: bytes only
    const double tok = std::max(1.0, tokens);
    const KernelFigure* k1 = m.kernel(type, 1);
    if (!k1 || k1->tokens != 1) {
      missing.insert(type);
      s += e.first / (dram_gbps * 1e9);
      continue;
    }
    const double t1 = e.first / (k1->gbps * 1e9);  // one token
    const KernelFigure* k8 = m.kernel(type, 8);
    const double t8 = k8 && k8->tokens == 8 ? e.first / (k8->gbps * 1e9) : 8 * t1;
    const KernelFigure* k32 = m.kernel(type, 32);
    const double t32 = k32 && k32->tokens == 32 ? 2.0 * e.second * 32 / (k32->gflops * 1e9) : 4 * t8;
    if (tok <= 8) {
      s += t1 + (tok - 1) / 7.0 * (t8 - t1);  // the GEMV path: between the measured 1 and 8 tokens
    } else if (tok < 32) {
      s += t8 + (tok - 8) / 24.0 * (t32 - t8);
    } else {
      const KernelFigure* k = m.kernel(type, static_cast<int64_t>(std::llround(tok)));
      s += 2.0 * e.second * tok / (k->gflops * 1e9);
    }
  }
  return s;
}

/// One step of `tokens` tokens (each routed to n_expert_used experts per MoE layer).
StepCost step_cost(const ModelWork& w, double tokens, const MachineProfile& m, double dram_gbps,
                   std::set<std::string>& missing) {
  StepCost c;
  c.dram_bytes = w.non_expert.bytes();
  c.compute_s = compute_seconds(w.non_expert, tokens, m, dram_gbps, missing);
  if (w.n_moe_layers > 0 && w.n_expert > 0) {
    const double E = static_cast<double>(w.n_expert), k = static_cast<double>(w.n_expert_used);
    const double distinct = E * (1.0 - std::pow(1.0 - k / E, tokens));  // expected, uniform routing
    const double per_expert_tokens = tokens * k / distinct;
    const double L = static_cast<double>(w.n_moe_layers);
    const double expert_bytes = L * distinct * w.expert.bytes();
    const double streamed = expert_bytes * w.nvme_share;
    c.dram_bytes += expert_bytes * w.dram_share + streamed * w.hit_rate;
    c.disk_bytes = streamed * (1.0 - w.hit_rate);
    // The CPU computes the DRAM- and NVMe-homed experts (the device tier computes its own).
    c.compute_s += (w.dram_share + w.nvme_share) * L * distinct *
                   compute_seconds(w.expert, per_expert_tokens, m, dram_gbps, missing);
  }
  return c;
}

/// Parallel steps of one forward: per layer ~6 products (attention's projections and attention), 2 norms
/// and the router unless `timed` (their figures include them), and the experts (gate/up pair + down
/// each), plus the LM head.
double dispatches(const ModelWork& w, bool timed) {
  return static_cast<double>(w.n_layer) * ((timed ? 6.0 : 9.0) + 2.0 * static_cast<double>(std::max<int64_t>(w.n_expert_used, 1))) + 2.0;
}

const char* largest(double mem, double cpu, double disk, double kv, double router_norms, double over, double dev,
                    bool attention_measured) {
  const double v[] = {mem, cpu, disk, kv, router_norms, over, dev};
  const char* n[] = {"DRAM bandwidth", "CPU compute", "disk bandwidth", attention_measured ? "attention" : "KV-cache reads",
                     "router and norms", "per-step overheads", "device tier"};
  return n[std::max_element(std::begin(v), std::end(v)) - std::begin(v)];
}

/// Microseconds of the per-token figure `what` scaled to `elements`; -1 when absent or either is 0.
double per_token_us(const MachineProfile& m, const char* what, double elements) {
  const OverheadFigure* f = m.overhead(what);
  if (!f || f->elements <= 0 || elements <= 0) return -1;
  return f->microseconds * elements / f->elements;
}

}  // namespace

double attention_us(const MachineProfile& m, double context, double elements, const char* what) {
  std::vector<const OverheadFigure*> f;
  for (const OverheadFigure& o : m.overheads)
    if (o.what == what && o.context > 0 && o.elements > 0) f.push_back(&o);
  if (f.empty() || elements <= 0) return -1;
  std::sort(f.begin(), f.end(), [](const OverheadFigure* a, const OverheadFigure* b) { return a->context < b->context; });
  const auto at = [&](const OverheadFigure* o) { return o->microseconds * elements / o->elements; };
  const auto ctx = [](const OverheadFigure* o) { return static_cast<double>(o->context); };
  if (context <= ctx(f.front())) return at(f.front()) * context / ctx(f.front());
  if (context >= ctx(f.back())) return at(f.back()) * context / ctx(f.back());
  size_t i = 1;
  while (ctx(f[i]) < context) ++i;
  const double a = ctx(f[i - 1]), b = ctx(f[i]);
  return at(f[i - 1]) + (context - a) / (b - a) * (at(f[i]) - at(f[i - 1]));
}

Prediction predict(const ModelWork& w, const MachineProfile& m, const PredictShape& s) {
  Prediction p;
  p.dram_gbps = m.dram_gbps(s.threads);
  const std::optional<double> disk = m.disk_gbps(w.expert_read_bytes);
  p.disk_gbps = disk.value_or(0);
  std::set<std::string> missing;
  const double router_us = w.n_moe_layers > 0 ? per_token_us(m, "router", w.router_elements) : -1;
  const double norm_us = per_token_us(m, "rms_norm", w.norm_elements);
  const bool attn = attention_us(m, 1, w.attn_elements) >= 0;
  p.attention_measured = attn;
  const double over_s = dispatches(w, router_us >= 0 && norm_us >= 0) * m.overhead_us("pool_dispatch") * 1e-6;
  // Router and norms of one token, seconds.
  const double rn_token_s = (std::max(0.0, router_us) * static_cast<double>(w.n_moe_layers) +
                             std::max(0.0, norm_us) * static_cast<double>(w.n_norms)) * 1e-6;
  // Attention of one token at `ctx` positions, all layers, seconds (the K / V reads at least).
  const auto attn_token_s = [&](double ctx) {
    const double reads = w.kv_bytes_per_position * ctx / (p.dram_gbps * 1e9);
    if (!attn) return reads;
    return std::max(reads, static_cast<double>(w.n_layer) * attention_us(m, ctx, w.attn_elements) * 1e-6);
  };
  // A prompt token's: the prefill figures when measured (a chunk reads each K / V row once for all its
  // tokens, so no floor of reads per token), else as a decode token.
  const bool attn_prefill = attention_us(m, 1, w.attn_elements, "attention_prefill") >= 0;
  const auto prompt_attn_token_s = [&](double ctx) {
    if (!attn_prefill) return attn_token_s(ctx);
    return static_cast<double>(w.n_layer) * attention_us(m, ctx, w.attn_elements, "attention_prefill") * 1e-6;
  };

  // Decode: one token of each sequence.
  const double P = static_cast<double>(std::max(1, s.parallel));
  const StepCost d = step_cost(w, P, m, p.dram_gbps, missing);
  p.dram_bytes = d.dram_bytes;
  p.disk_bytes = d.disk_bytes;
  p.kv_bytes = P * w.kv_bytes_per_position * static_cast<double>(s.decode_context);
  p.dram_s = d.dram_bytes / (p.dram_gbps * 1e9);
  p.compute_s = d.compute_s;
  p.disk_s = d.disk_bytes > 0 ? (disk ? d.disk_bytes / (*disk * 1e9) : 0) : 0;
  if (d.disk_bytes > 0 && !disk) p.notes.push_back("no disk figure: disk reads not timed (give --nvme-gbps or calibrate)");
  p.kv_s = P * attn_token_s(static_cast<double>(s.decode_context));
  p.router_s = P * std::max(0.0, router_us) * static_cast<double>(w.n_moe_layers) * 1e-6;
  p.norm_s = P * std::max(0.0, norm_us) * static_cast<double>(w.n_norms) * 1e-6;
  p.overhead_s = over_s;
  p.device_s = w.device_seconds_per_token * P;
  p.step_s = std::max(p.dram_s, p.compute_s) + p.disk_s + p.kv_s + p.router_s + p.norm_s + p.overhead_s + p.device_s;
  p.decode_tps = p.step_s > 0 ? P / p.step_s : 0;
  p.binds = largest(p.dram_s, p.compute_s, p.disk_s, p.kv_s, p.router_s + p.norm_s, p.overhead_s, p.device_s, attn);

  // Prompt: chunks of n_batch tokens (one sequence); a chunk's attention: its tokens at the chunk's middle
  // position (exact where the attention figure is linear in the context).
  double prompt_s = 0, mem_s = 0, cpu_s = 0, disk_s = 0, attn_s = 0, rn_s = 0;
  for (int64_t done = 0; done < s.prompt_tokens;) {
    const int64_t b = std::min(s.n_batch, s.prompt_tokens - done);
    const StepCost c = step_cost(w, static_cast<double>(b), m, p.dram_gbps, missing);
    const double ms = c.dram_bytes / (p.dram_gbps * 1e9), ds = disk ? c.disk_bytes / (*disk * 1e9) : 0;
    const double as = static_cast<double>(b) * prompt_attn_token_s(static_cast<double>(done) + static_cast<double>(b) / 2.0);
    const double rs = static_cast<double>(b) * rn_token_s;
    prompt_s += std::max(ms, c.compute_s) + ds + as + rs + over_s + w.device_seconds_per_token;
    mem_s += ms, cpu_s += c.compute_s, disk_s += ds, attn_s += as, rn_s += rs;
    done += b;
  }
  p.prompt_tps = prompt_s > 0 ? static_cast<double>(s.prompt_tokens) / prompt_s : 0;
  p.prompt_binds = largest(mem_s, cpu_s, disk_s, attn_s, rn_s, over_s, w.device_seconds_per_token, attn);
  for (const std::string& t : missing)
    p.notes.push_back("no kernel figure for " + t + " in the machine profile: its weights are timed at the DRAM rate");
  return p;
}

}  // namespace moetier::tuning
