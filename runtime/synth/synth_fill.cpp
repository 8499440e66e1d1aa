#include "runtime/synth/synth_fill.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/error.hpp"
#include "common/half.hpp"
#include "cpu/iq_blocks.hpp"
#include "cpu/quant_blocks.hpp"

namespace moetier::synth {
namespace {

/// splitmix64 (Steele, Lea, Flood 2014): a counter-based generator; `state` advances by a constant.
struct Rng {
  uint64_t state;
  uint64_t next() {
    state += 0x9E3779B97F4A7C15ull;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, 1).
  float uniform() { return static_cast<float>(next() >> 40) * (1.0f / 16777216.0f); }
  /// Approximately N(0, 1): Irwin-Hall sum of four 16-bit uniforms, standardised (range +-3.46).
  float normal() {
    const uint64_t r = next();
    const uint32_t s = static_cast<uint32_t>(r & 0xFFFF) + static_cast<uint32_t>((r >> 16) & 0xFFFF) +
                       static_cast<uint32_t>((r >> 32) & 0xFFFF) + static_cast<uint32_t>(r >> 48);
    return (static_cast<float>(s) * (1.0f / 65536.0f) - 2.0f) * 1.7320508f;
  }
  void bytes(uint8_t* dst, size_t n) {
    for (size_t i = 0; i < n; i += 8) {
      const uint64_t r = next();
      std::memcpy(dst + i, &r, std::min<size_t>(8, n - i));
    }
  }
};

uint64_t mix64(uint64_t x) { return Rng{x}.next(); }

/// Per-tensor constants computed once; `gen` writes one unit (block or element group).
struct Ctx {
  FillSpec spec;
  float d = 0.0f;       // base scale of quantised blocks
  int mx_exp = 127;     // MXFP4 base exponent byte
};
using GenFn = void (*)(const Ctx&, Rng&, uint8_t*);

constexpr size_t kFloatGroup = 16;  // elements of F32/F16/BF16 drawn from one unit stream

float draw(const Ctx& c, Rng& r) {
  const float z = r.normal();
  return c.spec.kind == ValueKind::Norm ? 1.0f + 0.1f * z : z * c.spec.scale;
}

uint16_t fp16_of(float v) { return f32_to_fp16(v); }
/// Base scale jittered by +-25% so that blocks differ.
float jitter(const Ctx& c, Rng& r) { return c.d * (0.75f + 0.5f * r.uniform()); }

void gen_f32(const Ctx& c, Rng& r, uint8_t* dst) {
  for (size_t i = 0; i < kFloatGroup; ++i) {
    const float v = draw(c, r);
    std::memcpy(dst + 4 * i, &v, 4);
  }
}
void gen_f16(const Ctx& c, Rng& r, uint8_t* dst) {
  for (size_t i = 0; i < kFloatGroup; ++i) {
    const uint16_t h = f32_to_fp16(draw(c, r));
    std::memcpy(dst + 2 * i, &h, 2);
  }
}
void gen_bf16(const Ctx& c, Rng& r, uint8_t* dst) {
  for (size_t i = 0; i < kFloatGroup; ++i) {
    const uint16_t h = f32_to_bf16(draw(c, r));
    std::memcpy(dst + 2 * i, &h, 2);
  }
}
void gen_q8_0(const Ctx& c, Rng& r, uint8_t* dst) {
  cpu::BlockQ8_0 b;
  b.d = fp16_of(jitter(c, r));
  r.bytes(reinterpret_cast<uint8_t*>(b.qs), sizeof(b.qs));
  for (auto& q : b.qs)
    if (q == -128) q = -127;
  std::memcpy(dst, &b, sizeof(b));
}
void gen_q4_0(const Ctx& c, Rng& r, uint8_t* dst) {
  cpu::BlockQ4_0 b;
  b.d = fp16_of(jitter(c, r));
  r.bytes(b.qs, sizeof(b.qs));
  std::memcpy(dst, &b, sizeof(b));
}
void gen_q4_1(const Ctx& c, Rng& r, uint8_t* dst) {
  cpu::BlockQ4_1 b;
  const float d = jitter(c, r);
  b.d = fp16_of(d);
  b.m = fp16_of(-7.5f * d);
  r.bytes(b.qs, sizeof(b.qs));
  std::memcpy(dst, &b, sizeof(b));
}
void gen_q5_0(const Ctx& c, Rng& r, uint8_t* dst) {
  cpu::BlockQ5_0 b;
  b.d = fp16_of(jitter(c, r));
  r.bytes(b.qh, sizeof(b.qh));
  r.bytes(b.qs, sizeof(b.qs));
  std::memcpy(dst, &b, sizeof(b));
}
void gen_q5_1(const Ctx& c, Rng& r, uint8_t* dst) {
  cpu::BlockQ5_1 b;
  const float d = jitter(c, r);
  b.d = fp16_of(d);
  b.m = fp16_of(-15.5f * d);
  r.bytes(b.qh, sizeof(b.qh));
  r.bytes(b.qs, sizeof(b.qs));
  std::memcpy(dst, &b, sizeof(b));
}

/// 8 sub-block (scale, min) pairs, 6 bits each, packed as get_scale_min_k4 unpacks them. The min of
/// each sub-block is its scale times `mean_q / dmin_ratio`, so values are centred near zero.
void pack_k4_scales(Rng& r, float mean_q, float dmin_ratio, uint8_t s[12]) {
  uint8_t sc[8], m[8];
  for (int j = 0; j < 8; ++j) {
    sc[j] = static_cast<uint8_t>(32 + (r.next() & 31));
    const float mf = std::nearbyint(static_cast<float>(sc[j]) * mean_q / dmin_ratio);
    m[j] = static_cast<uint8_t>(std::clamp(mf, 0.0f, 63.0f));
  }
  for (int j = 0; j < 4; ++j) {
    s[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    s[j + 4] = static_cast<uint8_t>((m[j] & 63) | ((m[j + 4] >> 4) << 6));
    s[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
  }
}
void gen_q4_k(const Ctx& c, Rng& r, uint8_t* dst) {
  cpu::BlockQ4_K b;
  const float d = jitter(c, r);
  b.d = fp16_of(d);
  b.dmin = fp16_of(8.0f * d);
  pack_k4_scales(r, 7.5f, 8.0f, b.scales);
  r.bytes(b.qs, sizeof(b.qs));
  std::memcpy(dst, &b, sizeof(b));
}
void gen_q5_k(const Ctx& c, Rng& r, uint8_t* dst) {
  cpu::BlockQ5_K b;
  const float d = jitter(c, r);
  b.d = fp16_of(d);
  b.dmin = fp16_of(16.0f * d);
  pack_k4_scales(r, 15.5f, 16.0f, b.scales);
  r.bytes(b.qh, sizeof(b.qh));
  r.bytes(b.qs, sizeof(b.qs));
  std::memcpy(dst, &b, sizeof(b));
}
void gen_q6_k(const Ctx& c, Rng& r, uint8_t* dst) {
  cpu::BlockQ6_K b;
  r.bytes(b.ql, sizeof(b.ql));
  r.bytes(b.qh, sizeof(b.qh));
  for (auto& s : b.scales) s = static_cast<int8_t>(48 + (r.next() % 64));  // 48..111, mean ~80
  b.d = fp16_of(jitter(c, r));
  std::memcpy(dst, &b, sizeof(b));
}
void gen_mxfp4(const Ctx& c, Rng& r, uint8_t* dst) {
  cpu::BlockMxfp4 b;
  const int jit = static_cast<int>(r.next() % 3) - 1;
  b.e = static_cast<uint8_t>(std::clamp(c.mx_exp + jit, 1, 254));
  r.bytes(b.qs, sizeof(b.qs));
  std::memcpy(dst, &b, sizeof(b));
}

// IQ types: every grid index, sign and scale bit pattern is valid, so the packed fields are random bytes
// and only the fp16 super-scale is set (IQ4: with a random sign, as their level tables are not symmetric).
template <typename Block>
void gen_iq_random(const Ctx& c, Rng& r, uint8_t* dst) {
  Block b;
  r.bytes(reinterpret_cast<uint8_t*>(&b), sizeof(b));
  const uint16_t d = fp16_of(jitter(c, r));
  std::memcpy(&b, &d, 2);  // d is the first field of every IQ block but IQ1_M
  std::memcpy(dst, &b, sizeof(b));
}
template <typename Block>
void gen_iq4(const Ctx& c, Rng& r, uint8_t* dst) {
  Block b;
  r.bytes(reinterpret_cast<uint8_t*>(&b), sizeof(b));
  const uint16_t d = fp16_of(r.next() & 1 ? jitter(c, r) : -jitter(c, r));
  std::memcpy(&b, &d, 2);
  std::memcpy(dst, &b, sizeof(b));
}
void gen_iq1_m(const Ctx& c, Rng& r, uint8_t* dst) {
  cpu::BlockIQ1_M b;
  r.bytes(reinterpret_cast<uint8_t*>(&b), sizeof(b));
  const uint16_t d = fp16_of(jitter(c, r));
  for (int k = 0; k < 4; ++k)  // nibble k of the fp16 scale: top nibble of the k-th u16 of scales
    b.scales[2 * k + 1] = static_cast<uint8_t>((b.scales[2 * k + 1] & 0x0F) | (((d >> (4 * k)) & 15) << 4));
  std::memcpy(dst, &b, sizeof(b));
}

struct TypeGen {
  GgmlType type;
  GenFn fn;
  float q_std;  // standard deviation of the integer codes times the mean sub-block scale
};
// q_std: Q8_0 int8 uniform 73.3; Q4_0 (q-8) 4.61; Q4_1 4.61; Q5_0/Q5_1 9.23; Q4_K 4.61 * mean sc 47.5;
// Q5_K 9.23 * 47.5; Q6_K 18.5 * mean sc 79.5.
constexpr TypeGen kGens[] = {
    {GgmlType::F32, gen_f32, 1.0f},          {GgmlType::F16, gen_f16, 1.0f},
    {GgmlType::BF16, gen_bf16, 1.0f},        {GgmlType::Q8_0, gen_q8_0, 73.3f},
    {GgmlType::Q4_0, gen_q4_0, 4.61f},       {GgmlType::Q4_1, gen_q4_1, 4.61f},
    {GgmlType::Q5_0, gen_q5_0, 9.23f},       {GgmlType::Q5_1, gen_q5_1, 9.23f},
    {GgmlType::Q4_K, gen_q4_k, 219.0f},      {GgmlType::Q5_K, gen_q5_k, 438.4f},
    {GgmlType::Q6_K, gen_q6_k, 1470.0f},     {GgmlType::MXFP4, gen_mxfp4, 5.85f},
    // IQ: rms of (scale factor * level) over the grid and uniform scale fields (computed from the tables).
    {GgmlType::IQ2_XXS, gen_iq_random<cpu::BlockIQ2_XXS>, 53.4f},
    {GgmlType::IQ2_XS, gen_iq_random<cpu::BlockIQ2_XS>, 55.9f},
    {GgmlType::IQ2_S, gen_iq_random<cpu::BlockIQ2_S>, 56.4f},
    {GgmlType::IQ3_XXS, gen_iq_random<cpu::BlockIQ3_XXS>, 142.4f},
    {GgmlType::IQ3_S, gen_iq_random<cpu::BlockIQ3_S>, 140.2f},
    {GgmlType::IQ1_S, gen_iq_random<cpu::BlockIQ1_S>, 7.2f},
    {GgmlType::IQ1_M, gen_iq1_m, 7.2f},
    {GgmlType::IQ4_NL, gen_iq4<cpu::BlockIQ4_NL>, 67.4f},
    {GgmlType::IQ4_XS, gen_iq4<cpu::BlockIQ4_XS>, 1246.0f},
};

const TypeGen* find_gen(GgmlType t) {
  for (const auto& g : kGens)
    if (g.type == t) return &g;
  return nullptr;
}

}  // namespace

bool can_synthesize(GgmlType type) { return find_gen(type) != nullptr; }

uint64_t tensor_stream(uint64_t seed, uint64_t tensor_index) {
  return mix64(mix64(seed) ^ (tensor_index * 0xD1B54A32D192ED03ull + 0x8CB92BA72F3D8DD7ull));
}

void fill_tensor_bytes(const FillSpec& spec, uint64_t offset, std::span<std::byte> out) {
  const TypeGen* g = find_gen(spec.type);
  if (!g) fail("synth: cannot write random {} blocks", ggml_type_name(spec.type));
  const auto& info = ggml_type_info(spec.type);
  const bool is_float = info.block_size == 1;
  if (spec.kind == ValueKind::Norm && !is_float) fail("synth: norm weights must be F32/F16/BF16");
  const uint64_t unit_bytes = is_float ? kFloatGroup * info.type_size : info.type_size;

  Ctx c;
  c.spec = spec;
  c.d = spec.scale / g->q_std;
  if (spec.type == GgmlType::MXFP4) {
    // 2^(e-128) * rms(code values) = scale, with the +-1 exponent jitter of gen_mxfp4 (mean of 4^j over
    // j in {-1, 0, 1} is 1.75) folded in.
    const double target = static_cast<double>(spec.scale) / (5.85 * std::sqrt(1.75));
    const double e = 128.0 + std::round(std::log2(std::max(1e-30, target)));
    c.mx_exp = static_cast<int>(std::clamp(e, 1.0, 254.0));
  }

  const uint64_t end = offset + out.size();
  uint8_t tmp[256];
  for (uint64_t u = offset / unit_bytes; u * unit_bytes < end; ++u) {
    Rng r{mix64(spec.stream + u * 0xA24BAED4963EE407ull)};
    const uint64_t start = u * unit_bytes;
    auto* o = reinterpret_cast<uint8_t*>(out.data());
    if (start >= offset && start + unit_bytes <= end) {
      g->fn(c, r, o + (start - offset));
    } else {
      g->fn(c, r, tmp);
      const uint64_t lo = std::max(start, offset), hi = std::min(start + unit_bytes, end);
      std::memcpy(o + (lo - offset), tmp + (lo - start), hi - lo);
    }
  }
}

}  // namespace moetier::synth
