// offload/uring_reader.cpp — the reader's state machine (see uring_reader.hpp).
//
// Per slot: the expert's ranges are laid out (slot_layout.hpp) and cut into ops of <= chunk_bytes. Ops
// are issued FIFO by slot, retries first, while fewer than queue_depth are in flight. user_data of a read
// is (slot << 32 | op index), so completions may arrive in any order.
#include "offload/uring_reader.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "common/error.hpp"

namespace moetier::offload {
namespace {

bool env_no_uring() {
  const char* v = std::getenv("MOETIER_NO_URING");
  return v != nullptr && v[0] != '\0' && std::strcmp(v, "0") != 0;
}

uint64_t user_data(uint32_t slot, uint32_t op) { return (static_cast<uint64_t>(slot) << 32) | op; }

const char* errno_name(int e) {
  switch (e) {
    case EIO: return "EIO";
    case EINVAL: return "EINVAL";
    case EBADF: return "EBADF";
    case EFAULT: return "EFAULT";
    case ENOMEM: return "ENOMEM";
    case ENXIO: return "ENXIO";
    case EOVERFLOW: return "EOVERFLOW";
    case EAGAIN: return "EAGAIN";
    case EINTR: return "EINTR";
    default: return "errno";
  }
}

}  // namespace

void Completion::throw_if_failed() const {
  if (!error.empty()) throw Error(error);
}

UringReader::UringReader(std::vector<std::string> paths, std::vector<std::span<std::byte>> slots, ReaderOptions opts)
    : opts_(std::move(opts)) {
  if (opts_.queue_depth == 0 || opts_.queue_depth > 4096)
    fail("uring reader: queue depth {} out of range (expected 1..4096)", opts_.queue_depth);
  if (opts_.chunk_bytes == 0 || opts_.chunk_bytes > (1ull << 30))
    fail("uring reader: chunk size {} bytes out of range (expected 1 B..1 GiB)", opts_.chunk_bytes);
  opts_.chunk_bytes = align_up(opts_.chunk_bytes);
  if (slots.size() > (1u << 30)) fail("uring reader: too many slots ({})", slots.size());

  struct FdGuard {  // closes what was opened if a later file fails
    std::vector<int>& fds;
    bool armed = true;
    ~FdGuard() {
      if (armed)
        for (int fd : fds) ::close(fd);
    }
  };
  std::vector<int> fds;
  FdGuard guard{fds};
  for (const std::string& path : paths) {
    File f;
    f.path = path;
    int fd = -1;
    if (opts_.direct) {
      fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
      if (fd < 0 && errno == EINVAL) {
        std::fprintf(stderr, "note: %s: O_DIRECT not supported by this filesystem, using buffered reads\n",
                     path.c_str());
      }
      f.direct = fd >= 0;
    }
    if (fd < 0) fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("{}: cannot open for reading: {}", path, std::strerror(errno));
    fds.push_back(fd);
    struct stat st {};
    if (::fstat(fd, &st) != 0) fail("{}: fstat failed: {}", path, std::strerror(errno));
    f.size = static_cast<uint64_t>(st.st_size);
    f.fd = fd;
    files_.push_back(std::move(f));
  }

  std::vector<iovec> iov;
  slots_.resize(slots.size());
  for (size_t i = 0; i < slots.size(); ++i) {
    if (reinterpret_cast<uintptr_t>(slots[i].data()) % kIoAlignment != 0)
      fail("uring reader: slot {} buffer is not {}-byte aligned", i, kIoAlignment);
    slots_[i].buffer = slots[i];
    iov.push_back(iovec{slots[i].data(), slots[i].size()});
  }

  const bool forced = opts_.force_pread || env_no_uring();
  if (!forced) {
    std::string why;
    engine_ = make_uring_engine(opts_.queue_depth, fds, iov, opts_.register_buffers, why);
    if (!engine_) {
      static std::once_flag once;
      std::call_once(once, [&] {
        std::fprintf(stderr, "note: io_uring unavailable (%s): reading experts with a pool of pread threads\n",
                     why.c_str());
      });
    }
  }
  if (!engine_) {
    const unsigned n = opts_.pread_threads != 0 ? opts_.pread_threads : std::min(opts_.queue_depth, 16u);
    engine_ = make_pread_engine(opts_.queue_depth, n, fds);
  }
  results_.resize(std::min<size_t>(opts_.queue_depth, 256));
  retry_.reserve(opts_.queue_depth);
  active_.reserve(slots_.size());
  done_.reserve(slots_.size());
  guard.armed = false;
}

UringReader::~UringReader() {
  // The kernel may still write into slot buffers: wait for every read in flight before anything goes.
  pending_.clear();
  retry_.clear();
  for (Slot& s : slots_) s.failed = true;  // ignore results; issue nothing more
  while (in_flight_ > 0) progress(true);
  engine_.reset();
  for (File& f : files_) ::close(f.fd);
}

void UringReader::submit(ExpertId id, std::span<const ByteRange> ranges, uint32_t slot) {
  if (slot >= slots_.size()) fail("uring reader: {}: slot {} out of range ({} slots)", to_string(id), slot, slots_.size());
  Slot& s = slots_[slot];
  if (s.active) fail("uring reader: {}: slot {} is busy reading {}", to_string(id), slot, to_string(s.id));
  for (uint32_t a : active_)
    if (slots_[a].id == id) fail("uring reader: {} is already being read into slot {}", to_string(id), a);
  for (const ByteRange& r : ranges) {
    if (r.file_index >= files_.size())
      fail("uring reader: {}: file index {} out of range ({} files)", to_string(id), r.file_index, files_.size());
    const File& f = files_[r.file_index];
    if (r.offset > f.size || r.length > f.size - r.offset)
      fail("{}: {}: range [offset {}, length {}] ends beyond end of file ({} bytes)", f.path, to_string(id),
           r.offset, r.length, f.size);
  }
  s.ranges.assign(ranges.begin(), ranges.end());
  const uint64_t need = layout_slot(s.ranges, s.layout);
  if (need > s.buffer.size())
    fail("uring reader: {}: slot {} holds {} bytes, the expert needs {} (payload {} + alignment)", to_string(id),
         slot, s.buffer.size(), need, total_length(ranges));

  s.ops.clear();
  for (uint32_t ri = 0; ri < s.ranges.size(); ++ri) {
    const ByteRange& r = s.ranges[ri];
    const RangePlacement& p = s.layout[ri];
    // n nearly equal aligned reads of about chunk_bytes: no tiny tail read per range (GGUF ranges are
    // rarely aligned, so an extent is usually a few KiB over a multiple of the chunk).
    const uint64_t n = std::max<uint64_t>(1, (p.read_length + opts_.chunk_bytes / 2) / opts_.chunk_bytes);
    const uint64_t piece = align_up((p.read_length + n - 1) / n);
    for (uint64_t off = 0; off < p.read_length; off += piece) {
      Op op;
      op.range = ri;
      op.file_offset = p.read_offset + off;
      op.length = std::min(piece, p.read_length - off);
      op.need_end = std::min(op.file_offset + op.length, r.offset + r.length);
      op.slot_pos = p.slot_offset + off;
      s.ops.push_back(op);
    }
  }
  s.active = true;
  s.id = id;
  s.next_op = 0;
  s.ops_left = s.ops.size();
  s.in_flight = 0;
  s.failed = false;
  s.error.clear();
  active_.push_back(slot);
  if (s.ops.empty()) {
    finish(slot);
    return;
  }
  pending_.push_back(slot);
  pump();
}

void UringReader::issue(uint32_t slot, uint32_t op_index) {
  Slot& s = slots_[slot];
  const Op& op = s.ops[op_index];
  RawRead r;
  r.file_index = s.ranges[op.range].file_index;
  r.dst = s.buffer.data() + op.slot_pos + op.done;
  r.length = op.length - op.done;
  r.offset = op.file_offset + op.done;
  r.buf_index = static_cast<int32_t>(slot);
  r.user_data = user_data(slot, op_index);
  engine_->push(r);
  ++s.in_flight;
  ++in_flight_;
}

void UringReader::pump() {
  bool pushed = false;
  while (in_flight_ < opts_.queue_depth) {
    if (!retry_.empty()) {
      const uint64_t ud = retry_.back();
      retry_.pop_back();
      issue(static_cast<uint32_t>(ud >> 32), static_cast<uint32_t>(ud));
    } else if (!pending_.empty()) {
      const uint32_t slot = pending_.front();
      Slot& s = slots_[slot];
      issue(slot, static_cast<uint32_t>(s.next_op++));
      if (s.next_op == s.ops.size()) pending_.pop_front();
    } else {
      break;
    }
    pushed = true;
  }
  if (pushed) engine_->flush();
}

void UringReader::progress(bool wait) {
  pump();
  bool first = true;
  for (;;) {
    const size_t n = engine_->reap(results_, wait && first && in_flight_ > 0);
    first = false;
    for (size_t i = 0; i < n; ++i) handle(results_[i]);
    pump();
    if (n < results_.size()) break;
  }
}

void UringReader::fail_read(uint32_t slot, const Op& op, std::string_view what, uint64_t at, uint64_t len) {
  Slot& s = slots_[slot];
  const ByteRange& r = s.ranges[op.range];
  if (!s.failed) {
    s.failed = true;
    s.error = fmt::format("{}: reading {} (range {} of {}: offset {}, length {}): {} at file offset {} ({} bytes "
                          "requested)",
                          files_[r.file_index].path, to_string(s.id), op.range, s.ranges.size(), r.offset,
                          r.length, what, at, len);
  }
  // Nothing more of this expert is issued; it is reported once its reads in flight have returned.
  pending_.erase(std::remove(pending_.begin(), pending_.end(), slot), pending_.end());
  retry_.erase(std::remove_if(retry_.begin(), retry_.end(), [&](uint64_t ud) { return (ud >> 32) == slot; }),
               retry_.end());
  if (s.in_flight == 0) finish(slot);
}

void UringReader::handle(const RawResult& raw) {
  const auto slot = static_cast<uint32_t>(raw.user_data >> 32);
  const auto op_index = static_cast<uint32_t>(raw.user_data);
  Slot& s = slots_[slot];
  Op& op = s.ops[op_index];
  --s.in_flight;
  --in_flight_;
  if (s.failed) {  // another read of this expert failed: just wait for the stragglers
    if (s.active && s.in_flight == 0) finish(slot);
    return;
  }
  const uint64_t at = op.file_offset + op.done;
  const uint64_t len = op.length - op.done;
  const uint32_t file_index = s.ranges[op.range].file_index;
  int64_t res = raw.result;
  if (opts_.faults) res = opts_.faults->on_complete(ReadOp{file_index, at, len}, res);

  if (res < 0) {
    const int e = static_cast<int>(-res);
    if ((e == EAGAIN || e == EINTR) && ++op.retries <= opts_.max_retries) {
      retry_.push_back(raw.user_data);
      return;
    }
    const std::string what = (e == EAGAIN || e == EINTR)
                                 ? fmt::format("gave up after {} retries ({})", opts_.max_retries, errno_name(e))
                                 : fmt::format("read failed: {} ({})", std::strerror(e), errno_name(e));
    fail_read(slot, op, what, at, len);
    return;
  }
  const uint64_t new_done = op.done + static_cast<uint64_t>(std::min<int64_t>(res, static_cast<int64_t>(len)));
  if (new_done >= op.length || op.file_offset + new_done >= op.need_end) {
    if (--s.ops_left == 0) finish(slot);
    return;
  }
  // Possibly end of file before the needed bytes: a read of 0 bytes, or (O_DIRECT restarts aligned) a
  // short read ending where the previous one of this op ended. Decided by the file's current size.
  const uint64_t end = op.file_offset + new_done;
  if (res == 0 || end == op.last_short_end) {
    const uint64_t size = current_size(file_index);
    if (end >= size) {
      fail_read(slot, op,
                fmt::format("unexpected end of file at offset {} (file size {} at open, {} now)", end,
                            files_[file_index].size, size),
                at, len);
      return;
    }
  }
  op.last_short_end = end;
  // Short read: reissue the remainder. O_DIRECT needs an aligned restart; the bytes between the aligned
  // restart and new_done are read again into the same place.
  const uint64_t restart = files_[file_index].direct ? align_down(new_done) : new_done;
  if (restart > op.done) {
    op.done = restart;
    op.retries = 0;
  } else if (++op.retries > opts_.max_retries) {
    fail_read(slot, op, fmt::format("no progress after {} short reads", opts_.max_retries), at, len);
    return;
  }
  retry_.push_back(raw.user_data);
}

uint64_t UringReader::current_size(uint32_t file_index) const {
  struct stat st {};
  uint64_t size = ::fstat(files_[file_index].fd, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  if (opts_.faults) size = opts_.faults->file_size(file_index, size);
  return size;
}

void UringReader::finish(uint32_t slot) {
  Slot& s = slots_[slot];
  s.active = false;
  active_.erase(std::find(active_.begin(), active_.end(), slot));
  done_.push_back(Completion{s.id, slot, s.failed ? s.error : std::string()});
}

size_t UringReader::poll(std::vector<Completion>& out, bool block) {
  progress(false);
  while (block && done_.empty() && !active_.empty()) progress(true);
  const size_t n = done_.size();
  for (Completion& c : done_) out.push_back(std::move(c));
  done_.clear();
  return n;
}

Completion UringReader::wait(ExpertId id) {
  for (;;) {
    for (size_t i = 0; i < done_.size(); ++i) {
      if (done_[i].expert == id) {
        Completion c = std::move(done_[i]);
        done_.erase(done_.begin() + static_cast<std::ptrdiff_t>(i));
        return c;
      }
    }
    bool active = false;
    for (uint32_t a : active_) active = active || slots_[a].id == id;
    if (!active) fail("uring reader: wait for {}, which was not submitted", to_string(id));
    progress(true);
  }
}

std::span<const std::byte> UringReader::data(uint32_t slot, size_t range_index) const {
  const Slot& s = slots_[slot];
  const RangePlacement& p = s.layout[range_index];
  return s.buffer.subspan(p.data_offset, s.ranges[range_index].length);
}

}  // namespace moetier::offload
