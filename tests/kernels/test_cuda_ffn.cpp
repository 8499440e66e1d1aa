// The CUDA backend (kernels/ffn_kernels.hpp, scheduler/gpu_backend_cuda.cpp) against the CPU reference:
//   - the GEMV of each weight type against the dequantised matrix times x in double, at awkward shapes
//     (odd n_out, n_in = 256 k, 1 / 3 / 8 / 11 tokens);
//   - the whole FFN through gpu:0 (place, run, wait) against sched::CpuFfn on the same host weights, for
//     SwiGLU and the gpt-oss clamp, with and without biases;
//   - the gpu:0 backend's refusals and errors, and in-order tickets;
//   - a tiny synth MoE model with every expert and the non-expert FFNs on gpu:0: greedy tokens equal to
//     the all-CPU run, logits within a stated tolerance.
// Error bound: max |gpu - ref| / max |ref| per output. F32 / F16 / BF16 weights: the CPU path rounds x to
// the weight's dot type (F16 / BF16) and the GPU keeps it f32, so 1e-2 against CpuFfn and 1e-4 for the
// GEMV against the exact dequantised product; quantised weights: the CPU quantises x to Q8_0 / Q8_K, the
// GPU does not, so 5e-2 against CpuFfn (1e-4 for the GEMV against the exact product).
// Every GPU case skips (MESSAGE, and the executable exits 77 = meson SKIP) when no CUDA device is usable.
#include <doctest/doctest.h>

#include <cstdio>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "cpu/dequant.hpp"
#include "kernels/gpu_backend.hpp"
#include "runtime/tiered/device_placement.hpp"
#include "scheduler/backend_registry.hpp"
#include "scheduler/cpu_ffn.hpp"
#include "scheduler/thread_pool.hpp"
#include "tests/tiered/tiered_test_util.hpp"
#ifdef MOETIER_HAVE_CUDA
#include "kernels/cuda_runtime.hpp"
#include "kernels/ffn_kernels.hpp"
#endif

using namespace moetier;
using namespace moetier::sched;

namespace {

/// True (after a MESSAGE saying why) when this process has no CUDA device: the caller returns.
/// doctest decorator argument: skip (counted as skipped, reason printed once) without a CUDA device.
bool no_gpu() {
  static const bool none = [] {
    const bool n = gpu_device_count() == 0;
    if (n) std::fprintf(stderr, "skipping the CUDA device cases: no CUDA device (%s)\n", gpu::describe().c_str());
    return n;
  }();
  return none;
}

std::vector<float> normal(size_t n, uint32_t seed, float sd) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

/// W [n_out, n_in] of `t` quantised from normal values, in host memory.
struct HostMatrix {
  std::vector<std::byte> bytes;
  HostWeight view;
  HostMatrix(GgmlType t, int64_t n_out, int64_t n_in, uint32_t seed) {
    REQUIRE(cpu::can_quantize(t));
    const uint64_t rb = ggml_row_bytes(t, static_cast<uint64_t>(n_in));
    bytes.resize(rb * static_cast<uint64_t>(n_out));
    const std::vector<float> v = normal(static_cast<size_t>(n_out * n_in), seed, 0.5f);
    for (int64_t o = 0; o < n_out; ++o) cpu::quantize_row_ref(t, v.data() + o * n_in, bytes.data() + o * rb, n_in);
    view = HostWeight{t, bytes.data(), n_out, n_in, rb};
  }
  /// The dequantised matrix (what the weights mean), f32.
  std::vector<float> dequantised() const {
    std::vector<float> w(static_cast<size_t>(view.n_out * view.n_in));
    for (int64_t o = 0; o < view.n_out; ++o)
      cpu::dequantize_row(view.type, bytes.data() + o * view.row_bytes, w.data() + o * view.n_in, view.n_in);
    return w;
  }
};

/// max |a - b| / max |b| (b: the reference; 0 / 0 = 0).
double normalised_error(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    REQUIRE(std::isfinite(a[i]));
    num = std::max(num, std::abs(double(a[i]) - double(b[i])));
    den = std::max(den, std::abs(double(b[i])));
  }
  return den == 0 ? num : num / den;
}

bool is_plain(GgmlType t) { return t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16; }

const GgmlType kTypes[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q8_0,
                           GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1,
                           GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::MXFP4};

DeviceSpec gpu_spec(uint64_t capacity) {
  DeviceSpec s;
  s.kind = "gpu";
  s.index = 0;
  s.capacity_bytes = capacity;
  return s;
}

}  // namespace

