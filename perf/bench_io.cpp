// bench_io: expert-sized reads through offload::UringReader vs a plain O_DIRECT sequential io_uring read
// loop over the same file at the same queue depth and read size, in the same run. Prints GB/s of both and
// the ratio (target >= 0.95: the reader's bookkeeping must not cost bandwidth).
//
//   bench_io [FILE] [--qd 32] [--size 16MiB] [--chunk 1MiB] [--reps 6] [--region 512MiB] [--temp-size 1GiB]
//            [--pread]
//
// Without FILE a temporary file of --temp-size is written (fsync'ed, then dropped from the page cache) and
// removed at exit. Each repetition takes the next --region of the file and reads it with both loops, the
// order alternating between repetitions; medians are reported. Experts are laid out back to back from 96
// bytes into the region (GGUF data is only 32-byte aligned), each as three ranges (gate, up, down) of
// about size/3, read in file order, so both loops read the same bytes sequentially. GB/s counts payload
// bytes (10^9 bytes per second).
#include <fcntl.h>
#include <liburing.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "common/aligned_buffer.hpp"
#include "common/error.hpp"
#include "offload/uring_reader.hpp"

using namespace moetier;
using namespace moetier::offload;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0.0 : (n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Parses "16MiB", "1GiB", "4096", "2M" (binary units).
uint64_t parse_bytes(const std::string& s) {
  size_t pos = 0;
  const double v = std::stod(s, &pos);
  std::string unit = s.substr(pos);
  std::transform(unit.begin(), unit.end(), unit.begin(), [](unsigned char c) { return std::tolower(c); });
  double mul = 1;
  if (unit == "" || unit == "b") mul = 1;
  else if (unit == "k" || unit == "kib" || unit == "kb") mul = 1024.0;
  else if (unit == "m" || unit == "mib" || unit == "mb") mul = 1024.0 * 1024;
  else if (unit == "g" || unit == "gib" || unit == "gb") mul = 1024.0 * 1024 * 1024;
  else fail("bad size \"{}\" (expected e.g. 16MiB, 1GiB, 4096)", s);
  return static_cast<uint64_t>(v * mul);
}

// A temporary data file, removed on destruction.
struct TempFile {
  std::string path;
  TempFile(uint64_t size, const std::string& dir) {
    std::string tmpl = (std::filesystem::path(dir) / "moetier-bench-io-XXXXXX").string();
    const int fd = ::mkstemp(tmpl.data());
    if (fd < 0) fail("{}: cannot create temp file: {}", tmpl, std::strerror(errno));
    path = tmpl;
    std::fprintf(stderr, "writing %.2f GiB temp file %s ...\n", static_cast<double>(size) / (1u << 30), path.c_str());
    std::vector<uint64_t> block(1 << 17);  // 1 MiB
    std::mt19937_64 rng(1);
    for (uint64_t done = 0; done < size;) {
      for (uint64_t& v : block) v = rng();
      const uint64_t n = std::min<uint64_t>(size - done, block.size() * 8);
      if (::write(fd, block.data(), n) != static_cast<ssize_t>(n)) fail("{}: write failed", path);
      done += n;
    }
    ::fsync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
  ~TempFile() { std::filesystem::remove(path); }
};

// Baseline: one O_DIRECT fd, io_uring with `qd` reads of `chunk` bytes in flight, sequential offsets over
// [begin, end) (both 4096-aligned).
double baseline_gbps(const std::string& path, uint64_t begin, uint64_t end, unsigned qd, uint64_t chunk) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECT);
  if (fd < 0) fail("{}: open O_DIRECT failed: {}", path, std::strerror(errno));
  io_uring ring;
  if (io_uring_queue_init(qd, &ring, 0) < 0) fail("baseline: io_uring_queue_init failed");
  AlignedBuffer buf(static_cast<size_t>(qd) * chunk, 4096);
  uint64_t next = begin, done_bytes = 0;
  unsigned in_flight = 0;
  std::vector<unsigned> free_bufs;
  for (unsigned i = 0; i < qd; ++i) free_bufs.push_back(i);
  const auto t0 = std::chrono::steady_clock::now();
  while (done_bytes < end - begin) {
    while (!free_bufs.empty() && next < end) {
      const unsigned b = free_bufs.back();
      free_bufs.pop_back();
      const uint64_t n = std::min(chunk, end - next);
      io_uring_sqe* sqe = io_uring_get_sqe(&ring);
      io_uring_prep_read(sqe, fd, buf.data() + static_cast<size_t>(b) * chunk, static_cast<unsigned>(n), next);
      sqe->user_data = b;
      next += n;
      ++in_flight;
    }
    io_uring_submit(&ring);
    io_uring_cqe* cqe = nullptr;
    if (io_uring_wait_cqe(&ring, &cqe) < 0) continue;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      if (cqe->res <= 0) fail("baseline: read failed: {}", cqe->res < 0 ? std::strerror(-cqe->res) : "EOF");
      done_bytes += static_cast<uint64_t>(cqe->res);  // short reads are not resubmitted: never seen here
      free_bufs.push_back(static_cast<unsigned>(cqe->user_data));
      --in_flight;
      ++seen;
    }
    io_uring_cq_advance(&ring, seen);
  }
  const double s = seconds_since(t0);
  io_uring_queue_exit(&ring);
  ::close(fd);
  return static_cast<double>(done_bytes) / s / 1e9;
}

struct Expert {
  ExpertId id;
  std::vector<ByteRange> ranges;
};

