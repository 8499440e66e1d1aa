// GpuBackend: the CUDA device gpu:N as a DeviceBackend (scheduler/expert_backend.hpp), behaving like the
// simulated device (sim_backend.hpp) with the CUDA kernels of kernels/ffn_kernels.hpp:
//   - memory: a DevicePool with spec.capacity_bytes (the VRAM budget), charged w.bytes() per FFN as the
//     simulated device is; place() copies gate, up, down (and the biases: device kernels cannot read host
//     biases) into one device buffer through a pinned staging buffer, synchronously, counting bytes and
//     time in stats() (h2d_bytes: weights and biases).
//   - run(): copies x into a pinned buffer of the ticket, then on the backend's one stream: x -> device,
//     the FFN kernels, y -> the pinned buffer, an end event; returns the ticket at once. wait(ticket)
//     synchronises the events of every ticket <= ticket in order, copies their y out of pinned memory into
//     the executor's y, and rethrows the first error among them (as moetier::Error naming the device and
//     the FFN). Tickets are 1, 2, 3, ... in order.
//   - scratch (device x, y and FFN workspace) is shared by all tickets (the stream is in order) and is
//     not counted in the budget; it grows to the largest group seen.
// Compiled only in CUDA builds (MOETIER_HAVE_CUDA); registered as "gpu" in backend_registry.cpp.
// NOTE: never run on a GPU yet (issue 10): every CUDA path here is compile-checked only.
#include <fmt/format.h>

#include <chrono>
#include <cstring>
#include <deque>
#include <memory>
#include <unordered_map>
#include <vector>

#include "common/error.hpp"
#include "kernels/cuda_runtime.hpp"
#include "kernels/ffn_kernels.hpp"
#include "scheduler/backend_registry.hpp"
#include "scheduler/expert_backend.hpp"

namespace moetier::sched {

namespace {

constexpr uint64_t kStagingBytes = 32ull << 20;  // pinned staging for placement: two halves of 16 MiB
constexpr uint64_t kAlign = 256;                 // device sub-buffer alignment (F32 / F16 rows: 16 bytes)
constexpr size_t kMaxInFlight = 512;             // tickets queued before run() completes the oldest

uint64_t align_up(uint64_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

uint64_t ns_since(std::chrono::steady_clock::time_point t0) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count());
}

class GpuBackend final : public DeviceBackend {
 public:
  explicit GpuBackend(const DeviceSpec& spec);
  ~GpuBackend() override;

  std::string name() const override { return name_; }
  MemoryKind memory_kind() const override { return MemoryKind::Device; }
  std::optional<std::string> supports(GgmlType weight_type, int64_t n_tokens, MemoryKind weights_in) const override;
  uint64_t run(const ExpertGroup& g) override;
  void wait(uint64_t ticket) override;
  BackendStats stats() const override;

  uint64_t capacity_bytes() const override { return pool_.capacity_bytes(); }
  uint64_t used_bytes() const override { return pool_.used_bytes(); }
  void place(FfnKey key, const HostFfn& w) override;
  void evict(FfnKey key) override;
  bool holds(FfnKey key) const override { return slots_.count(key.id()) != 0; }

 private:
  struct Slot {
    gpu::DeviceBuffer buffer;
    gpu::GpuFfn ffn;
  };
  // Per-ticket resources, recycled: the pinned x / y of one group and its start / end events.
  struct TicketRes {
    gpu::PinnedBuffer pinned;
    gpu::Event start, end;
  };
  struct InFlight {
    uint64_t ticket = 0;
    FfnKey key;
    float* y = nullptr;  // executor's host y
    uint64_t y_bytes = 0;
    uint64_t y_offset = 0;  // of y in res->pinned (x is at 0)
    uint64_t rows = 0;
    std::unique_ptr<TicketRes> res;
    std::string error;  // set when queueing failed after the ticket was issued
  };

  void select() const { gpu::set_device(index_); }
  std::unique_ptr<TicketRes> take_res(uint64_t pinned_bytes);
  void ensure_scratch(uint64_t floats);
  /// Completes the oldest in-flight ticket: syncs its end event, copies its y out of pinned memory,
  /// counts it in stats_; a failure goes to errors_ (reported by wait()).
  void finish_oldest();

