#include "runtime/models/weights.hpp"

#include <fmt/format.h>

#include "common/error.hpp"

namespace moetier::models {

bool is_supported_weight_type(GgmlType t) {
  switch (t) {
    case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16: case GgmlType::Q4_0: case GgmlType::Q4_1:
    case GgmlType::Q5_0: case GgmlType::Q5_1: case GgmlType::Q8_0: case GgmlType::Q2_K: case GgmlType::Q3_K:
    case GgmlType::Q4_K: case GgmlType::Q5_K: case GgmlType::Q6_K: case GgmlType::MXFP4:
    case GgmlType::IQ2_XXS: case GgmlType::IQ2_XS: case GgmlType::IQ2_S: case GgmlType::IQ3_XXS:  // IQ quants
    case GgmlType::IQ3_S: case GgmlType::IQ1_S: case GgmlType::IQ1_M: case GgmlType::IQ4_NL: case GgmlType::IQ4_XS:
      return true;
    default:
      return false;
  }
}

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  return fmt::format("{{{}}}", fmt::join(s, ", "));
}

void check_shape(const gguf::GgufModel& m, const gguf::TensorInfo& t, const std::vector<int64_t>& want) {
  if (t.shape != want)
    fail("{}: tensor {}: shape {} (expected {})", m.file_path(t.file_index), t.name, shape_str(t.shape),
         shape_str(want));
  if (!is_supported_weight_type(t.type))
    fail("{}: tensor {}: unsupported tensor type {} (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, "
         "Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, MXFP4, IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ4_NL, "
         "IQ4_XS)",
         m.file_path(t.file_index), t.name, ggml_type_name(t.type));
}

}  // namespace

const float* optional_vector_f32(const gguf::GgufModel& m, const std::string& name, int64_t n) {
  const gguf::TensorInfo* t = m.find(name);
  if (!t) return nullptr;
  if (t->type != GgmlType::F32 || t->n_elements() != n)
    fail("{}: tensor {}: {} {} (expected F32 of {} elements)", m.file_path(t->file_index), name,
         ggml_type_name(t->type), shape_str(t->shape), n);
  return reinterpret_cast<const float*>(m.data(*t).data());
}

const float* vector_f32(const gguf::GgufModel& m, const std::string& name, int64_t n) {
  const float* p = optional_vector_f32(m, name, n);
  if (!p) fail("{}: missing tensor {}", m.path(), name);
  return p;
}

Weight optional_weight_2d(const gguf::GgufModel& m, const std::string& name, int64_t n_out, int64_t n_in) {
  const gguf::TensorInfo* t = m.find(name);
  if (!t) return {};
  check_shape(m, *t, {n_out, n_in});
  return Weight{t->type, m.data(*t).data(), n_out, n_in, ggml_row_bytes(t->type, n_in)};
}

Weight weight_2d(const gguf::GgufModel& m, const std::string& name, int64_t n_out, int64_t n_in) {
  Weight w = optional_weight_2d(m, name, n_out, n_in);
  if (!w.valid()) fail("{}: missing tensor {}", m.path(), name);
  return w;
}

StackedWeight weight_3d(const gguf::GgufModel& m, const std::string& name, int64_t n_mat, int64_t n_out, int64_t n_in) {
  const gguf::TensorInfo& t = m.require(name);
  check_shape(m, t, {n_mat, n_out, n_in});
  StackedWeight s;
  s.first = Weight{t.type, m.data(t).data(), n_out, n_in, ggml_row_bytes(t.type, n_in)};
  s.n_mat = n_mat;
  s.mat_bytes = s.first.row_bytes * static_cast<uint64_t>(n_out);
  s.info = &t;
  return s;
}

}  // namespace moetier::models
