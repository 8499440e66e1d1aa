#include "scheduler/moe_executor.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>

#include "common/error.hpp"
#include "common/trace_events.hpp"

namespace moetier::sched {

namespace {
uint64_t ns_since(std::chrono::steady_clock::time_point t0) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count());
}
}  // namespace

MoeExecutor::MoeExecutor(LinearExec& lin) : cpu_(lin) {}

void MoeExecutor::run_cpu(const ExpertGroup& g, LayerExecStats& st, const char* home) {
  trace::Scope span(g.kind == FfnKind::Routed ? "expert" : "shared", "experts");
  if (span.on())
    span.arg("layer", g.key.layer).arg("expert", g.kind == FfnKind::Routed ? g.key.expert : -1).arg("tokens", g.n_tokens)
        .arg("bytes", static_cast<int64_t>(g.weights.bytes())).str("tier", home);
  const auto t0 = std::chrono::steady_clock::now();
  cpu_.run(g);
  const auto t1 = std::chrono::steady_clock::now();
  st.cpu_ns += static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
  ++st.cpu_groups;
  st.cpu_rows += static_cast<uint64_t>(g.n_tokens);
  if (span_log_) {
    const auto ns = [](std::chrono::steady_clock::time_point t) {
      return static_cast<int64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
    };
    span_log_->push_back(GroupSpan{g.key, ns(t0), ns(t1)});
  }
}

LayerExecStats& MoeExecutor::stats_of(int32_t layer) {
  if (layer_stats_.size() <= static_cast<size_t>(layer)) layer_stats_.resize(static_cast<size_t>(layer) + 1);
  return layer_stats_[static_cast<size_t>(layer)];
}

void MoeExecutor::predict(int32_t layer, std::span<const int32_t> experts) {
  predicted_layer_ = layer;
  predicted_.assign(experts.begin(), experts.end());
  if (streamed_) streamed_->predict(layer, experts);
}

void MoeExecutor::drain(int32_t layer, ExpertSource& src, std::span<const int32_t> ids, int64_t n_embd, FfnAct act,
                        bool decode, bool& first_cpu) {
  LayerExecStats& st = stats_of(layer);
  ExpertGroup g;
  g.n_embd = n_embd;
  g.act = act;
  g.kind = FfnKind::Routed;
  size_t done = 0;
  for (int32_t e; (e = src.next(g.weights)) >= 0;) {
    const int64_t gi = batches_.index_of(e);
    if (gi < 0 || std::find(ids.begin(), ids.end(), e) == ids.end())
      fail("expert source returned expert {} of layer {}, which it was not asked for", e, layer);
    const auto rows = static_cast<int64_t>(batches_.slots(static_cast<size_t>(gi)).size());
    g.key = FfnKey{layer, e};
    g.x = xs_.data() + group_row_[static_cast<size_t>(gi)] * n_embd;
    g.y = ys_.data() + group_row_[static_cast<size_t>(gi)] * n_embd;
    g.n_tokens = rows;
    // Decode: every group of the layer multiplies the one token, so its quantisation is reused.
    g.same_input = decode && !first_cpu;
    first_cpu = false;
    run_cpu(g, st, &src == streamed_ ? "nvme" : "dram");
    ++done;
    if (streamed_ && &src != streamed_) streamed_->poll();  // keep the reads moving between computations
  }
  if (done != ids.size())
    fail("expert source handed out {} of the {} experts of layer {} it was asked for", done, ids.size(), layer);
}