TEST_CASE("gpu backend: registered exactly in CUDA builds; without a device, opening gpu:0 is one clear error") {
  bool registered = false;
  for (const DeviceBackendEntry& e : device_backends()) registered |= e.kind == "gpu";
  CHECK(registered == gpu_compiled());
  if (gpu_device_count() > 0) return;  // the other cases cover an existing device
  std::string msg;
  try {
    make_device_backend(gpu_spec(1 << 20));
  } catch (const Error& e) {
    msg = e.what();
  }
  INFO(msg);
  if (gpu_compiled()) CHECK(msg.find("gpu:0: no such CUDA device (0 usable") != std::string::npos);
  else CHECK(msg.find("no device backend \"gpu\" in this build") != std::string::npos);
}

#ifdef MOETIER_HAVE_CUDA

TEST_CASE("cuda gemv: every weight type against the dequantised product, odd n_out, 1..11 tokens" * doctest::skip(no_gpu())) {
  gpu::set_device(0);
  gpu::DevicePool pool("gpu:0", 1ull << 30);
  gpu::Stream stream;
  struct Shape {
    int64_t n_out, n_in;
  };
  const Shape shapes[] = {{1, 256}, {7, 512}, {33, 768}, {257, 256}};
  for (const GgmlType t : kTypes) {
    for (const Shape sh : shapes) {
      for (const int64_t m : {1, 3, 8, 11}) {
        CAPTURE(ggml_type_name(t));
        CAPTURE(sh.n_out);
        CAPTURE(sh.n_in);
        CAPTURE(m);
        const HostMatrix w(t, sh.n_out, sh.n_in, 1000 + static_cast<uint32_t>(sh.n_out));
        const std::vector<float> wf = w.dequantised();
        const std::vector<float> x = normal(static_cast<size_t>(m * sh.n_in), 7, 1.0f);
        const std::vector<float> bias = normal(static_cast<size_t>(sh.n_out), 9, 1.0f);
        std::vector<float> ref(static_cast<size_t>(m * sh.n_out));
        for (int64_t tk = 0; tk < m; ++tk)
          for (int64_t o = 0; o < sh.n_out; ++o) {
            double s = bias[static_cast<size_t>(o)];
            for (int64_t i = 0; i < sh.n_in; ++i) s += double(wf[o * sh.n_in + i]) * double(x[tk * sh.n_in + i]);
            ref[static_cast<size_t>(tk * sh.n_out + o)] = static_cast<float>(s);
          }
        gpu::DeviceBuffer dw = pool.allocate(w.bytes.size(), "w");
        gpu::DeviceBuffer dx = pool.allocate(x.size() * 4, "x");
        gpu::DeviceBuffer dy = pool.allocate(ref.size() * 4, "y");
        gpu::DeviceBuffer db = pool.allocate(bias.size() * 4, "bias");
        gpu::copy_h2d_async(dw.data(), w.bytes.data(), w.bytes.size(), stream, "w");
        gpu::copy_h2d_async(dx.data(), x.data(), x.size() * 4, stream, "x");
        gpu::copy_h2d_async(db.data(), bias.data(), bias.size() * 4, stream, "bias");
        gpu::gemv(w.view.rebased<MemoryKind::Device>(dw.data()), reinterpret_cast<const float*>(dx.data()), m,
                  reinterpret_cast<float*>(dy.data()), reinterpret_cast<const float*>(db.data()), stream.handle());
        std::vector<float> got(ref.size(), std::nanf(""));
        gpu::copy_d2h_async(got.data(), dy.data(), got.size() * 4, stream, "y");
        stream.synchronize("gemv test");
        CHECK(normalised_error(got, ref) < 1e-4);
      }
    }
  }
}

TEST_CASE("cuda gemv: its block decoders (run on the host) give cpu::dequantize_row's values bit for bit") {
  // Runs without a GPU: the decoders are host + device functions, so the GGUF block layouts the kernel
  // reads are checked here against the CPU's dequantisation, for every type and several rows.
  for (const GgmlType t : kTypes) {
    for (const int64_t n_in : {256, 768}) {
      CAPTURE(ggml_type_name(t));
      CAPTURE(n_in);
      const HostMatrix w(t, 5, n_in, 77 + static_cast<uint32_t>(n_in));
      const std::vector<float> ref = w.dequantised();
      std::vector<float> got(ref.size(), std::nanf(""));
      for (int64_t o = 0; o < 5; ++o)
        gpu::decode_row_on_host(t, w.bytes.data() + o * w.view.row_bytes, n_in, got.data() + o * n_in);
      CHECK(std::memcmp(got.data(), ref.data(), ref.size() * 4) == 0);
      // And they are not trivially equal: the values vary.
      CHECK(*std::max_element(ref.begin(), ref.end()) > *std::min_element(ref.begin(), ref.end()));
    }
  }
  CHECK_THROWS_AS(gpu::decode_row_on_host(GgmlType::Q2_K, nullptr, 256, nullptr), Error);
}

