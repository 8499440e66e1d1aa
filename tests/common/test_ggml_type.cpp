#include <doctest/doctest.h>

#include "common/ggml_type.hpp"
#include "common/half.hpp"

using namespace moetier;

TEST_CASE("ggml type table: ids, block sizes and bytes per block as in ggml-common.h") {
  struct Case { uint32_t id; const char* name; uint32_t bs, ts; };
  const Case cases[] = {{0, "F32", 1, 4},     {1, "F16", 1, 2},      {2, "Q4_0", 32, 18},  {3, "Q4_1", 32, 20},
                        {6, "Q5_0", 32, 22},  {7, "Q5_1", 32, 24},   {8, "Q8_0", 32, 34},  {9, "Q8_1", 32, 36},
                        {10, "Q2_K", 256, 84}, {11, "Q3_K", 256, 110}, {12, "Q4_K", 256, 144}, {13, "Q5_K", 256, 176},
                        {14, "Q6_K", 256, 210}, {15, "Q8_K", 256, 292}, {30, "BF16", 1, 2}, {39, "MXFP4", 32, 17},
                        {34, "TQ1_0", 256, 54}, {35, "TQ2_0", 256, 66}, {23, "IQ4_XS", 256, 136}};
  for (const auto& c : cases) {
    auto info = ggml_type_info(c.id);
    REQUIRE(info.has_value());
    CHECK(info->name == c.name);
    CHECK(info->block_size == c.bs);
    CHECK(info->type_size == c.ts);
    CHECK(ggml_type_from_name(c.name) == static_cast<GgmlType>(c.id));
  }
  CHECK_FALSE(ggml_type_info(4).has_value());   // removed Q4_2
  CHECK_FALSE(ggml_type_info(31).has_value());  // removed Q4_0_4_4
  CHECK_FALSE(ggml_type_info(40).has_value());
  CHECK(ggml_row_bytes(GgmlType::Q4_K, 512) == 288);
}

TEST_CASE("fp16 / bf16 conversions round-trip and round to nearest even") {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = fp16_to_f32(static_cast<uint16_t>(h));
    if (f != f) continue;  // NaN payloads are not preserved bit for bit
    CHECK(f32_to_fp16(f) == h);
  }
  CHECK(f32_to_fp16(1.0f + 1.0f / 2048) == 0x3C00);  // tie -> even
  CHECK(bf16_to_f32(f32_to_bf16(1.5f)) == 1.5f);
  CHECK(f32_to_bf16(1.0f + 1.0f / 256) == 0x3F80);  // tie -> even (round down)
}
