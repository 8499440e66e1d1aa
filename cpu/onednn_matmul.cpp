// oneDNN matmul (see onednn_matmul.hpp). oneDNN's matmul computes dst[M,N] = src[M,K] · weights[K,N];
// our W [N, K] row-major is that weights tensor with format_tag::ba (strides {1, K}).
#include "cpu/onednn_matmul.hpp"

#include "common/error.hpp"

#include <dnnl.hpp>

#include <optional>
#include <unordered_map>
#include <vector>

namespace moetier::cpu {
namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

dt to_dnnl(MatmulType t) {
  switch (t) {
    case MatmulType::F32: return dt::f32;
    case MatmulType::F16: return dt::f16;
    case MatmulType::BF16: return dt::bf16;
  }
  return dt::undef;
}

std::string key_string(const MatmulKey& k) {
  return fmt::format("M={} N={} K={} X {} W {}{}{}", k.m, k.n, k.k, to_string(k.x_type), to_string(k.w_type),
                     k.packed_weights ? " packed" : "", k.ldy != 0 ? fmt::format(" ldy={}", k.ldy) : "");
}

}  // namespace

const char* to_string(MatmulType t) {
  switch (t) {
    case MatmulType::F32: return "f32";
    case MatmulType::F16: return "f16";
    case MatmulType::BF16: return "bf16";
  }
  return "?";
}

size_t type_size(MatmulType t) { return t == MatmulType::F32 ? 4 : 2; }

struct OnednnMatmul::Engine {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
};

struct MatmulPlan::Impl {
  dnnl::matmul gemm;
  dnnl::memory::desc weights_md;  // what the GEMM reads (packed layout when packed_weights)
  dnnl::memory x_user, x_gemm, w_user, w_gemm, y;  // handles set per call
  std::unordered_map<int, dnnl::memory> gemm_args;
  // Conversions (absent when not needed): X to the compute type; W to the compute type (unpacked only).
  bool convert_x = false, convert_w = false;
  dnnl::reorder x_reorder, w_reorder;
  std::unordered_map<int, dnnl::memory> x_reorder_args, w_reorder_args;
  AlignedBuffer x_scratch, w_scratch;
  dnnl::reorder pack_reorder;  // user W -> packed layout (packed_weights only)
};

MatmulPlan::~MatmulPlan() = default;

size_t MatmulPlan::packed_weight_bytes() const { return key_.packed_weights ? impl_->weights_md.get_size() : 0; }

OnednnMatmul::OnednnMatmul() {
  try {
    engine_ = std::make_unique<Engine>();
  } catch (const dnnl::error& e) {
    fail("oneDNN: cannot create the CPU engine: {}", e.what());
  }
}

OnednnMatmul::~OnednnMatmul() = default;

MatmulPlan& OnednnMatmul::plan(const MatmulKey& key) {
  if (auto it = plans_.find(key); it != plans_.end()) return *it->second;
  if (key.m <= 0 || key.n <= 0 || key.k <= 0) fail("oneDNN matmul: dimensions must be positive ({})", key_string(key));
  if (key.ldy != 0 && key.ldy < key.n) fail("oneDNN matmul: ldy must be 0 or >= N ({})", key_string(key));
  if (key.x_type == MatmulType::F16) fail("oneDNN matmul: X in f16 is not supported ({})", key_string(key));

  // Candidate compute types in order of preference; the first oneDNN accepts wins.
  std::vector<MatmulType> candidates;
  if (key.w_type == MatmulType::BF16) candidates.push_back(MatmulType::BF16);
  candidates.push_back(MatmulType::F32);

  auto plan = std::unique_ptr<MatmulPlan>(new MatmulPlan());
  plan->key_ = key;
  plan->impl_ = std::make_unique<MatmulPlan::Impl>();
  MatmulPlan::Impl& im = *plan->impl_;
  const dnnl::engine& eng = engine_->engine;
  const dnnl::memory::dims x_dims{key.m, key.k}, w_dims{key.k, key.n}, y_dims{key.m, key.n};
  std::string declined;
  try {
    const dnnl::memory::desc y_md(y_dims, dt::f32, dnnl::memory::dims{key.ldy != 0 ? key.ldy : key.n, 1});
    std::optional<dnnl::matmul::primitive_desc> pd;
    for (MatmulType ct : candidates) {
      const dnnl::memory::desc x_md(x_dims, to_dnnl(ct), tag::ab);
      const dnnl::memory::desc w_md(w_dims, to_dnnl(ct), key.packed_weights ? tag::any : tag::ba);
      dnnl::matmul::primitive_desc candidate(dnnl::matmul::desc(x_md, w_md, y_md), eng, /*allow_empty=*/true);
      if (candidate) {
        pd = candidate;
        plan->compute_type_ = ct;
        break;
      }
      declined += fmt::format("{}{} compute: no implementation", declined.empty() ? "" : "; ", to_string(ct));
    }
    if (!pd) fail("oneDNN matmul: no implementation for {} ({})", key_string(key), declined);
    const MatmulType ct = plan->compute_type_;
    plan->implementation_ = pd->impl_info_str();
    if (!declined.empty()) plan->implementation_ += " (" + declined + ")";
    im.gemm = dnnl::matmul(*pd);
    im.weights_md = pd->weights_desc();

    const dnnl::memory::desc x_user_md(x_dims, to_dnnl(key.x_type), tag::ab);
    const dnnl::memory::desc x_gemm_md(x_dims, to_dnnl(ct), tag::ab);
    const dnnl::memory::desc w_user_md(w_dims, to_dnnl(key.w_type), tag::ba);
    im.x_user = dnnl::memory(x_user_md, eng, DNNL_MEMORY_NONE);
    im.w_user = dnnl::memory(w_user_md, eng, DNNL_MEMORY_NONE);
    im.y = dnnl::memory(y_md, eng, DNNL_MEMORY_NONE);
    im.w_gemm = dnnl::memory(im.weights_md, eng, DNNL_MEMORY_NONE);

    im.convert_x = key.x_type != ct;
    if (im.convert_x) {
      im.x_scratch = AlignedBuffer(x_gemm_md.get_size());
      im.x_gemm = dnnl::memory(x_gemm_md, eng, im.x_scratch.data());
      im.x_reorder = dnnl::reorder(im.x_user, im.x_gemm);
      im.x_reorder_args = {{DNNL_ARG_FROM, im.x_user}, {DNNL_ARG_TO, im.x_gemm}};
    } else {
      im.x_gemm = im.x_user;
    }
    if (key.packed_weights) {
      im.pack_reorder = dnnl::reorder(im.w_user, im.w_gemm);
    } else {
      im.convert_w = key.w_type != ct;
      if (im.convert_w) {
        im.w_scratch = AlignedBuffer(im.weights_md.get_size());
        im.w_gemm.set_data_handle(im.w_scratch.data());
        im.w_reorder = dnnl::reorder(im.w_user, im.w_gemm);
        im.w_reorder_args = {{DNNL_ARG_FROM, im.w_user}, {DNNL_ARG_TO, im.w_gemm}};
      } else {
        im.w_gemm = im.w_user;
      }
    }
    im.gemm_args = {{DNNL_ARG_SRC, im.x_gemm}, {DNNL_ARG_WEIGHTS, im.w_gemm}, {DNNL_ARG_DST, im.y}};
  } catch (const dnnl::error& e) {
    fail("oneDNN matmul: planning {} failed: {}", key_string(key), e.what());
  }
  MatmulPlan& ref = *plan;
  plans_.emplace(key, std::move(plan));
  return ref;
}