TEST_CASE("cuda gemv: declines types without a kernel and rows that are not whole 32-value chunks") {
  CHECK(gpu::gemv_declines(GgmlType::Q4_K, 512) == std::nullopt);
  CHECK(gpu::gemv_declines(GgmlType::Q2_K, 256)->find("no CUDA kernel for Q2_K") != std::string::npos);
  CHECK(gpu::gemv_declines(GgmlType::F32, 100)->find("multiple of 32") != std::string::npos);
  CHECK(gpu::gemv_declines(GgmlType::Q4_K, 32).has_value());  // not a whole 256-value block
  // Checked on the host before anything is launched (so these run without a device too).
  const DeviceWeight q2{GgmlType::Q2_K, nullptr, 4, 256, ggml_row_bytes(GgmlType::Q2_K, 256)};
  std::string msg;
  try {
    gpu::gemv(q2, nullptr, 1, nullptr, nullptr, nullptr);
  } catch (const Error& e) {
    msg = e.what();
  }
  CHECK(msg.find("no CUDA kernel for Q2_K") != std::string::npos);
  gpu::GpuFfn f;
  f.gate = DeviceWeight{GgmlType::Q8_0, nullptr, 64, 256, ggml_row_bytes(GgmlType::Q8_0, 256)};
  f.up = f.gate;
  f.down = DeviceWeight{GgmlType::Q8_0, nullptr, 256, 96, ggml_row_bytes(GgmlType::Q8_0, 96)};  // n_in != n_ff
  msg.clear();
  try {
    gpu::ffn_forward(f, nullptr, 1, nullptr, nullptr, gpu::FfnActivation::SwiGLU, nullptr);
  } catch (const Error& e) {
    msg = e.what();
  }
  CHECK(msg.find("matrices do not fit each other") != std::string::npos);
}

#endif  // MOETIER_HAVE_CUDA

TEST_CASE("gpu backend: the FFN on gpu:0 matches CpuFfn for every type, both activations, with and without biases" * doctest::skip(no_gpu())) {
  ThreadPool pool(1);
  LinearExec lin(&pool);
  CpuFfn cpu_ffn(lin);
  auto dev = make_device_backend(gpu_spec(256ull << 20));
  const int64_t n_embd = 512, n_ff = 768;
  int32_t expert = 0;
  for (const GgmlType t : kTypes) {
    for (const bool biases : {false, true}) {
      for (const FfnAct act : {FfnAct::SwiGLU, FfnAct::SwiGLUClampedOss}) {
        CAPTURE(ggml_type_name(t));
        CAPTURE(biases);
        CAPTURE(static_cast<int>(act));
        const uint32_t seed = 50 + static_cast<uint32_t>(expert);
        const HostMatrix gate(t, n_ff, n_embd, seed), up(t, n_ff, n_embd, seed + 1), down(t, n_embd, n_ff, seed + 2);
        const std::vector<float> bg = normal(n_ff, seed + 3, 0.5f), bu = normal(n_ff, seed + 4, 0.5f),
                                 bd = normal(n_embd, seed + 5, 0.5f);
        HostFfn w;
        w.gate = gate.view;
        w.up = up.view;
        w.down = down.view;
        if (biases) {
          w.gate_bias = bg.data();
          w.up_bias = bu.data();
          w.down_bias = bd.data();
        }
        const FfnKey key{0, expert++};
        dev->place(key, w);
        REQUIRE(dev->holds(key));
        for (const int64_t m : {1, 3, 8}) {
          CAPTURE(m);
          const std::vector<float> x = normal(static_cast<size_t>(m * n_embd), seed + 6, 1.0f);
          std::vector<float> ref(x.size()), got(x.size(), std::nanf(""));
          cpu_ffn.new_input();
          cpu_ffn.run(w, x.data(), m, ref.data(), act, FfnKind::Routed);
          ExpertGroup g;
          g.key = key;
          g.x = x.data();
          g.y = got.data();
          g.n_tokens = m;
          g.n_embd = n_embd;
          g.act = act;
          dev->wait(dev->run(g));
          CHECK(normalised_error(got, ref) < (is_plain(t) ? 1e-2 : 5e-2));
        }
      }
    }
  }
  CHECK(dev->used_bytes() <= dev->capacity_bytes());
  CHECK(dev->stats().groups == static_cast<uint64_t>(expert) * 3);
}

