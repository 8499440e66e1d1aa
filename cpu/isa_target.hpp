// Per-file instruction-set targets for the SIMD / AMX translation units, for GCC and clang alike:
//   MOETIER_TARGET_PUSH("avx2,fma,f16c")  ... functions ...  MOETIER_TARGET_POP()
// (GCC: push_options + target; clang: an attribute applied to every function in between). Also
// MOETIER_INTRINSIC_WARNINGS_OFF() / _ON(): GCC 12 flags the _mm512_undefined_* operands inside its own
// broadcast / insert / extract intrinsics as uninitialised.
#pragma once

#define MOETIER_PRAGMA(x) _Pragma(#x)

#if defined(__clang__)
#define MOETIER_TARGET_PUSH(t) MOETIER_PRAGMA(clang attribute push(__attribute__((target(t))), apply_to = function))
#define MOETIER_TARGET_POP() MOETIER_PRAGMA(clang attribute pop)
#define MOETIER_INTRINSIC_WARNINGS_OFF() \
  MOETIER_PRAGMA(clang diagnostic push) MOETIER_PRAGMA(clang diagnostic ignored "-Wuninitialized")
#define MOETIER_INTRINSIC_WARNINGS_ON() MOETIER_PRAGMA(clang diagnostic pop)
#else
#define MOETIER_TARGET_PUSH(t) MOETIER_PRAGMA(GCC push_options) MOETIER_PRAGMA(GCC target(t))
#define MOETIER_TARGET_POP() MOETIER_PRAGMA(GCC pop_options)
#define MOETIER_INTRINSIC_WARNINGS_OFF()                                                              \
  MOETIER_PRAGMA(GCC diagnostic push) MOETIER_PRAGMA(GCC diagnostic ignored "-Wuninitialized") \
      MOETIER_PRAGMA(GCC diagnostic ignored "-Wmaybe-uninitialized")
#define MOETIER_INTRINSIC_WARNINGS_ON() MOETIER_PRAGMA(GCC diagnostic pop)
#endif
