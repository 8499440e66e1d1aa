// SimBackend (scheduler/sim_backend.hpp): opened through the device table; places FFNs within its capacity
// with every copied byte counted; runs groups asynchronously on its stream with results bit-identical
// (memcmp) to CpuFfn on the host weights, for decode chains (same_input) and the prefill GEMM; errors on
// the stream come back from wait() and the backend keeps working; its groups overlap the caller's work.
#include <doctest/doctest.h>

#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/error.hpp"
#include "cpu/dequant.hpp"
#include "cpu/matmul.hpp"
#include "scheduler/backend_registry.hpp"
#include "scheduler/cpu_ffn.hpp"
#include "scheduler/sim_backend.hpp"
#include "scheduler/thread_pool.hpp"
#include "tests/scheduler/sim_test_util.hpp"

using namespace moetier;
using namespace moetier::sched;

namespace {

using test::message_of;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

/// One random FFN in host memory, quantised from normal values with the reference quantisers.
struct TestFfn {
  std::vector<std::byte> gate, up, down;
  std::vector<float> gate_bias, up_bias, down_bias;
  HostFfn view;
  TestFfn(GgmlType t, int64_t n_embd, int64_t n_ff, uint32_t seed, bool biases = false) {
    REQUIRE(cpu::can_quantize(t));
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, 0.5f);
    auto make = [&](std::vector<std::byte>& bytes, int64_t n_out, int64_t n_in) {
      const uint64_t rb = ggml_row_bytes(t, static_cast<uint64_t>(n_in));
      bytes.resize(rb * static_cast<uint64_t>(n_out));
      std::vector<float> row(static_cast<size_t>(n_in));
      for (int64_t o = 0; o < n_out; ++o) {
        for (float& v : row) v = dist(rng);
        cpu::quantize_row_ref(t, row.data(), bytes.data() + o * rb, n_in);
      }
      return HostWeight{t, bytes.data(), n_out, n_in, rb};
    };
    view.gate = make(gate, n_ff, n_embd);
    view.up = make(up, n_ff, n_embd);
    view.down = make(down, n_embd, n_ff);
    if (biases) {
      for (auto* b : {&gate_bias, &up_bias}) b->resize(static_cast<size_t>(n_ff));
      down_bias.resize(static_cast<size_t>(n_embd));
      for (auto* b : {&gate_bias, &up_bias, &down_bias})
        for (float& v : *b) v = dist(rng);
      view.gate_bias = gate_bias.data();
      view.up_bias = up_bias.data();
      view.down_bias = down_bias.data();
    }
  }
};

std::vector<float> random_rows(int64_t m, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(m * n));
  for (float& v : x) v = dist(rng);
  return x;
}

DeviceSpec sim_spec(uint64_t capacity, double gbps = 0) {
  DeviceSpec s;
  s.kind = "sim";
  s.capacity_bytes = capacity;
  s.h2d_gbps = gbps;
  return s;
}

ExpertGroup group_of(FfnKey key, const float* x, float* y, int64_t m, int64_t n_embd, FfnKind kind = FfnKind::Routed,
                     FfnAct act = FfnAct::SwiGLU, bool same_input = false) {
  ExpertGroup g;
  g.key = key;
  g.x = x;
  g.y = y;
  g.n_tokens = m;
  g.n_embd = n_embd;
  g.kind = kind;
  g.act = act;
  g.same_input = same_input;
  return g;
}

constexpr int64_t kEmbd = 256, kFf = 512;  // multiples of 256 for the K-quants

}  // namespace

TEST_CASE("sim backend: opened through the device table; bad specs are one clear error") {
  std::unique_ptr<DeviceBackend> dev = make_device_backend(sim_spec(1 << 20));
  CHECK(dev->name() == "sim:0");
  CHECK(dev->memory_kind() == MemoryKind::Device);
  CHECK(dev->capacity_bytes() == 1 << 20);
  CHECK(dev->used_bytes() == 0);
  DeviceSpec s = sim_spec(1 << 20);
  s.index = 2;
  CHECK(make_device_backend(s)->name() == "sim:2");
  struct Bad { DeviceSpec spec; std::string message; };
  DeviceSpec no_mem = sim_spec(0), bad_rate = sim_spec(1, -2), bad_gemm = sim_spec(1), bad_index = sim_spec(1);
  bad_gemm.gemm_min_tokens = -1;
  bad_index.index = -1;
  for (const Bad& b : {Bad{no_mem, "sim:0: device memory capacity must be > 0 bytes"},
                       Bad{bad_rate, "sim:0: host -> device copy rate must be >= 0 GB/s (0 = unpaced), got -2"},
                       Bad{bad_gemm, "sim:0: gemm_min_tokens must be >= 0, got -1"},
                       Bad{bad_index, "sim:-1: device index must be >= 0"}})
    CHECK(message_of([&] { (void)make_device_backend(b.spec); }) == b.message);
}