void MoeExecutor::moe(int32_t layer, const TokenRouting& r, const float* x, int64_t n_embd, float* y, FfnAct act,
                      const HostFfn* shared, float* shared_y) {
  if (!resident_) fail("MoE executor: no resident expert source");
  const int64_t n_tokens = r.n_tokens, k = r.k;
  batches_.build(r);
  const std::span<const int32_t> experts = batches_.experts();
  if (observer_) observer_->observe(layer, experts);
  if (predicted_layer_ == layer) {
    for (int32_t e : predicted_) pred_stats_.correct += batches_.index_of(e) >= 0;
    pred_stats_.predicted += predicted_.size();
    predicted_layer_ = -1;
  }

  // Gather: the rows of each expert's group, contiguous and in token order.
  const size_t n_rows = static_cast<size_t>(n_tokens * k);
  xs_.resize(n_rows * static_cast<size_t>(n_embd));
  ys_.resize(xs_.size());
  row_of_slot_.resize(n_rows);
  group_row_.resize(experts.size());
  int64_t row = 0;
  for (size_t gi = 0; gi < experts.size(); ++gi) {
    group_row_[gi] = row;
    for (const int32_t slot : batches_.slots(gi)) {
      std::copy_n(x + batches_.token_of(slot) * n_embd, n_embd, xs_.data() + row * n_embd);
      row_of_slot_[static_cast<size_t>(slot)] = row++;
    }
  }

  // Homes: device, streaming source, resident source.
  on_device_.clear();
  from_streamed_.clear();
  from_resident_.clear();
  for (const int32_t e : experts) {
    if (device_ && device_->holds(FfnKey{layer, e})) on_device_.push_back(e);
    else if (streamed_ && streamed_->serves(layer, e)) from_streamed_.push_back(e);
    else from_resident_.push_back(e);
  }
  const bool decode = n_tokens == 1;
  LayerExecStats& st = stats_of(layer);

  // Device groups first: they run on its stream while the CPU computes its groups below.
  uint64_t ticket = 0;
  bool device_used = false;
  const uint64_t device_busy0 = device_ ? device_->stats().busy_ns : 0;
  if (device_) {
    ExpertGroup g;
    g.n_embd = n_embd;
    g.act = act;
    bool first = true;
    if (shared && device_->holds(FfnKey{layer, FfnKey::kSharedFfn})) {
      g.key = FfnKey{layer, FfnKey::kSharedFfn};
      g.x = x;
      g.y = shared_y;
      g.n_tokens = n_tokens;
      g.kind = FfnKind::Dense;
      g.same_input = false;
      ticket = device_->run(g);
      device_used = true;
      ++st.device_groups;
      st.device_rows += static_cast<uint64_t>(n_tokens);
      shared = nullptr;  // done there
    }
    g.kind = FfnKind::Routed;
    for (const int32_t e : on_device_) {
      const auto gi = static_cast<size_t>(batches_.index_of(e));
      g.key = FfnKey{layer, e};
      g.x = xs_.data() + group_row_[gi] * n_embd;
      g.y = ys_.data() + group_row_[gi] * n_embd;
      g.n_tokens = static_cast<int64_t>(batches_.slots(gi).size());
      g.same_input = decode && !first;
      first = false;
      ticket = device_->run(g);
      device_used = true;
      ++st.device_groups;
      st.device_rows += static_cast<uint64_t>(g.n_tokens);
    }
  }

  // CPU groups: the streaming source's reads start first, resident experts are computed while they
  // arrive, then each streamed expert as its read completes.
  bool first_cpu = true;
  if (!from_streamed_.empty()) streamed_->begin(layer, from_streamed_);
  if (!from_resident_.empty()) {
    resident_->begin(layer, from_resident_);
    drain(layer, *resident_, from_resident_, n_embd, act, decode, first_cpu);
  }
  if (!from_streamed_.empty()) drain(layer, *streamed_, from_streamed_, n_embd, act, decode, first_cpu);
  if (shared) {
    ExpertGroup g;
    g.key = FfnKey{layer, FfnKey::kSharedFfn};
    g.weights = *shared;
    g.x = x;
    g.y = shared_y;
    g.n_tokens = n_tokens;
    g.n_embd = n_embd;
    g.act = act;
    g.kind = FfnKind::Dense;
    run_cpu(g, st);
  }
  if (device_used) {
    const auto t0 = std::chrono::steady_clock::now();
    trace::Scope span("device wait", "wait");
    device_->wait(ticket);
    span.end();
    st.device_wait_ns += ns_since(t0);
    st.device_busy_ns += device_->stats().busy_ns - device_busy0;  // only this layer's groups ran since
  }

  // Weighted sum in slot order: y = ((w0*e0 + w1*e1) + w2*e2) + ... (ggml_mul then successive ggml_add).
  for (int64_t t = 0; t < n_tokens; ++t) {
    float* yt = y + t * n_embd;
    for (int64_t s = 0; s < k; ++s) {
      const float wk = r.weights[static_cast<size_t>(t * k + s)];
      const float* e = ys_.data() + row_of_slot_[static_cast<size_t>(t * k + s)] * n_embd;
      if (s == 0)
        for (int64_t i = 0; i < n_embd; ++i) yt[i] = e[i] * wk;
      else
        for (int64_t i = 0; i < n_embd; ++i) yt[i] += e[i] * wk;
    }
  }
}

void MoeExecutor::dense(int32_t layer, const HostFfn& w, const float* x, int64_t n_tokens, float* y, FfnAct act) {
  LayerExecStats& st = stats_of(layer);
  ExpertGroup g;
  g.key = FfnKey{layer, FfnKey::kSharedFfn};
  g.x = x;
  g.y = y;
  g.n_tokens = n_tokens;
  g.n_embd = w.down.n_out;
  g.act = act;
  g.kind = FfnKind::Dense;
  const auto t0 = std::chrono::steady_clock::now();
  if (device_ && device_->holds(g.key)) {
    const uint64_t busy0 = device_->stats().busy_ns;
    device_->wait(device_->run(g));
    st.device_busy_ns += device_->stats().busy_ns - busy0;
    st.device_wait_ns += ns_since(t0);
    ++st.device_groups;
    st.device_rows += static_cast<uint64_t>(n_tokens);
    return;
  }
  g.weights = w;
  run_cpu(g, st);
}

std::string MoeExecutor::stats_report() const {
  const auto backend_line = [](const std::string& name, const BackendStats& b) {
    return fmt::format("  {}: {} groups, {} token rows, busy {:.1f} ms, {} bytes copied host->device in {:.1f} ms\n",
                       name, b.groups, b.token_rows, b.busy_ns / 1e6, b.h2d_bytes, b.h2d_ns / 1e6);
  };
  std::string s = "executor:\n" + backend_line("cpu", cpu_.stats());
  if (device_)
    s += backend_line(device_->name(), device_->stats()) +
         fmt::format("  {} memory: {} of {} bytes in use\n", device_->name(), device_->used_bytes(),
                     device_->capacity_bytes());
  for (size_t il = 0; il < layer_stats_.size(); ++il) {
    const LayerExecStats& l = layer_stats_[il];
    if (l.cpu_groups + l.device_groups == 0) continue;
    s += fmt::format("  layer {:3d}: cpu {:6d} groups {:7d} rows, busy {:8.1f} ms | device {:6d} groups {:7d} rows, "
                     "busy {:8.1f} ms, waited for {:8.1f} ms\n",
                     il, l.cpu_groups, l.cpu_rows, l.cpu_ns / 1e6, l.device_groups, l.device_rows,
                     l.device_busy_ns / 1e6, l.device_wait_ns / 1e6);
  }
  return s;
}

}  // namespace moetier::sched
