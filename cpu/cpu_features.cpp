#include "cpu/cpu_features.hpp"

#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

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
  add(amx_int8, "AMX_INT8");
  return s.empty() ? std::string("scalar") : s;
}

namespace {

// CPUID.(EAX=7, ECX=0):EDX bit 24 AMX-TILE, bit 25 AMX-INT8; then Linux must grant the XTILEDATA state
// (feature 18) to the process before the first tile instruction (Documentation/arch/x86/xstate.rst).
bool detect_amx_int8() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  if (!((d >> 24) & 1u) || !((d >> 25) & 1u)) return false;
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = [] {
    CpuFeatures r;
    __builtin_cpu_init();
    r.avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    r.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl");
    r.avx512_vnni = r.avx512 && __builtin_cpu_supports("avx512vnni");
    r.avx512_bf16 = r.avx512 && __builtin_cpu_supports("avx512bf16");
    r.amx_int8 = r.avx512_vnni && detect_amx_int8();
    if (const char* cap = std::getenv("MOETIER_ISA")) {
      std::string_view c(cap);
      if (c == "scalar") r = CpuFeatures{};
      if (c == "avx2") r.avx512 = r.avx512_vnni = r.avx512_bf16 = false;
      if (c == "avx2" || c == "avx512") r.amx_int8 = false;
    }
    return r;
  }();
  return f;
}

}  // namespace moetier::cpu
