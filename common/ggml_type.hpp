// GgmlType: ggml's tensor type ids with their block geometry (elements per block, bytes per block).
// Ids and block sizes match ggml.h / ggml-common.h (type_traits); removed ids (4, 5, 31-33, 36-38) are
// unknown. Every known type has a size even where moetier cannot compute with it yet.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace moetier {

/// ggml type ids as stored in GGUF tensor infos (uint32).
enum class GgmlType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22,
  IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
  TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
};

/// Block geometry of one ggml type: a row of n elements occupies n / block_size * type_size bytes.
struct GgmlTypeInfo {
  std::string_view name;   // ggml's name, e.g. "Q4_K"
  uint32_t block_size;     // elements per block (1 for plain types, 32 or 256 for quantised)
  uint32_t type_size;      // bytes per block
};

/// Info of a known type id; std::nullopt for unknown or removed ids (a GGUF file may carry any uint32).
std::optional<GgmlTypeInfo> ggml_type_info(uint32_t type_id);

/// Info of a known type (never fails for enum values).
const GgmlTypeInfo& ggml_type_info(GgmlType type);

/// ggml's name of the type, e.g. "Q8_0".
std::string_view ggml_type_name(GgmlType type);

/// Parses a ggml type name (case-insensitive, "q4_k" or "Q4_K"); std::nullopt if unknown.
std::optional<GgmlType> ggml_type_from_name(std::string_view name);

/// Byte alignment a tensor of `type` needs for its elements / blocks to be read in place: the largest power
/// of two dividing the block size in bytes, at most 8 (F32 4, F16 / BF16 / Q8_0 / Q4_K 2..8, MXFP4 1).
/// The GGUF reader refuses a tensor whose data does not start at such a multiple.
uint32_t ggml_type_alignment(GgmlType type);

/// Bytes of a row of n_elements of `type`; n_elements must be a multiple of the block size (checked by
/// callers that handle untrusted input: see ggml_row_bytes_checked in runtime/gguf).
uint64_t ggml_row_bytes(GgmlType type, uint64_t n_elements);

}  // namespace moetier
