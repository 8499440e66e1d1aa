#include "cpu/cpu_features.hpp"

#include <cstdlib>
#include <string_view>

namespace moetier::cpu {

std::string CpuFeatures::to_string() const {
  std::string s;
  auto add = [&](bool on, const char* n) {
    if (!on) return;
    if (!s.empty()) s += ' ';
    s += n;
  };
  add(avx2, "AVX2");
  add(avx512, "AVX512");
  add(avx512_vnni, "AVX512_VNNI");
  add(avx512_bf16, "AVX512_BF16");
  return s.empty() ? std::string("scalar") : s;
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = [] {
    CpuFeatures r;
    __builtin_cpu_init();
    r.avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    r.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl");
    r.avx512_vnni = r.avx512 && __builtin_cpu_supports("avx512vnni");
    r.avx512_bf16 = r.avx512 && __builtin_cpu_supports("avx512bf16");
    if (const char* cap = std::getenv("MOETIER_ISA")) {
      std::string_view c(cap);
      if (c == "scalar") r = CpuFeatures{};
      if (c == "avx2") r.avx512 = r.avx512_vnni = r.avx512_bf16 = false;
    }
    return r;
  }();
  return f;
}

}  // namespace moetier::cpu
