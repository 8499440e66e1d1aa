// The parts of the simulated device (sim:N, scheduler/sim_backend.hpp): device memory with a capacity
// (SimMemory, SimBuffer), a copy engine that moves bytes host -> device at a configured rate
// (SimCopyEngine), and a stream: one worker thread running queued work in FIFO order (SimStream). The
// memory is ordinary 64-byte aligned host memory, but everyone outside the sim backend sees it only as
// MemoryKind::Device (device_data() feeds DeviceWeight views), so it is exercised exactly like a GPU's.
//
// Threading: SimMemory and SimCopyEngine are used from the thread that owns the backend (their counters
// may be read from any thread). SimStream's submit / wait / drain are called from that thread too; its
// handler runs on the stream thread, and an exception it throws is captured there (as a message) and
// rethrown as moetier::Error by wait() on the caller's thread: exceptions never cross threads.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "common/aligned_buffer.hpp"
#include "common/weight_view.hpp"
#include "scheduler/expert_backend.hpp"

namespace moetier::sched {

class SimMemory;

/// One allocation of simulated device memory; freed (and its bytes returned to the SimMemory) when
/// destroyed. Move-only. The SimMemory it came from must outlive it.
class SimBuffer {
 public:
  SimBuffer() = default;
  SimBuffer(SimBuffer&& o) noexcept { *this = std::move(o); }
  SimBuffer& operator=(SimBuffer&& o) noexcept;
  SimBuffer(const SimBuffer&) = delete;
  SimBuffer& operator=(const SimBuffer&) = delete;
  ~SimBuffer() { release(); }

  /// Bytes allocated (as requested; the storage is rounded up to 64 bytes).
  uint64_t size() const { return size_; }
  bool valid() const { return memory_ != nullptr; }
  /// The device address of the first byte (64-byte aligned): only for DeviceWeight views
  /// (WeightView::rebased<MemoryKind::Device>) and the copy engine, never for CPU code.
  const std::byte* device_data() const { return storage_.data(); }

 private:
  friend class SimMemory;
  friend class SimCopyEngine;
  void release();
  SimMemory* memory_ = nullptr;
  AlignedBuffer storage_;
  uint64_t size_ = 0;
};

/// Device memory of one simulated device: a capacity, the bytes in use and their peak. Allocation beyond
/// the capacity throws, so used_bytes() <= peak_bytes() <= capacity_bytes() always.
class SimMemory {
 public:
  /// `device` names the device in messages ("sim:0").
  SimMemory(std::string device, uint64_t capacity_bytes);
  SimMemory(const SimMemory&) = delete;
  SimMemory& operator=(const SimMemory&) = delete;

  /// A buffer of `bytes` bytes (zero-filled). Throws moetier::Error in one line naming the device, `what`
  /// (e.g. "layer 3 expert 5"; may be empty), the bytes requested, in use and the capacity when
  /// used_bytes() + bytes > capacity_bytes(); then nothing is allocated.
  SimBuffer allocate(uint64_t bytes, std::string_view what = {});

  const std::string& device() const { return device_; }
  uint64_t capacity_bytes() const { return capacity_; }
  uint64_t used_bytes() const;
  /// Largest used_bytes() since construction.
  uint64_t peak_bytes() const;

 private:
  friend class SimBuffer;
  void free_bytes(uint64_t bytes);
  std::string device_;
  uint64_t capacity_;
  mutable std::mutex mutex_;
  uint64_t used_ = 0;
  uint64_t peak_ = 0;
};

/// The host -> device copy engine: memcpy, then sleeps until bytes / rate has elapsed since the copy
/// started (a PCIe 4.0 x16 link moves ~24 GB/s). Synchronous; counts bytes and nanoseconds.
class SimCopyEngine {
 public:
  /// gbps: copy rate in GB/s (1e9 bytes per second); 0 = unpaced (memcpy speed). Throws moetier::Error
  /// for a negative or non-finite rate.
  explicit SimCopyEngine(double gbps);