TEST_CASE("sim backend: supports declines host weights, empty groups and types without CPU kernels") {
  SimBackend sim(sim_spec(1 << 20));
  struct Case { GgmlType type; int64_t n; MemoryKind kind; const char* reason; };
  const Case cases[] = {
      {GgmlType::Q4_K, 1, MemoryKind::Device, nullptr},
      {GgmlType::F32, 64, MemoryKind::Device, nullptr},
      {GgmlType::MXFP4, 3, MemoryKind::Device, nullptr},
      {GgmlType::Q4_K, 1, MemoryKind::Host, "sim:0 computes from its own device memory, not host memory"},
      {GgmlType::Q4_K, 1, MemoryKind::PinnedHost, "sim:0 computes from its own device memory, not pinned memory"},
      {GgmlType::Q4_K, 0, MemoryKind::Device, "empty group"},
      {GgmlType::TQ1_0, 1, MemoryKind::Device,
       "no CPU kernel for TQ1_0 weights (the simulated device computes with the CPU kernels)"},
  };
  for (const Case& c : cases) {
    CAPTURE(ggml_type_name(c.type));
    const auto why = sim.supports(c.type, c.n, c.kind);
    if (c.reason) {
      REQUIRE(why);
      CHECK(*why == c.reason);
    } else {
      CHECK_FALSE(why);
    }
  }
}

TEST_CASE("sim backend: placement stays within capacity, counts every copied byte, and evict frees") {
  const TestFfn f(GgmlType::Q8_0, kEmbd, kFf, 1);
  const uint64_t per = f.view.bytes();
  SimBackend sim(sim_spec(3 * per + per / 2));  // room for three and a half
  uint64_t placed = 0;
  for (int e = 0; e < 3; ++e) {
    sim.place(FfnKey{4, e}, f.view);
    placed += per;
    CHECK(sim.holds(FfnKey{4, e}));
    CHECK(sim.used_bytes() == placed);
    CHECK(sim.stats().h2d_bytes == placed);
  }
  // The device copy is the host bytes, gate then up then down in one buffer, as device views.
  const DeviceFfn& d = sim.device_ffn(FfnKey{4, 1});
  CHECK(d.gate.kind == MemoryKind::Device);
  CHECK(std::memcmp(d.gate.data, f.gate.data(), f.gate.size()) == 0);
  CHECK(d.up.data == d.gate.data + f.gate.size());
  CHECK(std::memcmp(d.down.data, f.down.data(), f.down.size()) == 0);
  const std::string msg = message_of([&] { sim.place(FfnKey{4, 3}, f.view); });
  CHECK(msg == fmt::format("sim:0: out of device memory for layer 4 expert 3: {} bytes requested, {} in use, capacity {}",
                           per, 3 * per, sim.capacity_bytes()));
  CHECK_FALSE(sim.holds(FfnKey{4, 3}));
  CHECK(sim.used_bytes() == 3 * per);      // nothing left allocated by the failure
  CHECK(sim.stats().h2d_bytes == placed);  // nor copied
  CHECK(message_of([&] { sim.place(FfnKey{4, 0}, f.view); }) == "sim:0: layer 4 expert 0 is already on the device");
  sim.evict(FfnKey{4, 0});
  sim.evict(FfnKey{4, 0});  // no-op
  CHECK_FALSE(sim.holds(FfnKey{4, 0}));
  CHECK(sim.used_bytes() == 2 * per);
  sim.place(FfnKey{4, FfnKey::kSharedFfn}, f.view);  // the freed room is usable again
  placed += per;
  CHECK(sim.holds(FfnKey{4, FfnKey::kSharedFfn}));
  CHECK(sim.stats().h2d_bytes == placed);
  CHECK(sim.peak_bytes() <= sim.capacity_bytes());
  CHECK(sim.peak_bytes() == 3 * per);
  CHECK(message_of([&] { sim.place(FfnKey{5, FfnKey::kSharedFfn}, f.view); }).find("layer 5 shared FFN") !=
        std::string::npos);
  // Shapes that do not fit each other are refused before anything is allocated.
  HostFfn bad = f.view;
  bad.down.n_out = kEmbd / 2;
  bad.down.data = f.down.data();
  CHECK(contains(message_of([&] { sim.place(FfnKey{6, 0}, bad); }), "FFN matrices do not fit each other"));
  CHECK(sim.used_bytes() == 3 * per);
}