  int index_;
  std::string name_;
  gpu::DevicePool pool_;
  gpu::Stream stream_;      // groups
  gpu::Stream copy_;        // placement copies
  gpu::PinnedBuffer staging_;
  gpu::Event staged_[2];    // staging half k is free once staged_[k] completed
  std::unordered_map<uint64_t, Slot> slots_;  // after pool_: freed before it
  // Scratch shared by all tickets (in-order stream): x, y and the FFN workspace, f32.
  gpu::DevicePool scratch_pool_;
  gpu::DeviceBuffer scratch_;
  std::deque<InFlight> in_flight_;
  std::vector<std::pair<uint64_t, std::string>> errors_;  // failed tickets not yet reported, ascending
  std::vector<std::unique_ptr<TicketRes>> free_res_;
  uint64_t issued_ = 0;
  BackendStats stats_;
};

std::string checked_name(const DeviceSpec& spec) {
  const std::string name = fmt::format("gpu:{}", spec.index);
  const int n = gpu_device_count();
  if (spec.index < 0 || spec.index >= n)
    fail("{}: no such CUDA device ({} usable in this process)", name, n);
  if (spec.capacity_bytes == 0) fail("{}: device memory budget must be > 0 bytes", name);
  return name;
}

GpuBackend::GpuBackend(const DeviceSpec& spec)
    : index_(spec.index),
      name_(checked_name(spec)),
      pool_((gpu::set_device(spec.index), name_), spec.capacity_bytes),
      staging_(kStagingBytes, name_ + " placement staging"),
      scratch_pool_(name_ + " (scratch outside the budget)", ~0ull) {
  const gpu::MemInfo mi = gpu::mem_info();
  if (spec.capacity_bytes > mi.free_bytes)
    fail("{} ({}): a budget of {} bytes is more than the {} bytes of device memory free (of {})", name_,
         gpu::device_name(), spec.capacity_bytes, mi.free_bytes, mi.total_bytes);
  staged_[0].record(copy_);
  staged_[1].record(copy_);
}

GpuBackend::~GpuBackend() {
  try {
    select();
    stream_.synchronize("");
    copy_.synchronize("");
  } catch (...) {  // a broken context: the frees below fail quietly
  }
}

std::optional<std::string> GpuBackend::supports(GgmlType weight_type, int64_t n_tokens, MemoryKind weights_in) const {
  if (n_tokens < 1) return std::string("empty group");
  if (weights_in != MemoryKind::Device)
    return fmt::format("{} computes from its own device memory, not {} memory", name_, memory_kind_name(weights_in));
  if (!gpu::gemv_computes(weight_type)) return fmt::format("no CUDA kernel for {} weights", ggml_type_name(weight_type));
  return std::nullopt;
}

void GpuBackend::place(FfnKey key, const HostFfn& w) {
  const std::string what = to_string(key);
  if (holds(key)) fail("{}: {} is already on the device", name_, what);
  check_placeable(name_, key, w, [](const HostWeight& m) { return gpu::gemv_declines(m.type, m.n_in); });

  // Layout of the one buffer: gate, up, down, gate bias, up bias, down bias, each 256-byte aligned.
  struct Part {
    const void* src;
    uint64_t bytes;
    uint64_t offset = 0;
  };
  const uint64_t n_ff = static_cast<uint64_t>(w.gate.n_out), n_embd = static_cast<uint64_t>(w.gate.n_in);
  Part parts[6] = {{w.gate.data, w.gate.bytes()},
                   {w.up.data, w.up.bytes()},
                   {w.down.data, w.down.bytes()},
                   {w.gate_bias, w.gate_bias ? n_ff * 4 : 0},
                   {w.up_bias, w.up_bias ? n_ff * 4 : 0},
                   {w.down_bias, w.down_bias ? n_embd * 4 : 0}};
  uint64_t total = 0;
  for (Part& p : parts) {
    p.offset = total;
    total += align_up(p.bytes);
  }
  select();
  Slot slot;
  // The budget is charged w.bytes(), the planner's measure of an FFN (as sim:N); alignment padding and the
  // biases (host memory on sim:N) are outside it, like the scratch.
  slot.buffer = pool_.allocate(total, what, w.bytes());  // throws when over budget; RAII frees on any later throw
  std::byte* base = slot.buffer.data();

  // Host -> pinned (memcpy) -> device (async on copy_), double-buffered through the two staging halves.
  const auto t0 = std::chrono::steady_clock::now();
  const uint64_t half = staging_.size() / 2;
  int k = 0;
  for (const Part& p : parts) {
    for (uint64_t done = 0; done < p.bytes;) {
      const uint64_t n = std::min(half, p.bytes - done);
      staged_[k].synchronize(fmt::format("{}: copying {} to the device", name_, what));
      std::byte* stage = staging_.data() + k * half;
      std::memcpy(stage, static_cast<const std::byte*>(p.src) + done, n);
      gpu::copy_h2d_async(base + p.offset + done, stage, n, copy_, fmt::format("{}: copying {} to the device", name_, what));
      staged_[k].record(copy_);
      done += n;
      k ^= 1;
    }
  }
  copy_.synchronize(fmt::format("{}: copying {} to the device", name_, what));
  stats_.h2d_ns += ns_since(t0);
  stats_.h2d_bytes += w.bytes() + parts[3].bytes + parts[4].bytes + parts[5].bytes;

  auto at = [&](int i) { return base + parts[i].offset; };
  slot.ffn.gate = w.gate.rebased<MemoryKind::Device>(at(0));
  slot.ffn.up = w.up.rebased<MemoryKind::Device>(at(1));
  slot.ffn.down = w.down.rebased<MemoryKind::Device>(at(2));
  slot.ffn.gate_bias = w.gate_bias ? reinterpret_cast<const float*>(at(3)) : nullptr;
  slot.ffn.up_bias = w.up_bias ? reinterpret_cast<const float*>(at(4)) : nullptr;
  slot.ffn.down_bias = w.down_bias ? reinterpret_cast<const float*>(at(5)) : nullptr;
  slots_.emplace(key.id(), std::move(slot));
}

void GpuBackend::evict(FfnKey key) {
  const auto it = slots_.find(key.id());
  if (it == slots_.end()) return;
  select();
  try {
    stream_.synchronize("");  // no queued group may still read the buffer
  } catch (const Error&) {     // the failing group's error is reported by wait()
  }
  slots_.erase(it);
}

std::unique_ptr<GpuBackend::TicketRes> GpuBackend::take_res(uint64_t pinned_bytes) {
  for (size_t i = 0; i < free_res_.size(); ++i) {
    if (free_res_[i]->pinned.size() >= pinned_bytes) {
      std::unique_ptr<TicketRes> r = std::move(free_res_[i]);
      free_res_.erase(free_res_.begin() + static_cast<std::ptrdiff_t>(i));
      return r;
    }
  }
  uint64_t size = 64 << 10;
  while (size < pinned_bytes) size *= 2;
  auto r = std::make_unique<TicketRes>();
  r->pinned = gpu::PinnedBuffer(size, name_ + " group staging");
  return r;
}

void GpuBackend::ensure_scratch(uint64_t floats) {
  if (scratch_.valid() && scratch_.size() >= floats * 4) return;
  stream_.synchronize(name_ + ": growing the scratch buffer");  // earlier groups still use the old one
  scratch_ = gpu::DeviceBuffer();
  uint64_t size = 1 << 20;
  while (size < floats * 4) size *= 2;
  scratch_ = scratch_pool_.allocate(size, "group scratch");
}

uint64_t GpuBackend::run(const ExpertGroup& g) {
  const auto it = slots_.find(g.key.id());
  if (it == slots_.end()) fail("{}: does not hold {} (place it before running groups on it)", name_, to_string(g.key));
  const gpu::GpuFfn& ffn = it->second.ffn;
  check_group(name_, g, ffn.gate.n_in);
  select();
  if (in_flight_.size() >= kMaxInFlight) finish_oldest();  // bounds the pinned memory held by tickets
  const uint64_t io_bytes = static_cast<uint64_t>(g.n_tokens) * static_cast<uint64_t>(g.n_embd) * 4;
  const uint64_t xy_floats = align_up(io_bytes) / 4;
  // The ticket is issued first: from here on a failure is this ticket's error, reported by wait().
  InFlight f;
  f.ticket = ++issued_;
  f.key = g.key;
  f.y = g.y;
  f.y_bytes = io_bytes;
  f.y_offset = xy_floats * 4;
  f.rows = static_cast<uint64_t>(g.n_tokens);
  try {
    ensure_scratch(2 * xy_floats + gpu::ffn_workspace_floats(g.n_tokens, ffn.gate.n_out));
    f.res = take_res(2 * xy_floats * 4);
    std::memcpy(f.res->pinned.data(), g.x, io_bytes);
    float* dx = reinterpret_cast<float*>(scratch_.data());
    float* dy = dx + xy_floats;
    float* work = dy + xy_floats;
    const std::string what = fmt::format("{}: {}", name_, to_string(g.key));
    f.res->start.record(stream_);
    gpu::copy_h2d_async(dx, f.res->pinned.data(), io_bytes, stream_, what + ": copying x to the device");
    gpu::ffn_forward(ffn, dx, g.n_tokens, dy, work,
                     g.act == FfnAct::SwiGLU ? gpu::FfnActivation::SwiGLU : gpu::FfnActivation::SwiGLUClampedOss,
                     stream_.handle());
    gpu::copy_d2h_async(f.res->pinned.data() + f.y_offset, dy, io_bytes, stream_, what + ": copying y from the device");
    f.res->end.record(stream_);
  } catch (const std::exception& e) {
    f.error = fmt::format("{}: {}: {}", name_, to_string(g.key), e.what());
  }
  const uint64_t ticket = f.ticket;
  in_flight_.push_back(std::move(f));
  return ticket;
}

void GpuBackend::finish_oldest() {
  InFlight f = std::move(in_flight_.front());
  in_flight_.pop_front();
  std::string err = std::move(f.error);
  if (err.empty()) {
    try {
      f.res->end.synchronize(fmt::format("{}: {}", name_, to_string(f.key)));
      std::memcpy(f.y, f.res->pinned.data() + f.y_offset, f.y_bytes);
      stats_.busy_ns += static_cast<uint64_t>(static_cast<double>(f.res->end.elapsed_ms_since(f.res->start)) * 1e6);
      ++stats_.groups;
      stats_.token_rows += f.rows;
    } catch (const std::exception& e) {
      err = e.what();
    }
  } else if (f.res) {
    try {  // a copy queued before the failure may still read the pinned buffer
      stream_.synchronize("");
    } catch (const std::exception&) {
    }
  }
  if (f.res) free_res_.push_back(std::move(f.res));
  if (!err.empty()) errors_.emplace_back(f.ticket, std::move(err));
}

void GpuBackend::wait(uint64_t ticket) {
  if (ticket > issued_) fail("{}: wait for ticket {}, but only {} were issued", name_, ticket, issued_);
  select();
  while (!in_flight_.empty() && in_flight_.front().ticket <= ticket) finish_oldest();
  size_t n_failed = 0;
  while (n_failed < errors_.size() && errors_[n_failed].first <= ticket) ++n_failed;
  if (n_failed == 0) return;
  std::string msg = std::move(errors_.front().second);
  errors_.erase(errors_.begin(), errors_.begin() + static_cast<std::ptrdiff_t>(n_failed));
  if (n_failed > 1) msg += fmt::format(" (and {} more failed groups)", n_failed - 1);
  throw Error(msg);
}

BackendStats GpuBackend::stats() const { return stats_; }

}  // namespace

std::unique_ptr<DeviceBackend> make_gpu_backend(const DeviceSpec& spec) { return std::make_unique<GpuBackend>(spec); }

}  // namespace moetier::sched
