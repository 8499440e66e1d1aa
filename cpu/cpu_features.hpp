// CPU feature detection (CPUID via the compiler's __builtin_cpu_supports) for run-time kernel dispatch.
#pragma once

#include <string>

namespace moetier::cpu {

/// ISA levels the kernels are built for; dispatch picks the best one the CPU supports.
struct CpuFeatures {
  bool avx2 = false;         // AVX2 + FMA + F16C
  bool avx512 = false;       // AVX-512 F + BW + VL
  bool avx512_vnni = false;  // AVX512_VNNI (vpdpbusd)
  bool avx512_bf16 = false;  // AVX512_BF16 (vdpbf16ps)
  /// AMX-TILE + AMX-INT8 (Intel Sapphire Rapids and later) with the tile data state granted to this process
  /// by Linux (arch_prctl ARCH_REQ_XCOMP_PERM, requested once by cpu_features()).
  bool amx_int8 = false;
  /// e.g. "AVX2 AVX512 AVX512_VNNI AVX512_BF16 AMX_INT8"
  std::string to_string() const;
};

/// Features of the running CPU (detected once). MOETIER_ISA=scalar|avx2|avx512 caps the level (tests and
/// comparisons; avx512 turns AMX off).
const CpuFeatures& cpu_features();

}  // namespace moetier::cpu