TEST_CASE("sim backend: copies are paced: placing N bytes at R GB/s takes at least N / R") {
  const TestFfn f(GgmlType::F32, kEmbd, kFf, 2);  // 1.5 MiB
  SimBackend sim(sim_spec(f.view.bytes(), 0.5));
  const auto t0 = std::chrono::steady_clock::now();
  sim.place(FfnKey{0, 0}, f.view);
  const double wall = double(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count());
  const double min_ns = double(f.view.bytes()) / 0.5;
  CHECK(sim.stats().h2d_bytes == f.view.bytes());
  CHECK(double(sim.stats().h2d_ns) >= min_ns);
  CHECK(wall >= min_ns);
}

TEST_CASE("sim backend: groups for FFNs the device does not hold, or of the wrong shape, are refused at run") {
  const TestFfn f(GgmlType::Q4_K, kEmbd, kFf, 3);
  SimBackend sim(sim_spec(1 << 22));
  sim.place(FfnKey{2, 9}, f.view);
  std::vector<float> x(kEmbd), y(kEmbd);
  CHECK(message_of([&] { sim.run(group_of(FfnKey{2, 8}, x.data(), y.data(), 1, kEmbd)); }) ==
        "sim:0: does not hold layer 2 expert 8 (place it before running groups on it)");
  CHECK(message_of([&] { sim.run(group_of(FfnKey{2, 9}, x.data(), y.data(), 1, kEmbd / 2)); }) ==
        "sim:0: layer 2 expert 9: group rows have 128 values, the FFN takes 256");
  CHECK(contains(message_of([&] { sim.run(group_of(FfnKey{2, 9}, x.data(), y.data(), 0, kEmbd)); }), "needs >= 1 row"));
  CHECK(contains(message_of([&] { sim.run(group_of(FfnKey{2, 9}, nullptr, y.data(), 1, kEmbd)); }), "x null"));
  CHECK(sim.stats().groups == 0);
}

TEST_CASE("sim backend: results are bit-identical to CpuFfn on the host weights (decode chains and prefill GEMM)") {
  // Reference: CpuFfn on a 3-thread pool (results do not depend on the thread count) with the default
  // GEMM threshold, as the sim uses by default.
  ThreadPool ref_pool(3);
  LinearExec ref_lin(&ref_pool);
  CpuFfn ref(ref_lin);
  struct Case { GgmlType type; int64_t m; FfnKind kind; FfnAct act; bool biases; };
  const Case cases[] = {
      {GgmlType::Q4_K, 1, FfnKind::Routed, FfnAct::SwiGLU, false},
      {GgmlType::Q8_0, 1, FfnKind::Routed, FfnAct::SwiGLU, false},
      {GgmlType::F32, 1, FfnKind::Routed, FfnAct::SwiGLU, false},
      {GgmlType::BF16, 1, FfnKind::Routed, FfnAct::SwiGLU, false},
      {GgmlType::MXFP4, 1, FfnKind::Routed, FfnAct::SwiGLUClampedOss, true},
      {GgmlType::Q4_K, 40, FfnKind::Routed, FfnAct::SwiGLU, false},
      {GgmlType::Q8_0, 40, FfnKind::Routed, FfnAct::SwiGLU, false},
      {GgmlType::F32, 40, FfnKind::Routed, FfnAct::SwiGLU, false},
      {GgmlType::BF16, 40, FfnKind::Routed, FfnAct::SwiGLU, false},
      {GgmlType::Q4_K, 40, FfnKind::Dense, FfnAct::SwiGLU, false},
      {GgmlType::F32, 7, FfnKind::Dense, FfnAct::SwiGLU, false},
      {GgmlType::MXFP4, 40, FfnKind::Routed, FfnAct::SwiGLUClampedOss, true},
  };
  constexpr int kExperts = 4;
  uint32_t seed = 100;
  for (const Case& c : cases) {
    CAPTURE(ggml_type_name(c.type));
    CAPTURE(c.m);
    CAPTURE(static_cast<int>(c.kind));
    std::vector<TestFfn> ffns;
    for (int e = 0; e < kExperts; ++e) ffns.emplace_back(c.type, kEmbd, kFf, ++seed, c.biases);
    SimBackend sim(sim_spec(kExperts * ffns[0].view.bytes()));
    for (int e = 0; e < kExperts; ++e) sim.place(FfnKey{1, e}, ffns[static_cast<size_t>(e)].view);
    const std::vector<float> x = random_rows(c.m, kEmbd, ++seed);
    const size_t n = static_cast<size_t>(c.m * kEmbd);
    // Every expert of the "layer" multiplies the same rows: all groups but the first are same_input, as
    // the executor marks them in decode.
    std::vector<std::vector<float>> want(kExperts, std::vector<float>(n)), got(kExperts, std::vector<float>(n, -1.0f));
    const uint64_t gemm_before = ref_lin.gemm_matmuls();
    ref.new_input();
    for (int e = 0; e < kExperts; ++e)
      ref.run(ffns[static_cast<size_t>(e)].view, x.data(), c.m, want[static_cast<size_t>(e)].data(), c.act, c.kind, e > 0);
    // (Q4_K on AMX CPUs keeps the exact int8 tiles: cpu::gemm_rows_uses_amx)
    if (c.m >= LinearExec::kDefaultGemmMinTokens && c.kind == FfnKind::Routed && !cpu::gemm_rows_uses_amx(c.type, c.m))
      CHECK(ref_lin.gemm_matmuls() > gemm_before);
    uint64_t last = 0;
    for (int e = 0; e < kExperts; ++e)
      last = sim.run(group_of(FfnKey{1, e}, x.data(), got[static_cast<size_t>(e)].data(), c.m, kEmbd, c.kind, c.act, e > 0));
    sim.wait(last);
    for (int e = 0; e < kExperts; ++e) {
      CAPTURE(e);
      CHECK(std::memcmp(got[static_cast<size_t>(e)].data(), want[static_cast<size_t>(e)].data(), n * sizeof(float)) == 0);
    }
    CHECK(sim.stats().groups == kExperts);
    CHECK(sim.stats().token_rows == static_cast<uint64_t>(kExperts * c.m));
    CHECK(sim.stats().busy_ns > 0);
  }
}

