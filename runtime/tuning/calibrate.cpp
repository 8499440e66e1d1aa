// `moetier calibrate`'s measurements (see calibrate.hpp).
#include "runtime/tuning/calibrate.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <random>
#include <span>

#include "common/aligned_buffer.hpp"
#include "common/error.hpp"
#include "common/ggml_type.hpp"
#include "cpu/ops.hpp"
#include "offload/uring_reader.hpp"
#include "runtime/synth/synth_fill.hpp"
#include "scheduler/backend_registry.hpp"
#include "scheduler/bandwidth.hpp"
#include "scheduler/linear_exec.hpp"
#include "scheduler/router.hpp"
#include "scheduler/thread_pool.hpp"

namespace moetier::tuning {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

/// Thread counts 1, 2, 4, ... and n (quick: 1 and n).
std::vector<int> thread_counts(int n, bool quick) {
  std::vector<int> v{1};
  if (!quick)
    for (int t = 2; t < n; t *= 2) v.push_back(t);
  if (n > 1) v.push_back(n);
  return v;
}

/// A temporary file of `bytes` random bytes in `dir`, written and synced; removed on destruction.
class TempDataFile {
 public:
  TempDataFile(const std::string& dir, uint64_t bytes) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    path_ = dir + "/moetier-calibrate-XXXXXX";
    const int fd = ::mkstemp(path_.data());
    if (fd < 0) fail("calibrate: cannot create a temporary file in {}: {}", dir, std::strerror(errno));
    std::vector<char> chunk(4u << 20);
    std::mt19937_64 rng(42);
    for (size_t i = 0; i + 8 <= chunk.size(); i += 8) {
      const uint64_t r = rng();
      std::memcpy(chunk.data() + i, &r, 8);
    }
    for (uint64_t done = 0; done < bytes;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk.size(), bytes - done));
      const ssize_t w = ::pwrite(fd, chunk.data(), n, static_cast<off_t>(done));
      if (w <= 0) {
        const int err = errno;
        ::close(fd);
        ::unlink(path_.c_str());
        fail("calibrate: writing the temporary file {} ({} bytes) failed: {}", path_, bytes,
             w < 0 ? std::strerror(err) : "no progress");
      }
      done += static_cast<uint64_t>(w);
    }
    ::fsync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);  // the buffered fallback must not read the page cache
    ::close(fd);
  }
  ~TempDataFile() { ::unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

/// GB/s of reading experts of `size` bytes (three ranges each, back to back) over [0, region) of `path`
/// through the expert reader (experts between file offsets begin and end) with `qd` reads in flight, slots recycled as experts complete.
double reader_gbps(const std::string& path, uint64_t begin, uint64_t end, uint64_t size, unsigned qd, std::string& backend) {
  struct Expert {
    offload::ExpertId id;
    std::vector<offload::ByteRange> ranges;
  };
  std::vector<Expert> experts;
  const uint64_t part = size / 3 / 32 * 32 + 32;
  for (uint64_t off = begin + 96; off + 3 * part <= end; off += 3 * part) {
    const auto i = static_cast<int32_t>(experts.size());
    experts.push_back({{i / 64, i % 64}, {{0, off, part}, {0, off + part, part}, {0, off + 2 * part, part}}});
  }
  if (experts.empty()) fail("calibrate: the temporary file is smaller than one expert of {} bytes", size);
  offload::ReaderOptions opts;
  opts.queue_depth = qd;
  uint64_t slot_bytes = 0;  // the largest: an expert's alignment padding depends on its offset
  for (const Expert& x : experts) slot_bytes = std::max(slot_bytes, offload::slot_bytes_needed(x.ranges));
  const size_t n_slots = std::max<size_t>(2, (qd * opts.chunk_bytes + slot_bytes - 1) / slot_bytes + 1);
  std::vector<AlignedBuffer> bufs;
  std::vector<std::span<std::byte>> spans;
  for (size_t i = 0; i < n_slots; ++i) {
    bufs.emplace_back(slot_bytes, 4096);
    spans.push_back(bufs.back().span());
  }
  offload::UringReader reader({path}, spans, opts);
  backend = std::string(reader.backend()) + (reader.direct(0) ? ", O_DIRECT" : ", buffered");
  std::vector<uint32_t> free_slots;
  for (uint32_t s = 0; s < n_slots; ++s) free_slots.push_back(s);
  std::vector<offload::Completion> comps;
  size_t next = 0, done = 0;
  const auto t0 = Clock::now();
  while (done < experts.size()) {
    while (next < experts.size() && !free_slots.empty()) {
      const uint32_t s = free_slots.back();
      free_slots.pop_back();
      reader.submit(experts[next].id, experts[next].ranges, s);
      ++next;
    }
    comps.clear();
    reader.poll(comps, true);
    for (const offload::Completion& c : comps) {
      c.throw_if_failed();
      free_slots.push_back(c.slot);
      ++done;
    }
  }
  return static_cast<double>(done * 3 * part) / seconds_since(t0) / 1e9;
}

/// `n_copies` distinct [n_out, n_in] matrices of `type` with valid random blocks.
struct Matrices {
  AlignedBuffer data;
  uint64_t matrix_bytes = 0;
  int64_t n_copies = 0;
  HostWeight weight(GgmlType type, int64_t c, int64_t n_out, int64_t n_in) const {
    return HostWeight{type, data.data() + static_cast<size_t>(c) * matrix_bytes, n_out, n_in,
                      ggml_row_bytes(type, static_cast<uint64_t>(n_in))};
  }
};
Matrices make_matrices(GgmlType type, int64_t n_out, int64_t n_in, uint64_t total_bytes) {
  Matrices m;
  m.matrix_bytes = ggml_row_bytes(type, static_cast<uint64_t>(n_in)) * static_cast<uint64_t>(n_out);
  m.n_copies = std::max<int64_t>(2, static_cast<int64_t>((total_bytes + m.matrix_bytes - 1) / m.matrix_bytes));
  m.data = AlignedBuffer(static_cast<size_t>(m.matrix_bytes * static_cast<uint64_t>(m.n_copies)), 4096);
  // Up to 8 distinct matrices of valid random blocks, tiled over the rest (the addresses, not the values,
  // are what must differ: the copies together are larger than the last-level cache).
  synth::FillSpec spec{type, synth::ValueKind::Weight, 1.0f / std::sqrt(static_cast<float>(n_in)), 7};
  const int64_t distinct = std::min<int64_t>(8, m.n_copies);
  synth::fill_tensor_bytes(spec, 0, m.data.span().first(static_cast<size_t>(m.matrix_bytes * static_cast<uint64_t>(distinct))));
  for (int64_t c = distinct; c < m.n_copies; ++c)
    std::memcpy(m.data.data() + static_cast<size_t>(c) * m.matrix_bytes,
                m.data.data() + static_cast<size_t>(c % distinct) * m.matrix_bytes, static_cast<size_t>(m.matrix_bytes));
  return m;
}

/// Median seconds of `fn` over repetitions until `budget_s` (at least 3); `reps` returns the count.
template <class Fn>
double median_seconds(Fn&& fn, double budget_s, int& reps) {
  std::vector<double> v;
  const auto t_all = Clock::now();
  reps = 0;
  while (reps < 3 || (seconds_since(t_all) < budget_s && reps < 200)) {
    const auto t0 = Clock::now();
    fn(reps);
    v.push_back(seconds_since(t0));
    ++reps;
  }
  return median(v);
}

/// Fills `v` with a cheap deterministic pattern of values in [-1, 1).
void fill_pattern(std::span<float> v, uint32_t seed) {
  uint32_t x = seed * 2654435761u + 1;
  for (float& f : v) {
    x = x * 1664525u + 1013904223u;
    f = static_cast<float>(x >> 8) / static_cast<float>(1u << 23) - 1.0f;
  }
}

/// Attention per layer at each context length, the router and rms_norm of one decode token.
template <class Note>
void measure_per_token(const CalibrateOptions& o, sched::ThreadPool& pool, sched::LinearExec& exec, Note&& note,
                       MachineProfile& p) {
  const int n = pool.size();
  const double budget_s = o.quick ? 0.3 : 1.0;
  const uint64_t spread = o.quick ? (256ull << 20) : (512ull << 20);  // KV copies cycled (>> LLC)
  const int64_t nh = o.n_head, nkv = o.n_head_kv, dk = o.d_k, dv = o.d_v;
  if (nh <= 0 || nkv <= 0 || nh % nkv != 0 || dk <= 0 || dv <= 0)
    fail("calibrate: attention shape n_head {} / n_head_kv {} / d_k {} / d_v {} is not a grouped-query shape", nh, nkv, dk, dv);
  // (context, query tokens): one decode token at every context; a prompt chunk of kPrefillTokens ending
  // at each context up to 4096 (longer ones would take seconds a repetition).
  constexpr int64_t kPrefillTokens = 64;
  std::vector<std::pair<int64_t, int64_t>> runs;
  for (int64_t ctx : o.contexts) runs.push_back({ctx, 1});
  for (int64_t ctx : o.contexts)
    if (ctx >= kPrefillTokens && ctx <= 4096) runs.push_back({ctx, kPrefillTokens});
  for (const auto& run : runs) {
    const int64_t ctx = run.first, nt = run.second;  // plain locals: clang 14's lambdas cannot capture bindings
    note(fmt::format("attention at {} positions, {} query token(s)", ctx, nt));
    const int64_t row = nkv * (dk + dv);  // K then V of one position
    const uint64_t layer_bytes = static_cast<uint64_t>(ctx * row) * sizeof(float);
    const int64_t copies = std::max<int64_t>(2, static_cast<int64_t>(spread / layer_bytes));
    std::vector<float> kv(static_cast<size_t>(copies * ctx * row));
    fill_pattern(kv, 3);
    std::vector<float> q(static_cast<size_t>(nt * nh * dk)), out(static_cast<size_t>(nt * nh * dv));
    fill_pattern(q, 5);
    cpu::AttentionArgs a;
    a.q = q.data();
    a.n_tokens = nt;
    a.n_head = nh;
    a.n_head_kv = nkv;
    a.d_k = dk;
    a.d_v = dv;
    a.k_stride = row;
    a.v_stride = row;
    a.pos0 = ctx - nt;
    a.scale = 1.0f / std::sqrt(static_cast<float>(dk));
    a.out = out.data();
    std::vector<std::vector<float>> scratch(static_cast<size_t>(n), std::vector<float>(static_cast<size_t>(cpu::attention_scratch_floats(a))));
    int reps = 0;
    const double s = median_seconds(
        [&](int r) {
          const float* base = kv.data() + static_cast<size_t>((r % copies) * ctx * row);
          a.k = base;
          a.v = base + nkv * dk;
          pool.parallel_for(nh, 1, [&](int64_t b, int64_t e, int w) { cpu::attention(a, b, e, scratch[static_cast<size_t>(w)].data()); });
        },
        budget_s, reps);
    p.overheads.push_back({nt == 1 ? "attention" : "attention_prefill", s * 1e6 / static_cast<double>(nt),
                           {fmt::format("cpu::attention of {} query token(s) ending at {} positions, {} heads / {} KV heads, d_k {} "
                                        "d_v {}, split over heads (Model::run_attention), f32 KV copies cycled, median rep, "
                                        "per query token",
                                        nt, ctx, nh, nkv, dk, dv),
                            static_cast<uint64_t>(copies) * layer_bytes, n, reps},
                           ctx, static_cast<double>(nh * (dk + dv))});
  }

  note("router");
  {
    const int64_t ne = o.n_expert, nd = o.n_embd, k = std::min(o.n_expert_used, o.n_expert);
    if (ne <= 0 || nd <= 0 || k <= 0) fail("calibrate: router shape n_expert {} x n_embd {} (top {}) is empty", ne, nd, k);
    const uint64_t mat_bytes = static_cast<uint64_t>(ne * nd) * sizeof(float);
    const int64_t copies = std::max<int64_t>(2, static_cast<int64_t>((64ull << 20) / mat_bytes));
    std::vector<float> w(static_cast<size_t>(copies * ne * nd));
    fill_pattern(w, 7);
    std::vector<float> x(static_cast<size_t>(nd)), logits(static_cast<size_t>(ne)), scratch(static_cast<size_t>(3 * ne)), wts(static_cast<size_t>(k));
    std::vector<int32_t> ids(static_cast<size_t>(k));
    fill_pattern(x, 9);
    sched::RouterConfig cfg;
    cfg.n_expert = ne;
    cfg.n_used = k;
    int reps = 0;
    const int per = 64;  // calls per timed repetition
    const double s = median_seconds(
        [&](int r) {
          for (int i = 0; i < per; ++i) {
            const HostWeight hw{GgmlType::F32, reinterpret_cast<const std::byte*>(w.data() + static_cast<size_t>(((r * per + i) % copies) * ne * nd)),
                                ne, nd, static_cast<uint64_t>(nd) * sizeof(float)};
            exec(hw, x.data(), 1, logits.data());
            sched::route_token(cfg, logits.data(), ids.data(), wts.data(), scratch.data());
          }
        },
        budget_s, reps);
    p.overheads.push_back({"router", s * 1e6 / per,
                           {fmt::format("LinearExec GEMV of an F32 [{} x {}] router + route_token top-{} (softmax), copies cycled, "
                                        "median rep of {} calls", ne, nd, k, per),
                            static_cast<uint64_t>(copies) * mat_bytes, n, reps},
                           0, static_cast<double>(ne * nd)});
  }

  note("rms_norm");
  {
    const int64_t nd = o.n_embd;
    std::vector<float> x(static_cast<size_t>(nd * 64)), wt(static_cast<size_t>(nd)), y(static_cast<size_t>(nd));
    fill_pattern(x, 11);
    fill_pattern(wt, 13);
    int reps = 0;
    const int per = 256;
    const double s = median_seconds(
        [&](int) {
          for (int i = 0; i < per; ++i) cpu::rms_norm(x.data() + static_cast<size_t>((i % 64) * nd), wt.data(), y.data(), nd, 1e-6f);
        },
        budget_s, reps);
    p.overheads.push_back({"rms_norm", s * 1e6 / per,
                           {fmt::format("cpu::rms_norm of {} values (one thread, as per token), median rep of {} calls", nd, per),
                            static_cast<uint64_t>(nd * 64) * sizeof(float), 1, reps},
                           0, static_cast<double>(nd)});
  }
}

}  // namespace

