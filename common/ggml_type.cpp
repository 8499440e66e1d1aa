#include "common/ggml_type.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <utility>

namespace moetier {
namespace {

struct Entry {
  uint32_t id;
  GgmlTypeInfo info;
};

// Block sizes / bytes per block from ggml-common.h (QK_K = 256).
constexpr std::array kTypes{
    Entry{0, {"F32", 1, 4}},        Entry{1, {"F16", 1, 2}},         Entry{2, {"Q4_0", 32, 18}},
    Entry{3, {"Q4_1", 32, 20}},     Entry{6, {"Q5_0", 32, 22}},      Entry{7, {"Q5_1", 32, 24}},
    Entry{8, {"Q8_0", 32, 34}},     Entry{9, {"Q8_1", 32, 36}},      Entry{10, {"Q2_K", 256, 84}},
    Entry{11, {"Q3_K", 256, 110}},  Entry{12, {"Q4_K", 256, 144}},   Entry{13, {"Q5_K", 256, 176}},
    Entry{14, {"Q6_K", 256, 210}},  Entry{15, {"Q8_K", 256, 292}},   Entry{16, {"IQ2_XXS", 256, 66}},
    Entry{17, {"IQ2_XS", 256, 74}}, Entry{18, {"IQ3_XXS", 256, 98}}, Entry{19, {"IQ1_S", 256, 50}},
    Entry{20, {"IQ4_NL", 32, 18}},  Entry{21, {"IQ3_S", 256, 110}},  Entry{22, {"IQ2_S", 256, 82}},
    Entry{23, {"IQ4_XS", 256, 136}}, Entry{24, {"I8", 1, 1}},        Entry{25, {"I16", 1, 2}},
    Entry{26, {"I32", 1, 4}},       Entry{27, {"I64", 1, 8}},        Entry{28, {"F64", 1, 8}},
    Entry{29, {"IQ1_M", 256, 56}},  Entry{30, {"BF16", 1, 2}},       Entry{34, {"TQ1_0", 256, 54}},
    Entry{35, {"TQ2_0", 256, 66}},  Entry{39, {"MXFP4", 32, 17}},
};

}  // namespace

std::optional<GgmlTypeInfo> ggml_type_info(uint32_t type_id) {
  for (const auto& e : kTypes)
    if (e.id == type_id) return e.info;
  return std::nullopt;
}

const GgmlTypeInfo& ggml_type_info(GgmlType type) {
  for (const auto& e : kTypes)
    if (e.id == static_cast<uint32_t>(type)) return e.info;
  static constexpr GgmlTypeInfo kInvalid{"?", 1, 0};
  return kInvalid;
}

std::string_view ggml_type_name(GgmlType type) { return ggml_type_info(type).name; }

std::optional<GgmlType> ggml_type_from_name(std::string_view name) {
  for (const auto& e : kTypes) {
    if (e.info.name.size() != name.size()) continue;
    bool same = true;
    for (size_t i = 0; i < name.size() && same; ++i)
      same = std::toupper(static_cast<unsigned char>(name[i])) == e.info.name[i];
    if (same) return static_cast<GgmlType>(e.id);
  }
  return std::nullopt;
}

uint32_t ggml_type_alignment(GgmlType type) {
  const uint32_t size = ggml_type_info(type).type_size;
  return std::min<uint32_t>(size & (~size + 1), 8);
}

uint64_t ggml_row_bytes(GgmlType type, uint64_t n_elements) {
  const auto& info = ggml_type_info(type);
  return n_elements / info.block_size * info.type_size;
}

}  // namespace moetier
