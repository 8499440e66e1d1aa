// Test helpers: an independent, element-at-a-time reading of the ggml block formats (written from the
// format description, not from cpu/dequant.cpp's loops), random valid rows, and error-bound magnitudes.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "common/ggml_type.hpp"
#include "common/half.hpp"

namespace moetier::test {

inline uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline int bit(const uint8_t* bytes, int i) { return (bytes[i / 8] >> (i % 8)) & 1; }

/// One element split into its quantised parts: value = scale * level - min (Q4_1/Q5_1: + min).
/// `value` is computed with ggml's f32 evaluation order (rounded products, no FMA).
struct Element {
  float value;
  double scale_level;  // |scale * level| (magnitude of the scaled part, exact in double)
  double min;          // |min part|
};

/// e2m1 code -> real value (sign bit 3, exponent bits 1-2 with bias 1, mantissa bit 0), from the OCP spec.
inline double e2m1_value(int code) {
  const int sign = code >> 3, ex = (code >> 1) & 3, man = code & 1;
  const double mag = ex == 0 ? 0.5 * man : (1.0 + 0.5 * man) * std::ldexp(1.0, ex - 1);
  return sign ? -mag : mag;
}

/// Element i of a row of `type` (row = start of the row's bytes).
inline Element read_element(GgmlType type, const uint8_t* row, int64_t i) {
  auto f16 = [](const uint8_t* p) { return fp16_to_f32(rd16(p)); };
  switch (type) {
    case GgmlType::F32: {
      float v;
      std::memcpy(&v, row + 4 * i, 4);
      return {v, std::fabs(v), 0};
    }
    case GgmlType::F16: { const float v = f16(row + 2 * i); return {v, std::fabs(v), 0}; }
    case GgmlType::BF16: { const float v = bf16_to_f32(rd16(row + 2 * i)); return {v, std::fabs(v), 0}; }
    default: break;
  }
  const auto& info = ggml_type_info(type);
  const uint8_t* b = row + (i / info.block_size) * info.type_size;
  const int e = static_cast<int>(i % info.block_size);
  // 32-element formats: element e < 16 is the low nibble of byte e, e >= 16 the high nibble of byte e-16.
  auto nib32 = [](const uint8_t* qs, int e) { return e < 16 ? (qs[e] & 15) : (qs[e - 16] >> 4); };
  switch (type) {
    case GgmlType::Q4_0: {
      const float d = f16(b);
      const int q = nib32(b + 2, e) - 8;
      return {static_cast<float>(q) * d, std::fabs(double(q) * d), 0};
    }
    case GgmlType::Q4_1: {
      const float d = f16(b), m = f16(b + 2);
      const int q = nib32(b + 4, e);
      return {static_cast<float>(q) * d + m, std::fabs(double(q) * d), std::fabs(m)};
    }
    case GgmlType::Q5_0: {
      const float d = f16(b);
      const int q = (nib32(b + 6, e) | (bit(b + 2, e) << 4)) - 16;
      return {static_cast<float>(q) * d, std::fabs(double(q) * d), 0};
    }
    case GgmlType::Q5_1: {
      const float d = f16(b), m = f16(b + 2);
      const int q = nib32(b + 8, e) | (bit(b + 4, e) << 4);
      return {static_cast<float>(q) * d + m, std::fabs(double(q) * d), std::fabs(m)};
    }
    case GgmlType::Q8_0: {
      const float d = f16(b);
      const int q = static_cast<int8_t>(b[2 + e]);
      return {static_cast<float>(q) * d, std::fabs(double(q) * d), 0};
    }
    case GgmlType::MXFP4: {
      const int code = nib32(b + 1, e);
      // Exact in f32 (powers of two). ggml's integer table maps code 8 (-0) to 0, so it yields +0.
      const double v = e2m1_value(code) * std::ldexp(1.0, b[0] - 127) + 0.0;
      return {static_cast<float>(v), std::fabs(v), 0};
    }
    case GgmlType::Q2_K: {  // scales[16] qs[64] d dmin
      const int sub = e / 16, half = e / 128, s = (e % 128) / 32, l = e % 32;
      const int q = (b[16 + 32 * half + l] >> (2 * s)) & 3;
      const float dl = f16(b + 80) * static_cast<float>(b[sub] & 15);
      const float ml = f16(b + 82) * static_cast<float>(b[sub] >> 4);
      return {dl * static_cast<float>(q) - ml, std::fabs(double(dl) * q), std::fabs(ml)};
    }
    case GgmlType::Q3_K: {  // hmask[32] qs[64] scales[12] d
      const int sub = e / 16, half = e / 128, s = (e % 128) / 32, l = e % 32;
      const uint8_t* sc = b + 96;
      const int low4 = sub < 8 ? (sc[sub] & 15) : (sc[sub - 8] >> 4);
      const int high2 = (sc[8 + sub % 4] >> (2 * (sub / 4))) & 3;
      const int scale = (low4 + 16 * high2) - 32;
      const int q = ((b[32 + 32 * half + l] >> (2 * s)) & 3) - (((b[l] >> (4 * half + s)) & 1) ? 0 : 4);
      const float dl = f16(b + 108) * static_cast<float>(scale);
      return {dl * static_cast<float>(q), std::fabs(double(dl) * q), 0};
    }
    case GgmlType::Q4_K:
    case GgmlType::Q5_K: {  // d dmin scales[12] (qh[32]) qs[128]
      const bool q5 = type == GgmlType::Q5_K;
      const uint8_t* sc = b + 4;
      const uint8_t* qs = b + (q5 ? 48 : 16);
      const int sub = e / 32, chunk = e / 64, l = e % 32;
      // 6-bit scale/min of sub-block j: j < 4 in the low 6 bits of bytes j / j+4; j >= 4: low 4 bits from
      // byte j+4 (scale: low nibble, min: high nibble), top 2 bits from bits 6-7 of bytes j-4 / j.
      const int scale = sub < 4 ? (sc[sub] & 63) : ((sc[sub + 4] & 15) + 16 * (sc[sub - 4] >> 6));
      const int min = sub < 4 ? (sc[sub + 4] & 63) : ((sc[sub + 4] >> 4) + 16 * (sc[sub] >> 6));
      int q = (sub % 2 == 0) ? (qs[32 * chunk + l] & 15) : (qs[32 * chunk + l] >> 4);
      if (q5) q += 16 * ((b[16 + l] >> sub) & 1);
      const float dl = f16(b) * static_cast<float>(scale);
      const float ml = f16(b + 2) * static_cast<float>(min);
      return {dl * static_cast<float>(q) - ml, std::fabs(double(dl) * q), std::fabs(ml)};
    }
    case GgmlType::Q6_K: {  // ql[128] qh[64] scales[16] d
      const int half = e / 128, g = (e % 128) / 32, l = e % 32;
      const uint8_t qlb = b[64 * half + 32 * (g & 1) + l];
      const int low = g < 2 ? (qlb & 15) : (qlb >> 4);
      const int high = (b[128 + 32 * half + l] >> (2 * g)) & 3;
      const int q = low + 16 * high - 32;
      const int scale = static_cast<int8_t>(b[192 + e / 16]);
      const float v = f16(b + 208) * static_cast<float>(scale) * static_cast<float>(q);
      return {v, std::fabs(double(f16(b + 208)) * scale * q), 0};
    }
    default: return {NAN, 0, 0};
  }
}

/// A random finite fp16 with magnitude in [lo, hi), random sign if `sign`.
inline uint16_t random_f16(std::mt19937& rng, float lo, float hi, bool sign) {
  std::uniform_real_distribution<float> u(lo, hi);
  float v = u(rng);
  if (sign && (rng() & 1)) v = -v;
  return f32_to_fp16(v);
}

inline void put16(uint8_t* p, uint16_t v) { p[0] = static_cast<uint8_t>(v); p[1] = static_cast<uint8_t>(v >> 8); }

/// Fills a row of n elements of `type` with random bytes, then makes the scale fields finite and modest
/// (so sums stay far from overflow) while every quant/scale/min bit pattern stays random.
inline void randomize_row(GgmlType type, uint8_t* row, int64_t n, std::mt19937& rng) {
  const auto& info = ggml_type_info(type);
  const int64_t nb = n / info.block_size;
  const size_t bytes = static_cast<size_t>(nb) * info.type_size;
  for (size_t k = 0; k < bytes; ++k) row[k] = static_cast<uint8_t>(rng());
  if (type == GgmlType::F32) {
    std::normal_distribution<float> g(0, 1);
    for (int64_t i = 0; i < n; ++i) { const float v = g(rng); std::memcpy(row + 4 * i, &v, 4); }
    return;
  }
  if (type == GgmlType::F16 || type == GgmlType::BF16) {
    std::normal_distribution<float> g(0, 1);
    for (int64_t i = 0; i < n; ++i)
      put16(row + 2 * i, type == GgmlType::F16 ? f32_to_fp16(g(rng)) : f32_to_bf16(g(rng)));
    return;
  }
  for (int64_t k = 0; k < nb; ++k) {
    uint8_t* b = row + k * info.type_size;
    switch (type) {
      case GgmlType::Q4_0: case GgmlType::Q5_0: case GgmlType::Q8_0: put16(b, random_f16(rng, 1e-3f, 0.1f, true)); break;
      case GgmlType::Q4_1: case GgmlType::Q5_1:
        put16(b, random_f16(rng, 1e-3f, 0.1f, false));
        put16(b + 2, random_f16(rng, 1e-3f, 1.0f, true));
        break;
      case GgmlType::MXFP4: b[0] = static_cast<uint8_t>(110 + rng() % 20); break;
      case GgmlType::Q2_K: put16(b + 80, random_f16(rng, 1e-3f, 0.1f, false)); put16(b + 82, random_f16(rng, 1e-3f, 0.1f, false)); break;
      case GgmlType::Q3_K: put16(b + 108, random_f16(rng, 1e-3f, 0.1f, true)); break;
      case GgmlType::Q4_K: case GgmlType::Q5_K:
        put16(b, random_f16(rng, 1e-4f, 0.01f, false));
        put16(b + 2, random_f16(rng, 1e-4f, 0.01f, false));
        break;
      case GgmlType::Q6_K: put16(b + 208, random_f16(rng, 1e-4f, 0.01f, true)); break;
      // IQ types: every index / sign / scale bit pattern is valid; only the fp16 super-scale needs care.
      case GgmlType::IQ2_XXS: case GgmlType::IQ2_XS: case GgmlType::IQ2_S: case GgmlType::IQ3_XXS:
      case GgmlType::IQ3_S: case GgmlType::IQ1_S: case GgmlType::IQ4_NL: case GgmlType::IQ4_XS:
        put16(b, random_f16(rng, 1e-4f, 0.01f, true));
        break;
      case GgmlType::IQ1_M: {  // fp16 scale nibble k = top nibble of the k-th u16 of scales (offset 48)
        const uint16_t h = random_f16(rng, 1e-4f, 0.01f, true);
        for (int k = 0; k < 4; ++k)
          b[49 + 2 * k] = static_cast<uint8_t>((b[49 + 2 * k] & 0x0f) | (((h >> (4 * k)) & 15) << 4));
        break;
      }
      default: break;
    }
  }
}

/// n Gaussian values (mean 0, sd 1) plus a few outliers, deterministic for a seed.
inline std::vector<float> gaussian(int64_t n, uint32_t seed, float outlier = 4.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0, 1);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = g(rng);
  for (int64_t i = 0; i < n; i += 97) v[static_cast<size_t>(i)] *= outlier;
  return v;
}

}  // namespace moetier::test
