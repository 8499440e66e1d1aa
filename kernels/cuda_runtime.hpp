// RAII wrappers of the CUDA runtime for the GPU backend: device memory with a byte budget (DevicePool,
// DeviceBuffer), page-locked host memory (PinnedBuffer), streams and events. Handles are opaque here (no
// cuda_runtime.h), so scheduler/ code compiled by g++ can use them; the definitions are in
// cuda_runtime.cu and exist only in builds with CUDA (MOETIER_HAVE_CUDA).
//
// Errors: every failing CUDA call throws moetier::Error in one line: "<what was being done>: CUDA error
// <name> (<cudaGetErrorString>)". Destructors never throw (a failing free is ignored: the context is
// already broken and the next call reports it).
//
// Devices: every call works on the CUDA device that is current on the calling thread; the owner calls
// set_device(index) first (the GPU backend does so in each of its entry points).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace moetier::gpu {

/// Makes device `index` current on the calling thread. Throws moetier::Error for a bad index.
void set_device(int index);

/// Free and total memory of the current device, bytes (cudaMemGetInfo).
struct MemInfo {
  uint64_t free_bytes = 0, total_bytes = 0;
};
MemInfo mem_info();

/// The current device's name ("NVIDIA H100 80GB HBM3").
std::string device_name();

/// An opaque cudaStream_t (nullptr is not used: a Stream always owns a created stream).
using StreamHandle = void*;

/// A created stream (non-blocking with respect to the legacy default stream). Move-only.
class Stream {
 public:
  /// Creates a stream on the current device. Throws moetier::Error.
  Stream();
  ~Stream();
  Stream(Stream&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  Stream& operator=(Stream&& o) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  StreamHandle handle() const { return s_; }
  /// Blocks until all work queued on the stream is done; throws moetier::Error (naming `what`) when
  /// that work failed.
  void synchronize(std::string_view what) const;

 private:
  StreamHandle s_ = nullptr;
};

/// A CUDA event with timing. Move-only.
class Event {
 public:
  /// Creates an event on the current device. Throws moetier::Error.
  Event();
  ~Event();
  Event(Event&& o) noexcept : e_(std::exchange(o.e_, nullptr)) {}
  Event& operator=(Event&& o) noexcept;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  /// Records the event at the current end of `s`.
  void record(const Stream& s);
  /// Blocks until the recorded work is done; throws moetier::Error (naming `what`) when it failed.
  void synchronize(std::string_view what) const;
  /// Whether the recorded work is done (never blocks; errors are left for synchronize).
  bool done() const;
  /// Milliseconds between `start` and this event (both recorded and completed).
  float elapsed_ms_since(const Event& start) const;

 private:
  void* e_ = nullptr;
};

class DevicePool;

/// One allocation of device memory, counted against its DevicePool's budget; freed when destroyed.
/// Move-only. The pool must outlive it.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(DeviceBuffer&& o) noexcept { *this = std::move(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { release(); }

  bool valid() const { return ptr_ != nullptr; }
  /// Bytes allocated (the budget was charged charged() of them).
  uint64_t size() const { return size_; }
  uint64_t charged() const { return charged_; }
  /// Device address (256-byte aligned): for kernels and copies only, never dereferenced on the host.
  std::byte* data() const { return static_cast<std::byte*>(ptr_); }

 private:
  friend class DevicePool;
  void release();
  DevicePool* pool_ = nullptr;
  void* ptr_ = nullptr;
  uint64_t size_ = 0;
  uint64_t charged_ = 0;
};

/// Device memory of one device with a byte budget: allocations beyond it throw, so
/// used_bytes() <= capacity_bytes() always. (Each buffer is one cudaMalloc; cudaMalloc's own rounding and
/// what callers do not charge are not counted.)
class DevicePool {
 public:
  /// `device` names the device in messages ("gpu:0").
  DevicePool(std::string device, uint64_t capacity_bytes) : device_(std::move(device)), capacity_(capacity_bytes) {}
  DevicePool(const DevicePool&) = delete;
  DevicePool& operator=(const DevicePool&) = delete;

  /// `bytes` (> 0) of device memory on the current device, of which `charged` (<= bytes) count against
  /// the budget (the caller's own measure, e.g. weight bytes without alignment padding; default: all).
  /// Throws moetier::Error naming the device, `what`, the bytes charged, in use and the budget when they
  /// do not fit the budget, or CUDA's error when cudaMalloc fails; nothing is allocated then.
  DeviceBuffer allocate(uint64_t bytes, std::string_view what, uint64_t charged = ~0ull);

  uint64_t capacity_bytes() const { return capacity_; }
  uint64_t used_bytes() const { return used_; }
  uint64_t peak_bytes() const { return peak_; }

 private:
  friend class DeviceBuffer;
  std::string device_;
  uint64_t capacity_;
  uint64_t used_ = 0, peak_ = 0;
};

/// Page-locked host memory (cudaMallocHost): the staging memory of asynchronous copies. Move-only.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  /// `bytes` (> 0) of pinned memory. Throws moetier::Error naming `what`.
  PinnedBuffer(uint64_t bytes, std::string_view what);
  PinnedBuffer(PinnedBuffer&& o) noexcept { *this = std::move(o); }
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  ~PinnedBuffer();

  std::byte* data() const { return static_cast<std::byte*>(ptr_); }
  uint64_t size() const { return size_; }

 private:
  void* ptr_ = nullptr;
  uint64_t size_ = 0;
};

/// Queues a copy of `bytes` from host memory `src` to device memory `dst` on `s` (asynchronous when
/// `src` is pinned). Throws moetier::Error naming `what`.
void copy_h2d_async(void* dst, const void* src, uint64_t bytes, const Stream& s, std::string_view what);
/// Queues a copy of `bytes` from device memory `src` to host memory `dst` on `s`. Throws moetier::Error.
void copy_d2h_async(void* dst, const void* src, uint64_t bytes, const Stream& s, std::string_view what);
/// Queues a copy of `bytes` from device memory `src` to device memory `dst` (same device, no overlap) on
/// `s`. Throws moetier::Error naming `what`.
void copy_d2d_async(void* dst, const void* src, uint64_t bytes, const Stream& s, std::string_view what);

}  // namespace moetier::gpu