// Ours: experts of ~`size` bytes back to back from begin + 96, three ranges each, read in order.
double reader_gbps(const std::string& path, uint64_t begin, uint64_t end, uint64_t size, const ReaderOptions& opts,
                   std::string& backend) {
  std::vector<Expert> experts;
  const uint64_t part = size / 3 / 32 * 32 + 32;  // multiples of 32, like GGUF tensor data
  for (uint64_t off = begin + 96; off + 3 * part <= end; off += 3 * part) {
    const auto i = static_cast<int32_t>(experts.size());
    experts.push_back({{i / 64, i % 64}, {{0, off, part}, {0, off + part, part}, {0, off + 2 * part, part}}});
  }
  if (experts.empty()) fail("{}: file smaller than one expert of {} bytes", path, size);
  // Enough slots to keep qd reads in flight with one expert being consumed.
  const uint64_t slot_bytes = slot_bytes_needed(experts[0].ranges);
  const size_t n_slots = std::max<size_t>(2, (opts.queue_depth * opts.chunk_bytes + slot_bytes - 1) / slot_bytes + 1);
  std::vector<AlignedBuffer> bufs;
  std::vector<std::span<std::byte>> spans;
  for (size_t i = 0; i < n_slots; ++i) {
    bufs.emplace_back(slot_bytes, 4096);
    spans.push_back(bufs.back().span());
  }
  UringReader reader({path}, spans, opts);
  backend = fmt::format("{}{}{}", reader.backend(), reader.direct(0) ? ", O_DIRECT" : ", buffered",
                        reader.buffers_registered() ? ", registered buffers" : "");
  std::vector<uint32_t> free_slots;
  for (uint32_t s = 0; s < n_slots; ++s) free_slots.push_back(s);
  std::vector<Completion> comps;
  comps.reserve(n_slots);
  size_t next = 0, done = 0;
  uint64_t payload = 0;
  const auto t0 = std::chrono::steady_clock::now();
  while (done < experts.size()) {
    while (next < experts.size() && !free_slots.empty()) {
      const uint32_t s = free_slots.back();
      free_slots.pop_back();
      reader.submit(experts[next].id, experts[next].ranges, s);
      ++next;
    }
    comps.clear();
    reader.poll(comps, true);
    for (const Completion& c : comps) {
      c.throw_if_failed();
      payload += 3 * part;
      free_slots.push_back(c.slot);
      ++done;
    }
  }
  return static_cast<double>(payload) / seconds_since(t0) / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_io: expert reads through the offload reader vs a plain O_DIRECT io_uring loop"};
  std::string file, size_s = "16MiB", chunk_s = "1MiB", temp_size_s = "1GiB", dir = "/tmp", region_s = "512MiB";
  unsigned qd = 32, reps = 6;
  bool pread = false;
  app.add_option("file", file, "file to read (default: a temporary file of --temp-size)");
  app.add_option("--qd", qd, "reads in flight (both loops)")->check(CLI::Range(1u, 4096u));
  app.add_option("--size", size_s, "expert size (e.g. 16MiB)");
  app.add_option("--chunk", chunk_s, "bytes per read (both loops)");
  app.add_option("--reps", reps, "repetitions (both loops each); medians are reported")->check(CLI::Range(1u, 1000u));
  app.add_option("--region", region_s, "bytes read per repetition by each loop");
  app.add_option("--temp-size", temp_size_s, "size of the temporary file");
  app.add_option("--dir", dir, "directory of the temporary file");
  app.add_flag("--pread", pread, "use the reader's pread fallback instead of io_uring");
  CLI11_PARSE(app, argc, argv);
  try {
    const uint64_t size = parse_bytes(size_s), chunk = align_up(parse_bytes(chunk_s));
    std::unique_ptr<TempFile> temp;
    if (file.empty()) {
      temp = std::make_unique<TempFile>(parse_bytes(temp_size_s), dir);
      file = temp->path;
    }
    const uint64_t file_bytes = std::filesystem::file_size(file);
    ReaderOptions opts;
    opts.queue_depth = qd;
    opts.chunk_bytes = chunk;
    opts.force_pread = pread;
    // Each rep reads the next region of the file with both loops, alternating which goes first; the
    // medians are reported (the disk's speed drifts, pairs close in time compare fairly).
    const uint64_t region = std::min(align_down(file_bytes), std::max<uint64_t>(align_up(parse_bytes(region_s)), 4 * size));
    std::vector<double> base, ours, ratio;
    std::string backend;
    fmt::print("file {} ({:.2f} GiB), {} MiB per rep, expert {} bytes (3 ranges), {} bytes per read, queue depth {}\n",
               file, static_cast<double>(file_bytes) / (1u << 30), region >> 20, size, chunk, qd);
    uint64_t begin = 0;
    for (unsigned r = 0; r < reps; ++r) {
      if (begin + region > file_bytes) begin = 0;
      const uint64_t end = begin + region;
      double b = 0, o = 0;
      if (r % 2 == 0) {
        b = baseline_gbps(file, begin, end, qd, chunk);
        o = reader_gbps(file, begin, end, size, opts, backend);
      } else {
        o = reader_gbps(file, begin, end, size, opts, backend);
        b = baseline_gbps(file, begin, end, qd, chunk);
      }
      fmt::print("rep {} [{} MiB..{} MiB): plain O_DIRECT loop {:.3f} GB/s, reader ({}) {:.3f} GB/s, ratio {:.3f}\n", r,
                 begin >> 20, end >> 20, b, backend, o, o / b);
      base.push_back(b);
      ours.push_back(o);
      ratio.push_back(o / b);
      begin = end;
    }
    fmt::print("median: plain {:.3f} GB/s, reader {:.3f} GB/s, ratio {:.3f} (target >= 0.95)\n", median(base),
               median(ours), median(ratio));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
