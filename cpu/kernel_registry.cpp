// Kernel registry and the scalar reference kernels (see kernel_registry.hpp).
#include "cpu/kernel_registry.hpp"

#include <algorithm>
#include <fmt/format.h>
#include <vector>

#include "cpu/vec_dot.hpp"

namespace moetier::cpu {
namespace detail {

void gemv_scalar(GgmlType weight_type, const GemvArgs& a) {
  for (int64_t r = a.row_begin; r < a.row_end; ++r) {
    const std::byte* wr = a.w + static_cast<size_t>(r) * a.w_row_bytes;
    for (int t = 0; t < a.n_tokens; ++t)
      a.y[t * a.ldy + r] = vec_dot_scalar(weight_type, wr, a.act + static_cast<size_t>(t) * a.act_stride, a.n_in);
  }
}

}  // namespace detail

namespace {

template <GgmlType kType>
void scalar_kernel(const GemvArgs& a) {
  detail::gemv_scalar(kType, a);
}

#define MOETIER_SCALAR(T, name) GemvKernel{GgmlType::T, Isa::kScalar, name, 1, kMaxKernelTokens, &scalar_kernel<GgmlType::T>}
constexpr GemvKernel kScalarKernels[] = {
    MOETIER_SCALAR(F32, "f32.scalar"),   MOETIER_SCALAR(F16, "f16.scalar"),   MOETIER_SCALAR(BF16, "bf16.scalar"),
    MOETIER_SCALAR(Q4_0, "q4_0.scalar"), MOETIER_SCALAR(Q4_1, "q4_1.scalar"), MOETIER_SCALAR(Q5_0, "q5_0.scalar"),
    MOETIER_SCALAR(Q5_1, "q5_1.scalar"), MOETIER_SCALAR(Q8_0, "q8_0.scalar"), MOETIER_SCALAR(MXFP4, "mxfp4.scalar"),
    MOETIER_SCALAR(Q2_K, "q2_k.scalar"), MOETIER_SCALAR(Q3_K, "q3_k.scalar"), MOETIER_SCALAR(Q4_K, "q4_k.scalar"),
    MOETIER_SCALAR(Q5_K, "q5_k.scalar"), MOETIER_SCALAR(Q6_K, "q6_k.scalar"),
    MOETIER_SCALAR(IQ2_XXS, "iq2_xxs.scalar"), MOETIER_SCALAR(IQ2_XS, "iq2_xs.scalar"),
    MOETIER_SCALAR(IQ2_S, "iq2_s.scalar"), MOETIER_SCALAR(IQ3_XXS, "iq3_xxs.scalar"),
    MOETIER_SCALAR(IQ3_S, "iq3_s.scalar"), MOETIER_SCALAR(IQ1_S, "iq1_s.scalar"),
    MOETIER_SCALAR(IQ1_M, "iq1_m.scalar"), MOETIER_SCALAR(IQ4_NL, "iq4_nl.scalar"),
    MOETIER_SCALAR(IQ4_XS, "iq4_xs.scalar"),
};
#undef MOETIER_SCALAR

const std::vector<GemvKernel>& all_kernels() {
  static const std::vector<GemvKernel> v = [] {
    std::vector<GemvKernel> k;
    for (const auto& e : detail::avx512_gemv_kernels()) k.push_back(e);
    for (const auto& e : detail::avx2_gemv_kernels()) k.push_back(e);
    for (const auto& e : kScalarKernels) k.push_back(e);
    std::stable_sort(k.begin(), k.end(), [](const GemvKernel& a, const GemvKernel& b) { return a.isa > b.isa; });
    return k;
  }();
  return v;
}

}  // namespace

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return "scalar";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
    case Isa::kAmx: return "amx";
  }
  return "?";
}

Isa best_isa(const CpuFeatures& f) {
  if (f.avx512 && f.avx512_vnni && f.avx2) return f.amx_int8 ? Isa::kAmx : Isa::kAvx512;
  if (f.avx2) return Isa::kAvx2;
  return Isa::kScalar;
}

std::span<const GemvKernel> gemv_kernels() { return all_kernels(); }

const GemvKernel* select_gemv(GgmlType weight_type, int n_tokens, Isa max_isa) {
  for (const auto& k : all_kernels())
    if (k.weight_type == weight_type && k.isa <= max_isa && n_tokens >= k.min_tokens && n_tokens <= k.max_tokens)
      return &k;
  return nullptr;
}

std::string explain_gemv(GgmlType weight_type, int n_tokens, const CpuFeatures& f) {
  const Isa allowed = best_isa(f);
  const GemvKernel* chosen = select_gemv(weight_type, n_tokens, allowed);
  std::string out;
  for (const auto& k : all_kernels()) {
    if (k.weight_type != weight_type) continue;
    std::string why;
    if (&k == chosen)
      why = "chosen";
    else if (k.isa > allowed)
      why = fmt::format("declined: needs {} (allowed up to {}: CPU features '{}', MOETIER_ISA may cap)",
                        isa_name(k.isa), isa_name(allowed), f.to_string());
    else if (n_tokens < k.min_tokens || n_tokens > k.max_tokens)
      why = fmt::format("declined: takes {}..{} tokens, asked {}", k.min_tokens, k.max_tokens, n_tokens);
    else
      why = "declined: a better variant was chosen";
    out += fmt::format("{}: {}\n", k.name, why);
  }
  if (out.empty()) out = fmt::format("{}: no CPU kernel\n", ggml_type_name(weight_type));
  return out;
}

}  // namespace moetier::cpu