TEST_CASE("sim backend: an error raised on the stream thread comes back from wait(), and the backend keeps working") {
  const TestFfn f(GgmlType::Q8_0, kEmbd, kFf, 7);
  ThreadPool ref_pool(1);
  LinearExec ref_lin(&ref_pool);
  CpuFfn ref(ref_lin);
  const std::vector<float> x = random_rows(2, kEmbd, 8);
  std::vector<float> want(2 * kEmbd);
  ref.run(f.view, x.data(), 2, want.data(), FfnAct::SwiGLU, FfnKind::Routed);

  SimBackend sim(sim_spec(1 << 22));
  sim.place(FfnKey{3, 1}, f.view);
  std::vector<float> y1(2 * kEmbd, -1), y2(2 * kEmbd, -1), y3(2 * kEmbd, -1), y4(2 * kEmbd, -1);
  const uint64_t t1 = sim.run(group_of(FfnKey{3, 1}, x.data(), y1.data(), 2, kEmbd));
  sim.inject_fault_for_test();  // run() accepts the next group; the stream thread fails it
  const uint64_t t2 = sim.run(group_of(FfnKey{3, 1}, x.data(), y2.data(), 2, kEmbd));
  const uint64_t t3 = sim.run(group_of(FfnKey{3, 1}, x.data(), y3.data(), 2, kEmbd));
  sim.wait(t1);  // before the failed group: no error
  CHECK(message_of([&] { sim.wait(t3); }) == "sim:0: layer 3 expert 1: injected fault (test hook)");
  CHECK(t2 == t1 + 1);
  sim.wait(t3);  // reported once
  CHECK(std::memcmp(y1.data(), want.data(), want.size() * sizeof(float)) == 0);
  CHECK(std::memcmp(y3.data(), want.data(), want.size() * sizeof(float)) == 0);
  CHECK(y2[0] == -1.0f);  // the failed group wrote nothing
  CHECK(sim.stats().groups == 2);
  const uint64_t t4 = sim.run(group_of(FfnKey{3, 1}, x.data(), y4.data(), 2, kEmbd));
  sim.wait(t4);
  CHECK(std::memcmp(y4.data(), want.data(), want.size() * sizeof(float)) == 0);
}