TEST_CASE("gpu backend: refusals, budget, in-order tickets and evict" * doctest::skip(no_gpu())) {
  const HostMatrix gate(GgmlType::Q8_0, 256, 256, 1), up(GgmlType::Q8_0, 256, 256, 2), down(GgmlType::Q8_0, 256, 256, 3);
  HostFfn w;
  w.gate = gate.view;
  w.up = up.view;
  w.down = down.view;
  auto dev = make_device_backend(gpu_spec(w.bytes() + 4096));
  CHECK(dev->supports(GgmlType::Q8_0, 1, MemoryKind::Host).has_value());
  CHECK(dev->supports(GgmlType::Q2_K, 1, MemoryKind::Device).has_value());
  CHECK(dev->supports(GgmlType::Q8_0, 0, MemoryKind::Device).has_value());
  CHECK(!dev->supports(GgmlType::Q8_0, 1, MemoryKind::Device).has_value());
  dev->place({1, 0}, w);
  CHECK_THROWS_AS(dev->place({1, 0}, w), Error);  // already held
  std::string msg;
  try {
    dev->place({1, 1}, w);  // over the budget
  } catch (const Error& e) {
    msg = e.what();
  }
  CHECK(msg.find("out of device memory") != std::string::npos);
  CHECK(!dev->holds({1, 1}));
  CHECK(dev->used_bytes() <= dev->capacity_bytes());
  const std::vector<float> x = normal(4 * 256, 5, 1.0f);
  std::vector<float> y1(x.size()), y2(x.size());
  ExpertGroup g;
  g.key = {2, 0};  // not held
  g.x = x.data();
  g.y = y1.data();
  g.n_tokens = 4;
  g.n_embd = 256;
  CHECK_THROWS_AS(dev->run(g), Error);
  g.key = {1, 0};
  const uint64_t t1 = dev->run(g);
  g.y = y2.data();
  const uint64_t t2 = dev->run(g);
  CHECK(t2 == t1 + 1);
  CHECK_THROWS_AS(dev->wait(t2 + 1), Error);  // never issued
  dev->wait(t2);                              // covers t1 too
  CHECK(std::memcmp(y1.data(), y2.data(), y1.size() * 4) == 0);
  dev->evict({1, 0});
  CHECK(!dev->holds({1, 0}));
  CHECK(dev->used_bytes() == 0);
}

TEST_CASE("gpu backend: a tiny synth MoE model with its experts and non-expert FFNs on gpu:0 decodes the CPU's tokens" * doctest::skip(no_gpu())) {
  test::TempDir dir;
  for (const GgmlType t : {GgmlType::Q8_0, GgmlType::Q4_K}) {
    CAPTURE(ggml_type_name(t));
    const std::string path = dir.file("tiny-" + std::string(ggml_type_name(t)) + ".gguf");
    test::write_tiny_model(path, "tiny-qwen3moe", t);
    test::LoadedModel lm(path);
    models::Model& m = *lm.model;
    const auto prompt = test::test_prompt(m, 9);
    constexpr int kSteps = 6;
    const std::vector<float> ref = test::run_steps(m, prompt, kSteps);
    auto dev = make_device_backend(gpu_spec(512ull << 20));
    const auto all = [](offload::ExpertId) { return true; };
    tiered::place_on_device(m, *dev, all, true);
    m.executor().set_device(dev.get());
    std::vector<float> got;
    try {
      got = test::run_steps(m, prompt, kSteps);
    } catch (...) {
      m.executor().set_device(nullptr);
      throw;
    }
    m.executor().set_device(nullptr);
    REQUIRE(got.size() == ref.size());
    CHECK(dev->stats().groups > 0);
    const size_t n_vocab = static_cast<size_t>(m.hparams().n_vocab);
    for (size_t s = 0; s * n_vocab < ref.size(); ++s) {
      CAPTURE(s);
      const std::vector<float> a(got.begin() + s * n_vocab, got.begin() + (s + 1) * n_vocab);
      const std::vector<float> b(ref.begin() + s * n_vocab, ref.begin() + (s + 1) * n_vocab);
      CHECK(std::max_element(a.begin(), a.end()) - a.begin() == std::max_element(b.begin(), b.end()) - b.begin());
      CHECK(normalised_error(a, b) < 5e-2);  // logits: quantised activations on the CPU only
    }
  }
}