  /// Copies `bytes` bytes from host memory `src` (read) to dst at byte `offset` (written); returns the
  /// nanoseconds the copy took (>= bytes / rate when paced). Throws moetier::Error (before copying) when
  /// [offset, offset + bytes) is not inside dst.
  uint64_t copy_h2d(SimBuffer& dst, uint64_t offset, const void* src, uint64_t bytes);

  double gbps() const { return gbps_; }
  /// Totals over all copies so far.
  uint64_t bytes() const { return bytes_; }
  uint64_t ns() const { return ns_; }

 private:
  double gbps_;
  uint64_t bytes_ = 0;
  uint64_t ns_ = 0;
};

/// One queued unit of work of a SimStream: a group and the device copy of the FFN it multiplies.
struct SimWork {
  ExpertGroup group;
  DeviceFfn weights;
};

/// When the stream ran one item: steady_clock nanoseconds (time_since_epoch) at start and end.
struct SimSpan {
  uint64_t ticket = 0;
  FfnKey key;
  int64_t start_ns = 0;
  int64_t end_ns = 0;
};

/// An in-order stream: a worker thread running submitted work through `handler` in submission order.
/// The queue is a fixed ring of `capacity` SimWork slots (no allocation per item); submit() blocks while
/// it is full. Tickets are 1, 2, 3, ... in submission order.
class SimStream {
 public:
  /// handler(work, ticket) runs on the stream thread; what it throws is captured as the message of that
  /// ticket (see wait). The stream thread runs on the CPUs the process was started with (not on the PU a
  /// pinned caller thread was narrowed to). Throws moetier::Error when capacity < 1.
  SimStream(std::string device, size_t capacity, std::function<void(const SimWork&, uint64_t)> handler);
  /// Finishes the item running now, drops queued ones (their inputs may be gone), joins the thread.
  ~SimStream();
  SimStream(const SimStream&) = delete;
  SimStream& operator=(const SimStream&) = delete;

  /// Queues a copy of `work` (its x / y must stay valid until its ticket is done); returns its ticket.
  /// Blocks while all slots are taken.
  uint64_t submit(const SimWork& work);
  /// Returns once `ticket` and every earlier item are done. Then, if items <= ticket failed since the
  /// last wait that reported them, throws moetier::Error with the first one's message (plus how many more
  /// failed) and forgets them; later items are unaffected (the stream keeps running). Throws
  /// moetier::Error for a ticket never issued. wait(0) returns at once.
  void wait(uint64_t ticket);
  /// Returns once every submitted item is done; reports nothing (errors stay for wait).
  void drain();
  /// Whether `ticket` and every earlier item are done (does not block, reports nothing).
  bool done(uint64_t ticket) const;
  /// Last ticket issued (0 before the first submit).
  uint64_t last_ticket() const;
  /// Start / end times of the last (up to) kSpanHistory items run, oldest first.
  std::vector<SimSpan> recent_spans() const;
  static constexpr size_t kSpanHistory = 256;
  /// The stream thread's id (tests: work runs there, not on the caller).
  std::thread::id thread_id() const { return thread_.get_id(); }

 private:
  void main_loop();
  std::string device_;
  std::function<void(const SimWork&, uint64_t)> handler_;
  mutable std::mutex mutex_;
  std::condition_variable work_cv_;   // stream thread: an item was queued, or stop
  std::condition_variable space_cv_;  // submit(): a slot was freed
  std::condition_variable done_cv_;   // wait(): an item completed
  std::vector<SimWork> ring_;         // slot of ticket t: (t - 1) % ring_.size()
  uint64_t submitted_ = 0;            // last ticket issued
  uint64_t completed_ = 0;            // every ticket <= completed_ is done (or dropped)
  bool stop_ = false;
  std::vector<std::pair<uint64_t, std::string>> errors_;  // failed tickets not yet reported, ascending
  std::vector<SimSpan> spans_;        // ring of kSpanHistory spans: span of ticket t at (t - 1) % size
  std::thread thread_;                // last: started after everything above exists
};

}  // namespace moetier::sched
