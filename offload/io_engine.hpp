// offload/io_engine.hpp — the two ways UringReader gets bytes from files: an io_uring ring (registered
// files and buffers when the kernel allows) or, where io_uring is unavailable, a pool of threads doing
// pread(2). An engine only moves raw reads and raw results (bytes or -errno); all retry, short-read and
// error logic lives in UringReader so that both engines behave identically. Internal to offload/.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace moetier::offload {

/// One read handed to an engine: `length` bytes at `offset` of file `file_index` into `dst`.
/// `buf_index` is the registered buffer containing dst (-1: none). `user_data` comes back verbatim.
struct RawRead {
  uint32_t file_index = 0;
  std::byte* dst = nullptr;
  uint64_t length = 0;
  uint64_t offset = 0;
  int32_t buf_index = -1;
  uint64_t user_data = 0;
};

/// Result of one RawRead: bytes read (>= 0) or -errno.
struct RawResult {
  uint64_t user_data = 0;
  int64_t result = 0;
};

/// Moves reads to the kernel and results back. Single-threaded use (the reader's owner thread). The
/// caller never has more than capacity() reads pushed and not yet reaped.
class IoEngine {
 public:
  virtual ~IoEngine() = default;
  /// "io_uring" or "pread".
  virtual const char* name() const = 0;
  /// True when buffers given at construction are registered (reads use buf_index).
  virtual bool buffers_registered() const = 0;
  /// Queues one read (not yet visible to the kernel until flush()).
  virtual void push(const RawRead& read) = 0;
  /// Hands all queued reads to the kernel / the worker threads.
  virtual void flush() = 0;
  /// Copies up to out.size() results; with `wait`, blocks until at least one is available (the caller
  /// guarantees one is outstanding). Returns the count.
  virtual size_t reap(std::span<RawResult> out, bool wait) = 0;
};

/// Creates an io_uring engine with `queue_depth` entries over `fds` (registered as fixed files when
/// possible) and `buffers` (registered when `register_buffers` and the memlock limit allow; a note goes
/// to stderr once otherwise). Returns nullptr and sets `why_not` when io_uring_queue_init fails
/// (kernel.io_uring_disabled, seccomp, old kernel).
std::unique_ptr<IoEngine> make_uring_engine(unsigned queue_depth, std::span<const int> fds,
                                            std::span<const iovec> buffers, bool register_buffers,
                                            std::string& why_not);

/// Creates a pool of `n_threads` threads doing pread(2) on `fds`, up to `queue_depth` reads queued.
std::unique_ptr<IoEngine> make_pread_engine(unsigned queue_depth, unsigned n_threads, std::span<const int> fds);

}  // namespace moetier::offload