TEST_CASE("sim backend: groups run on the stream thread while the caller does other work") {
  // Two prefill-sized groups (tens of ms on the stream's one thread: Q8_0, which has no AMX path that would
  // finish them before run() returns); meanwhile the caller computes its own FFN in chunks until both are
  // done, recording when each chunk ran.
  const TestFfn f(GgmlType::Q8_0, 1024, 2048, 11);
  SimBackend sim(sim_spec(2 * f.view.bytes()));
  sim.place(FfnKey{0, 0}, f.view);
  sim.place(FfnKey{0, 1}, f.view);
  const int64_t m = 160;
  const std::vector<float> x = random_rows(m, 1024, 12);
  std::vector<float> y0(static_cast<size_t>(m * 1024)), y1(y0.size()), mine(y0.size());
  using Clock = std::chrono::steady_clock;
  auto ns = [](Clock::time_point t) { return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count(); };
  ThreadPool pool(1);
  LinearExec lin(&pool);
  CpuFfn cpu(lin);
  const int64_t t_submit = ns(Clock::now());
  sim.run(group_of(FfnKey{0, 0}, x.data(), y0.data(), m, 1024));
  const uint64_t last = sim.run(group_of(FfnKey{0, 1}, x.data(), y1.data(), m, 1024));
  const int64_t t_returned = ns(Clock::now());
  std::vector<std::pair<int64_t, int64_t>> chunks;  // the caller's work, [start, end] ns
  const auto give_up = Clock::now() + std::chrono::seconds(60);
  while (!sim.done(last) && Clock::now() < give_up) {
    const int64_t a = ns(Clock::now());
    cpu.run(f.view, x.data(), 1, mine.data(), FfnAct::SwiGLU, FfnKind::Routed);
    chunks.emplace_back(a, ns(Clock::now()));
  }
  sim.wait(last);
  const std::vector<SimSpan> spans = sim.recent_spans();
  REQUIRE(spans.size() == 2);
  CHECK(sim.stream_thread_id() != std::this_thread::get_id());
  // run() returned before the first group finished: it only queued it.
  CHECK(t_returned < spans[0].end_ns);
  CHECK(spans[0].start_ns >= t_submit);
  CHECK(spans[1].start_ns >= spans[0].end_ns);
  // Some of the caller's own work ran while each device group was running.
  for (const SimSpan& s : spans) {
    CAPTURE(s.ticket);
    bool overlapped = false;
    for (const auto& [a, b] : chunks) overlapped |= a < s.end_ns && b > s.start_ns;
    CHECK(overlapped);
  }
  CHECK(std::memcmp(y0.data(), y1.data(), y0.size() * sizeof(float)) == 0);
}

TEST_CASE("sim backend: same_input is honoured exactly as CpuFfn honours it (the kept quantisation is reused)") {
  // A chain marked same_input whose third group has in fact other rows: CpuFfn reuses the quantisation of
  // the first rows, so the sim must too (proving it passes same_input through, not just recomputes).
  std::vector<TestFfn> ffns;
  for (int e = 0; e < 3; ++e) ffns.emplace_back(GgmlType::Q4_K, kEmbd, kFf, 40 + e);
  const std::vector<float> x1 = random_rows(1, kEmbd, 50), x2 = random_rows(1, kEmbd, 51);
  const float* xs[3] = {x1.data(), x1.data(), x2.data()};
  ThreadPool ref_pool(1);
  LinearExec ref_lin(&ref_pool);
  CpuFfn ref(ref_lin);
  std::vector<float> want(3 * kEmbd), fresh(kEmbd), got(3 * kEmbd, -1);
  for (int e = 0; e < 3; ++e) ref.run(ffns[e].view, xs[e], 1, want.data() + e * kEmbd, FfnAct::SwiGLU, FfnKind::Routed, e > 0);
  ref.new_input();
  ref.run(ffns[2].view, x2.data(), 1, fresh.data(), FfnAct::SwiGLU, FfnKind::Routed, false);
  REQUIRE(std::memcmp(want.data() + 2 * kEmbd, fresh.data(), fresh.size() * sizeof(float)) != 0);  // reuse happened
  SimBackend sim(sim_spec(1 << 22));
  uint64_t last = 0;
  for (int e = 0; e < 3; ++e) {
    sim.place(FfnKey{0, e}, ffns[e].view);
    last = sim.run(group_of(FfnKey{0, e}, xs[e], got.data() + e * kEmbd, 1, kEmbd, FfnKind::Routed, FfnAct::SwiGLU, e > 0));
  }
  sim.wait(last);
  CHECK(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)) == 0);
}