void OnednnMatmul::execute(MatmulPlan& plan, const void* x, const void* w, float* y) {
  if (plan.key_.packed_weights)
    fail("oneDNN matmul: plan {} expects packed weights (use pack())", key_string(plan.key_));
  MatmulPlan::Impl& im = *plan.impl_;
  dnnl::stream& s = engine_->stream;
  try {
    im.x_user.set_data_handle(const_cast<void*>(x));
    im.w_user.set_data_handle(const_cast<void*>(w));
    im.y.set_data_handle(y);
    if (im.convert_x) im.x_reorder.execute(s, im.x_reorder_args);
    if (im.convert_w) im.w_reorder.execute(s, im.w_reorder_args);
    im.gemm.execute(s, im.gemm_args);
    s.wait();
  } catch (const dnnl::error& e) {
    fail("oneDNN matmul: executing {} failed: {}", key_string(plan.key_), e.what());
  }
}

PackedWeights OnednnMatmul::pack(MatmulPlan& plan, const void* w) {
  if (!plan.key_.packed_weights)
    fail("oneDNN matmul: plan {} was not made for packed weights", key_string(plan.key_));
  MatmulPlan::Impl& im = *plan.impl_;
  PackedWeights out;
  out.key_ = plan.key_;
  out.buffer_ = AlignedBuffer(im.weights_md.get_size(), 4096);
  try {
    im.w_user.set_data_handle(const_cast<void*>(w));
    im.w_gemm.set_data_handle(out.buffer_.data());
    im.pack_reorder.execute(engine_->stream, {{DNNL_ARG_FROM, im.w_user}, {DNNL_ARG_TO, im.w_gemm}});
    engine_->stream.wait();
  } catch (const dnnl::error& e) {
    fail("oneDNN matmul: packing weights for {} failed: {}", key_string(plan.key_), e.what());
  }
  return out;
}

void OnednnMatmul::execute(MatmulPlan& plan, const void* x, const PackedWeights& w, float* y) {
  if (!(w.key_ == plan.key_))
    fail("oneDNN matmul: weights packed for {} used with plan {}", key_string(w.key_), key_string(plan.key_));
  MatmulPlan::Impl& im = *plan.impl_;
  dnnl::stream& s = engine_->stream;
  try {
    im.x_user.set_data_handle(const_cast<void*>(x));
    im.w_gemm.set_data_handle(const_cast<void*>(w.data()));
    im.y.set_data_handle(y);
    if (im.convert_x) im.x_reorder.execute(s, im.x_reorder_args);
    im.gemm.execute(s, im.gemm_args);
    s.wait();
  } catch (const dnnl::error& e) {
    fail("oneDNN matmul: executing {} failed: {}", key_string(plan.key_), e.what());
  }
}

}  // namespace moetier::cpu
