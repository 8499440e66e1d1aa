// offload/fault_injection.hpp — reader-level fault injection for tests: rewrites the result of each
// completed read (short reads, errors, transient EAGAIN/EINTR, a file that appears truncated) before
// the reader's completion logic sees it. Works identically for the io_uring and the pread backends,
// because both hand every raw result to the same state machine (UringReader), which calls the
// injector on the thread that owns the reader (no locking needed).
#pragma once

#include <cstdint>
#include <vector>

namespace moetier::offload {

/// One raw read as issued to the kernel: `length` bytes of file `file_index` at `offset`.
struct ReadOp {
  uint32_t file_index = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
};

/// Hook called with the kernel's result of every read (bytes read, or -errno); returns the result the
/// reader shall see. Returning fewer bytes than the kernel read is always safe (the reader re-reads the
/// rest); returning more is not allowed.
class FaultInjector {
 public:
  virtual ~FaultInjector() = default;
  virtual int64_t on_complete(const ReadOp& op, int64_t result) = 0;
  /// The size of file `file_index` as the reader shall see it (asked when a read looks like end of
  /// file); `actual` is fstat's.
  virtual uint64_t file_size(uint32_t file_index, uint64_t actual) { return (void)file_index, actual; }
};

/// A scripted injector; each fault kind is independent and counted.
///  - short reads: every `every_nth` successful read of >= 2 bytes is cut to a fraction of its length
///    (cut point deliberately unaligned), at most `max_count` times;
///  - errors: a read overlapping byte `offset` of file `file_index` fails with -err (EIO by default);
///  - transient: the first `count` reads fail with -err (EAGAIN or EINTR), to be retried;
///  - truncation: file `file_index` behaves as if it were `size` bytes long (reads past it see EOF,
///    file_size() reports it).
class ScriptedFaults : public FaultInjector {
 public:
  void short_reads(uint32_t every_nth, uint32_t max_count = UINT32_MAX) {
    short_every_ = every_nth;
    short_max_ = max_count;
  }
  void fail_at(uint32_t file_index, uint64_t offset, int err = 5 /* EIO */) {
    errors_.push_back({file_index, offset, err});
  }
  void transient(int err, uint32_t count) {
    transient_err_ = err;
    transient_left_ = count;
  }
  void truncate(uint32_t file_index, uint64_t size) { truncations_.push_back({file_index, size}); }

  int64_t on_complete(const ReadOp& op, int64_t result) override;
  uint64_t file_size(uint32_t file_index, uint64_t actual) override;

  uint32_t n_short() const { return n_short_; }
  uint32_t n_errors() const { return n_errors_; }
  uint32_t n_transient() const { return n_transient_; }
  uint32_t n_truncated() const { return n_truncated_; }
  uint64_t n_reads() const { return n_reads_; }

 private:
  struct ErrorRule {
    uint32_t file_index;
    uint64_t offset;
    int err;
  };
  struct Truncation {
    uint32_t file_index;
    uint64_t size;
  };
  uint32_t short_every_ = 0;
  uint32_t short_max_ = 0;
  uint32_t short_seen_ = 0;
  std::vector<ErrorRule> errors_;
  int transient_err_ = 0;
  uint32_t transient_left_ = 0;
  std::vector<Truncation> truncations_;
  uint32_t n_short_ = 0, n_errors_ = 0, n_transient_ = 0, n_truncated_ = 0;
  uint64_t n_reads_ = 0;
};

}  // namespace moetier::offload
