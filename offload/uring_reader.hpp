// offload/uring_reader.hpp — reads experts (lists of byte ranges in the model's files) into cache slots,
// many reads in flight, with io_uring (registered files and slot buffers, O_DIRECT where the filesystem
// allows) or, where io_uring is unavailable or MOETIER_NO_URING=1, a pool of pread threads behind the
// same interface. Each range is read as its enclosing 4096-aligned extent (offload/slot_layout.hpp) and
// split into reads of about chunk_bytes. Short reads are resubmitted for the remainder; -EAGAIN and
// -EINTR are retried; any other error, or end of file before a range's end, fails the expert with a
// message naming expert, file, offset and length. A slot is reported complete only once every read of
// every range is complete; a failed expert is reported only once none of its reads is still in flight
// (the kernel no longer writes into its slot).
//
// Threading: one owner thread calls submit/poll/wait (the ring is not shared). The pread backend's
// threads only execute reads; results are processed on the owner thread.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "offload/expert_id.hpp"
#include "offload/fault_injection.hpp"
#include "offload/io_engine.hpp"
#include "offload/slot_layout.hpp"

namespace moetier::offload {

/// Reader configuration.
struct ReaderOptions {
  unsigned queue_depth = 32;           ///< reads in flight at most (io_uring SQ entries)
  uint64_t chunk_bytes = 1ull << 20;   ///< target bytes per read (4096-aligned; a range's extent is split
                                       ///< into round(extent / chunk) equal reads: 0.67x..1.5x chunk)
  bool direct = true;                  ///< open with O_DIRECT where the filesystem allows
  bool force_pread = false;            ///< use the pread backend (env MOETIER_NO_URING=1 does the same)
  unsigned pread_threads = 0;          ///< pread backend threads; 0: min(queue_depth, 16)
  bool register_buffers = true;        ///< register slot buffers with io_uring (needs memlock)
  unsigned max_retries = 1000;         ///< consecutive EAGAIN/EINTR/no-progress retries of one read
  std::shared_ptr<FaultInjector> faults;  ///< tests: rewrites raw results (null: none)
};

/// A finished expert read. `error` is empty on success, else one line naming the expert, file, offset
/// and length involved.
struct Completion {
  ExpertId expert;
  uint32_t slot = 0;
  std::string error;
  bool ok() const { return error.empty(); }
  /// Throws moetier::Error(error) when the read failed.
  void throw_if_failed() const;
};

/// The expert reader (io_uring or pread backend). Not copyable or movable; the destructor waits for
/// reads in flight (slot buffers must outlive the reader).
class UringReader {
 public:
  /// Opens `paths` (O_DIRECT where allowed, else buffered with a note on stderr) and prepares
  /// `slots` (each 4096-aligned) as read targets. Throws moetier::Error when a file cannot be opened,
  /// a slot is misaligned, or options are invalid.
  UringReader(std::vector<std::string> paths, std::vector<std::span<std::byte>> slots, ReaderOptions opts = {});
  ~UringReader();
  UringReader(const UringReader&) = delete;
  UringReader& operator=(const UringReader&) = delete;

  /// Starts reading `ranges` of expert `id` into slot `slot`; never blocks on I/O. Throws
  /// moetier::Error when the slot is busy, `id` is already being read, a file index is unknown, a
  /// range ends beyond its file's size at open, or the slot is smaller than slot_bytes_needed(ranges).
  void submit(ExpertId id, std::span<const ByteRange> ranges, uint32_t slot);

  /// Drives I/O and appends finished experts (in completion order) to `out`; returns how many were
  /// appended. Non-blocking unless `block`, in which case it waits for at least one completion when any
  /// expert is in flight. Never throws for I/O errors (they are in Completion::error).
  size_t poll(std::vector<Completion>& out, bool block = false);

  /// Blocks until expert `id` is finished and returns its completion (other experts finishing meanwhile
  /// are kept for the next poll). Throws moetier::Error when `id` was not submitted.
  Completion wait(ExpertId id);

  /// Bytes of range `range_index` of the last read into `slot` (valid once it completed successfully
  /// and until the slot is submitted again).
  std::span<const std::byte> data(uint32_t slot, size_t range_index) const;

  size_t n_active() const { return active_.size(); }        ///< experts submitted and not yet returned
  bool busy(uint32_t slot) const { return slots_[slot].active; }
  std::string_view backend() const { return engine_->name(); }  ///< "io_uring" or "pread"
  bool buffers_registered() const { return engine_->buffers_registered(); }
  bool direct(uint32_t file_index) const { return files_[file_index].direct; }
  uint64_t file_size(uint32_t file_index) const { return files_[file_index].size; }  ///< at open
  size_t n_slots() const { return slots_.size(); }
  const ReaderOptions& options() const { return opts_; }

 private:
  struct File {
    std::string path;
    int fd = -1;
    bool direct = false;
    uint64_t size = 0;
  };
  // One read of a part of one range: [file_offset, file_offset + length) into slot_pos.
  struct Op {
    uint32_t range = 0;
    uint64_t file_offset = 0;
    uint64_t length = 0;
    uint64_t need_end = 0;  // bytes up to this file offset are needed (the rest is alignment padding)
    uint64_t slot_pos = 0;
    uint64_t done = 0;
    uint64_t last_short_end = 0;  // file offset where the previous short read of this op ended
    uint32_t retries = 0;
  };
  struct Slot {
    std::span<std::byte> buffer;
    bool active = false;
    ExpertId id;
    std::vector<ByteRange> ranges;
    std::vector<RangePlacement> layout;
    std::vector<Op> ops;
    size_t next_op = 0;     // first op not yet issued
    size_t ops_left = 0;    // ops not complete
    uint32_t in_flight = 0;
    bool failed = false;
    std::string error;
  };

  void pump();
  void issue(uint32_t slot, uint32_t op_index);
  void progress(bool wait);
  void handle(const RawResult& r);
  void fail_read(uint32_t slot, const Op& op, std::string_view what, uint64_t at, uint64_t len);
  void finish(uint32_t slot);
  uint64_t current_size(uint32_t file_index) const;  // fstat, as the fault injector sees it

  ReaderOptions opts_;
  std::vector<File> files_;
  std::vector<Slot> slots_;
  std::unique_ptr<IoEngine> engine_;
  std::deque<uint32_t> pending_;       // slots with ops not yet issued, FIFO
  std::vector<uint64_t> retry_;        // user_data of ops to reissue
  std::vector<uint32_t> active_;       // slots submitted and not yet returned
  std::vector<Completion> done_;       // finished, not yet returned
  std::vector<RawResult> results_;     // reap scratch
  unsigned in_flight_ = 0;
};

}  // namespace moetier::offload
