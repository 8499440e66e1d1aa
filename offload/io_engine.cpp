// offload/io_engine.cpp — io_uring and pread-thread engines (see io_engine.hpp).
#include "offload/io_engine.hpp"

#include <liburing.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include <fmt/format.h>

namespace moetier::offload {
namespace {

// ---------------------------------------------------------------------------------------------------
// io_uring
// ---------------------------------------------------------------------------------------------------

class UringEngine final : public IoEngine {
 public:
  UringEngine() = default;
  UringEngine(const UringEngine&) = delete;
  UringEngine& operator=(const UringEngine&) = delete;
  ~UringEngine() override {
    if (initialised_) io_uring_queue_exit(&ring_);
  }

  // Returns an empty string on success, else why io_uring cannot be used.
  std::string init(unsigned queue_depth, std::span<const int> fds, std::span<const iovec> buffers,
                   bool register_buffers) {
    const int rc = io_uring_queue_init(queue_depth, &ring_, 0);
    if (rc < 0) return fmt::format("io_uring_queue_init: {}", std::strerror(-rc));
    initialised_ = true;
    fds_.assign(fds.begin(), fds.end());
    if (!fds.empty() && io_uring_register_files(&ring_, fds.data(), static_cast<unsigned>(fds.size())) == 0)
      fixed_files_ = true;
    if (register_buffers && !buffers.empty()) {
      const int brc = io_uring_register_buffers(&ring_, buffers.data(), static_cast<unsigned>(buffers.size()));
      if (brc == 0) {
        buffers_registered_ = true;
      } else {
        static std::once_flag once;
        std::call_once(once, [&] {
          std::fprintf(stderr,
                       "note: io_uring_register_buffers failed (%s; memlock limit? see ulimit -l): "
                       "using unregistered buffers\n",
                       std::strerror(-brc));
        });
      }
    }
    return {};
  }

  const char* name() const override { return "io_uring"; }
  bool buffers_registered() const override { return buffers_registered_; }

  void push(const RawRead& r) override {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) {  // SQ full of unsubmitted entries: submit and retry (cannot fail twice).
      io_uring_submit(&ring_);
      sqe = io_uring_get_sqe(&ring_);
    }
    const int fd = fixed_files_ ? static_cast<int>(r.file_index) : fds_[r.file_index];
    const auto n = static_cast<unsigned>(r.length);
    if (buffers_registered_ && r.buf_index >= 0)
      io_uring_prep_read_fixed(sqe, fd, r.dst, n, r.offset, r.buf_index);
    else
      io_uring_prep_read(sqe, fd, r.dst, n, r.offset);
    if (fixed_files_) sqe->flags |= IOSQE_FIXED_FILE;
    sqe->user_data = r.user_data;
  }

  void flush() override {
    // io_uring_submit may be interrupted; unsubmitted entries stay in the SQ and go with the next call.
    for (int i = 0; i < 8 && io_uring_sq_ready(&ring_) > 0; ++i) {
      const int rc = io_uring_submit(&ring_);
      if (rc >= 0 || (rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)) break;
    }
  }

  size_t reap(std::span<RawResult> out, bool wait) override {
    if (out.empty()) return 0;
    io_uring_cqe* cqes[64];
    size_t n = 0;
    for (;;) {
      const unsigned want = static_cast<unsigned>(std::min<size_t>(out.size() - n, 64));
      const unsigned got = io_uring_peek_batch_cqe(&ring_, cqes, want);
      for (unsigned i = 0; i < got; ++i) out[n + i] = RawResult{cqes[i]->user_data, cqes[i]->res};
      io_uring_cq_advance(&ring_, got);
      n += got;
      if (n > 0 || !wait) return n;
      io_uring_cqe* cqe = nullptr;
      if (io_uring_sq_ready(&ring_) > 0) flush();
      const int rc = io_uring_wait_cqe(&ring_, &cqe);  // -EINTR: loop and wait again
      (void)rc;
    }
  }

 private:
  io_uring ring_{};
  bool initialised_ = false;
  bool fixed_files_ = false;
  bool buffers_registered_ = false;
  std::vector<int> fds_;
};

// ---------------------------------------------------------------------------------------------------
// pread threads
// ---------------------------------------------------------------------------------------------------

class PreadEngine final : public IoEngine {
 public:
  PreadEngine(unsigned n_threads, std::span<const int> fds) : fds_(fds.begin(), fds.end()) {
    for (unsigned i = 0; i < n_threads; ++i) threads_.emplace_back([this] { worker(); });
  }
  PreadEngine(const PreadEngine&) = delete;
  PreadEngine& operator=(const PreadEngine&) = delete;
  ~PreadEngine() override {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    work_cv_.notify_all();
    for (std::thread& t : threads_) t.join();
  }

  const char* name() const override { return "pread"; }
  bool buffers_registered() const override { return false; }

  void push(const RawRead& r) override { staged_.push_back(r); }

  void flush() override {
    if (staged_.empty()) return;
    {
      std::lock_guard lock(mu_);
      for (const RawRead& r : staged_) work_.push_back(r);
    }
    staged_.clear();
    work_cv_.notify_all();
  }

  size_t reap(std::span<RawResult> out, bool wait) override {
    std::unique_lock lock(mu_);
    if (wait) done_cv_.wait(lock, [&] { return !done_.empty(); });
    size_t n = 0;
    while (n < out.size() && !done_.empty()) {
      out[n++] = done_.front();
      done_.pop_front();
    }
    return n;
  }

 private:
  void worker() {
    for (;;) {
      RawRead r;
      {
        std::unique_lock lock(mu_);
        work_cv_.wait(lock, [&] { return stop_ || !work_.empty(); });
        if (work_.empty()) return;  // stop_ and nothing left
        r = work_.front();
        work_.pop_front();
      }
      const ssize_t got = ::pread(fds_[r.file_index], r.dst, r.length, static_cast<off_t>(r.offset));
      const int64_t res = got < 0 ? -static_cast<int64_t>(errno) : static_cast<int64_t>(got);
      {
        std::lock_guard lock(mu_);
        done_.push_back(RawResult{r.user_data, res});
      }
      done_cv_.notify_one();
    }
  }

  std::vector<int> fds_;
  std::vector<RawRead> staged_;  // owner thread only
  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  std::deque<RawRead> work_;
  std::deque<RawResult> done_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace

std::unique_ptr<IoEngine> make_uring_engine(unsigned queue_depth, std::span<const int> fds,
                                            std::span<const iovec> buffers, bool register_buffers,
                                            std::string& why_not) {
  auto engine = std::make_unique<UringEngine>();
  why_not = engine->init(queue_depth, fds, buffers, register_buffers);
  if (!why_not.empty()) return nullptr;
  return engine;
}

std::unique_ptr<IoEngine> make_pread_engine(unsigned queue_depth, unsigned n_threads, std::span<const int> fds) {
  (void)queue_depth;  // the owner bounds outstanding reads; the queues never hold more
  return std::make_unique<PreadEngine>(n_threads == 0 ? 1 : n_threads, fds);
}

}  // namespace moetier::offload
