#include "scheduler/sim_backend.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <memory>

#include "common/error.hpp"
#include "common/trace_events.hpp"

namespace moetier::sched {

namespace {

// Groups the stream queue holds before run() blocks (a layer's groups are typically all queued at once).
constexpr size_t kQueueSlots = 512;


std::string checked_name(const DeviceSpec& spec) {
  if (spec.index < 0) fail("sim:{}: device index must be >= 0", spec.index);
  const std::string name = fmt::format("sim:{}", spec.index);
  if (spec.capacity_bytes == 0) fail("{}: device memory capacity must be > 0 bytes", name);
  if (!std::isfinite(spec.h2d_gbps) || spec.h2d_gbps < 0)
    fail("{}: host -> device copy rate must be >= 0 GB/s (0 = unpaced), got {}", name, spec.h2d_gbps);
  if (spec.gemm_min_tokens < 0) fail("{}: gemm_min_tokens must be >= 0, got {}", name, spec.gemm_min_tokens);
  return name;
}

// ---------------------------------------------------------------------------------------------------------
// THE ONE PLACE WHERE DEVICE MEMORY BECOMES A HOST VIEW. The simulated device's memory is host memory in
// disguise (SimBuffer), and its "device kernels" are the CPU kernels running on its stream thread; so here,
// and only here (called on the stream thread from SimBackend::compute), the device copy of an FFN is
// handed to CpuFfn as host weights. Nothing else may convert DeviceWeight / DeviceFfn to host views: on a
// real GPU these bytes are not readable by the CPU.
HostFfn device_as_host(const DeviceFfn& d) {
  HostFfn h;
  h.gate = d.gate.rebased<MemoryKind::Host>(d.gate.data);
  h.up = d.up.rebased<MemoryKind::Host>(d.up.data);
  h.down = d.down.rebased<MemoryKind::Host>(d.down.data);
  h.gate_bias = d.gate_bias;  // biases are host memory for every kind (weight_view.hpp)
  h.up_bias = d.up_bias;
  h.down_bias = d.down_bias;
  return h;
}
// ---------------------------------------------------------------------------------------------------------

}  // namespace

SimBackend::SimBackend(const DeviceSpec& spec)
    : name_(checked_name(spec)),
      memory_(name_, spec.capacity_bytes),
      copy_(spec.h2d_gbps),
      pool_(1),
      lin_(&pool_),
      ffn_(lin_),
      stream_(name_, kQueueSlots, [this](const SimWork& w, uint64_t ticket) { compute(w, ticket); }) {
  lin_.set_gemm_min_tokens(spec.gemm_min_tokens);
}

SimBackend::~SimBackend() = default;

std::optional<std::string> SimBackend::supports(GgmlType weight_type, int64_t n_tokens, MemoryKind weights_in) const {
  if (n_tokens < 1) return std::string("empty group");
  if (weights_in != MemoryKind::Device)
    return fmt::format("{} computes from its own device memory, not {} memory", name_, memory_kind_name(weights_in));
  // The capability of the CPU path: the simulated device computes with the CPU kernels.
  if (auto why = cpu_ffn_declines(weight_type, MemoryKind::Host))
    return fmt::format("{} (the simulated device computes with the CPU kernels)", *why);
  return std::nullopt;
}

void SimBackend::place(FfnKey key, const HostFfn& w) {
  const std::string what = to_string(key);
  if (holds(key)) fail("{}: {} is already on the device", name_, what);
  check_placeable(name_, key, w, [&](const HostWeight& m) { return supports(m.type, 1, MemoryKind::Device); });

  Slot slot;
  slot.buffer = memory_.allocate(w.bytes(), what);  // throws when it does not fit; RAII frees on any throw
  uint64_t offset = 0;
  const std::byte* base = slot.buffer.device_data();
  auto copy = [&](const HostWeight& m) {
    copy_.copy_h2d(slot.buffer, offset, m.data, m.bytes());
    const DeviceWeight d = m.rebased<MemoryKind::Device>(base + offset);
    offset += m.bytes();
    return d;
  };
  slot.ffn.gate = copy(w.gate);
  slot.ffn.up = copy(w.up);
  slot.ffn.down = copy(w.down);
  slot.ffn.gate_bias = w.gate_bias;
  slot.ffn.up_bias = w.up_bias;
  slot.ffn.down_bias = w.down_bias;
  slots_.emplace(key.id(), std::move(slot));
}

void SimBackend::evict(FfnKey key) {
  const auto it = slots_.find(key.id());
  if (it == slots_.end()) return;
  stream_.drain();  // no queued or running group may still read the buffer
  slots_.erase(it);
}

bool SimBackend::holds(FfnKey key) const { return slots_.count(key.id()) != 0; }

const DeviceFfn& SimBackend::device_ffn(FfnKey key) const {
  const auto it = slots_.find(key.id());
  if (it == slots_.end()) fail("{}: does not hold {}", name_, to_string(key));
  return it->second.ffn;
}

uint64_t SimBackend::run(const ExpertGroup& g) {
  const auto it = slots_.find(g.key.id());
  if (it == slots_.end()) fail("{}: does not hold {} (place it before running groups on it)", name_, to_string(g.key));
  const DeviceFfn& ffn = it->second.ffn;
  check_group(name_, g, ffn.gate.n_in);
  SimWork work{g, ffn};
  work.group.weights = HostFfn{};  // the stream computes from the device copy only
  return stream_.submit(work);
}

void SimBackend::wait(uint64_t ticket) { stream_.wait(ticket); }

void SimBackend::inject_fault_for_test() { fault_ticket_.store(stream_.last_ticket() + 1); }

BackendStats SimBackend::stats() const {
  BackendStats s;
  s.groups = groups_.load();
  s.token_rows = token_rows_.load();
  s.busy_ns = busy_ns_.load();
  s.h2d_bytes = copy_.bytes();
  s.h2d_ns = copy_.ns();
  return s;
}

void SimBackend::compute(const SimWork& work, uint64_t ticket) {
  const ExpertGroup& g = work.group;
  try {
    if (ticket == fault_ticket_.load()) fail("injected fault (test hook)");
    thread_local bool named = false;  // the stream thread's track in a trace
    if (!named && trace::enabled()) {
      trace::set_thread_name(name_ + " stream");
      named = true;
    }
    trace::Scope span(g.kind == FfnKind::Routed ? "expert" : "shared", "device");
    if (span.on())
      span.arg("layer", g.key.layer).arg("expert", g.kind == FfnKind::Routed ? g.key.expert : -1).arg("tokens", g.n_tokens)
          .arg("bytes", static_cast<int64_t>(work.weights.bytes())).str("tier", "sim");
    const auto t0 = std::chrono::steady_clock::now();
    ffn_.run(device_as_host(work.weights), g.x, g.n_tokens, g.y, g.act, g.kind, g.same_input);
    busy_ns_ += static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count());
    ++groups_;
    token_rows_ += static_cast<uint64_t>(g.n_tokens);
  } catch (const std::exception& e) {
    ffn_.new_input();  // the kept quantisation of x may be half-made: the next group quantises again
    fail("{}: {}: {}", name_, to_string(g.key), e.what());
  }
}

std::unique_ptr<DeviceBackend> make_sim_backend(const DeviceSpec& spec) { return std::make_unique<SimBackend>(spec); }

}  // namespace moetier::sched