MachineProfile calibrate(const CalibrateOptions& o, const ProgressFn& progress) {
  sched::ThreadPoolOptions po;
  po.n_threads = o.max_threads;
  sched::ThreadPool& pool = sched::configure_global_pool(po);
  const int n = pool.size();
  const std::vector<int> counts = thread_counts(n, o.quick);
  const std::vector<uint64_t> sizes =
      !o.read_sizes.empty() ? o.read_sizes : std::vector<uint64_t>{1u << 20, 4u << 20, 16u << 20};
  const std::vector<unsigned> depths = o.quick ? std::vector<unsigned>{8, 32} : std::vector<unsigned>{4, 16, 64};
  const std::vector<std::string> types = !o.types.empty() ? o.types : std::vector<std::string>{"Q4_K", "Q6_K", "Q8_0"};
  const std::vector<int64_t> batches{1, 8, 32, 128, 512};
  int n_prefill = 0;
  for (int64_t ctx : o.contexts) n_prefill += ctx >= 64 && ctx <= 4096;
  const int n_steps = static_cast<int>(counts.size() + sizes.size() * depths.size() + types.size() * batches.size() + 3 +
                                       o.contexts.size() + static_cast<size_t>(n_prefill));
  int step = 0;
  auto note = [&](const std::string& what) {
    if (progress) progress(what, ++step, n_steps);
  };
  for (const std::string& t : types) {
    const auto type = ggml_type_from_name(t);
    if (!type || !synth::can_synthesize(*type)) fail("calibrate: cannot rate weight type '{}' (no test data for it)", t);
  }

  MachineProfile p;
  p.created = utc_now();
  p.cpu = pool.topology().summary();
  p.max_threads = n;
  p.gpu = sched::gpu_device_count() > 0
              ? fmt::format("{} CUDA device(s) found; not measured (calibrate measures the CPU and disk only)",
                            sched::gpu_device_count())
              : "absent";

  // DRAM and kernels: buffers larger than the last-level cache (up to 480 MiB on the servers we run on).
  const uint64_t dram_bytes = o.quick ? (1ull << 30) : (2ull << 30);
  const int dram_reps = o.quick ? 2 : 5;
  for (int t : counts) {
    note(fmt::format("DRAM read bandwidth, {} thread(s)", t));
    double gbps = 0;
    if (t == n) {
      gbps = sched::measure_read_bandwidth_gbps(pool, dram_bytes, dram_reps);
    } else {
      sched::ThreadPool sub(pool.topology(), sched::ThreadPoolOptions{.n_threads = t});
      gbps = sched::measure_read_bandwidth_gbps(sub, dram_bytes, dram_reps);
    }
    p.dram.push_back({t, gbps, {"STREAM-like read of a buffer first-touched by its workers, best of reps", dram_bytes, t, dram_reps}});
  }

  // Disk: the expert reader over a temporary file, each size and depth on a region not read before.
  {
    const uint64_t region = o.quick ? (96ull << 20) : (512ull << 20);
    uint64_t biggest = 0;
    for (uint64_t s : sizes) biggest = std::max(biggest, s);
    const uint64_t region_of = std::max(region, 4 * biggest);
    const uint64_t file_bytes = std::max(region_of, std::min<uint64_t>(o.quick ? (384ull << 20) : (2ull << 30), region_of * sizes.size() * depths.size()));
    const std::string dir = o.disk_dir.empty() ? std::filesystem::temp_directory_path().string() : o.disk_dir;
    TempDataFile file(dir, file_bytes);
    p.disk_dir = dir;
    uint64_t begin = 0;
    const int disk_reps = o.quick ? 1 : 3;
    for (uint64_t s : sizes)
      for (unsigned qd : depths) {
        note(fmt::format("disk reads of {} KiB, queue depth {}", s >> 10, qd));
        std::vector<double> v;
        for (int r = 0; r < disk_reps; ++r) {
          // Each rep reads a fresh region; the file is re-read from the start once exhausted (O_DIRECT:
          // the page cache does not serve it).
          if (begin + region_of > file_bytes) begin = 0;
          v.push_back(reader_gbps(file.path(), begin, std::min(file_bytes, begin + region_of), s, qd, p.disk_backend));
          begin += region_of;
        }
        p.disk.push_back({s, static_cast<int>(qd), median(v),
                          {"expert reader (3 ranges per expert, slots recycled), " + p.disk_backend + ", median of reps",
                           std::min(file_bytes, region_of), 1, disk_reps}});
      }
  }

  // Kernels: distinct copies of an expert-shaped matrix (together >> LLC), the model's path (LinearExec).
  sched::LinearExec exec(&pool);
  // Tiny test models' experts are rated at a realistic least shape (their own is all overhead).
  const int64_t n_embd = std::max<int64_t>(512, (o.n_embd + 255) / 256 * 256);
  const int64_t n_ff = std::max<int64_t>(256, (o.n_ff + 255) / 256 * 256);
  const uint64_t kernel_bytes = o.quick ? (1ull << 30) : (2ull << 30);
  const double budget_s = o.quick ? 0.4 : 1.5;
  for (const std::string& tname : types) {
    const GgmlType type = *ggml_type_from_name(tname);
    const Matrices m = make_matrices(type, n_ff, n_embd, kernel_bytes);
    for (int64_t tok : batches) {
      note(fmt::format("{} kernel, {} token(s)", tname, tok));
      std::vector<float> x(static_cast<size_t>(tok * n_embd));
      std::mt19937 rng(1);
      std::normal_distribution<float> nd;
      for (float& v : x) v = nd(rng);
      std::vector<float> y(static_cast<size_t>(tok * n_ff));
      auto one = [&](int64_t c) {
        const HostWeight w = m.weight(type, c % m.n_copies, n_ff, n_embd);
        if (tok < sched::LinearExec::kDefaultGemmMinTokens) exec(w, x.data(), tok, y.data());
        else exec.batch(w, x.data(), tok, y.data());
      };
      one(0);  // warm-up (scratch sizing, oneDNN primitive)
      // Products until the time budget (at least one pass over all copies at 1 token).
      const int64_t min_products = tok < 32 ? m.n_copies : 2;
      int64_t products = 0;
      std::vector<double> rates;
      const auto t_all = Clock::now();
      int reps = 0;
      while (reps < 2 || (seconds_since(t_all) < budget_s && reps < 50)) {
        const auto t0 = Clock::now();
        for (int64_t c = 0; c < min_products; ++c) one(products++);
        rates.push_back(static_cast<double>(min_products) / seconds_since(t0));
        ++reps;
      }
      // Products per second: the median rep (on a machine shared with other jobs, the best rep is a moment
      // with more CPU than a run gets).
      const double per_s = median(rates);
      KernelFigure k;
      k.type = tname;
      k.tokens = tok;
      k.gbps = per_s * static_cast<double>(m.matrix_bytes) / 1e9;
      k.gflops = per_s * 2.0 * static_cast<double>(n_ff) * static_cast<double>(n_embd) * static_cast<double>(tok) / 1e9;
      k.how = {fmt::format("LinearExec {} of [{} x {}] matrices, distinct copies cycled, median rep",
                           tok < 32 ? "GEMV (operator())" : "batch (prefill GEMM)", n_ff, n_embd),
               static_cast<uint64_t>(m.matrix_bytes * static_cast<uint64_t>(m.n_copies)), n, reps};
      p.kernels.push_back(std::move(k));
    }
  }

  // The pool's dispatch: the fixed cost of each parallel matrix product, norm and attention step.
  note("thread-pool dispatch");
  {
    const int calls = o.quick ? 2000 : 20000;
    volatile int sink = 0;
    const auto t0 = Clock::now();
    for (int i = 0; i < calls; ++i) pool.parallel_for(pool.size(), [&](int64_t, int64_t, int w) { if (w < 0) sink = w; });
    const double us = seconds_since(t0) * 1e6 / calls;
    p.overheads.push_back({"pool_dispatch", us, {"empty parallel_for over every worker, mean of calls", 0, n, calls}});
  }
  measure_per_token(o, pool, exec, note, p);
  return p;
}

}  // namespace moetier::tuning
