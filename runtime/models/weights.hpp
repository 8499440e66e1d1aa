// Weight views: a 2-D weight matrix W [n_out, n_in] in some ggml type, living in mmapped GGUF bytes (or
// in an expert cache slot), plus helpers to build them from tensor infos and to slice one expert out of
// a stacked [n_expert, n_out, n_in] tensor. Views never own memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/ggml_type.hpp"
#include "common/weight_view.hpp"
#include "runtime/gguf/gguf_model.hpp"

namespace moetier::models {

/// W [n_out, n_in] in host memory (common/weight_view.hpp): the models' weights are all mmapped GGUF bytes.
using Weight = HostWeight;

/// A 1-D f32 vector (norm weights, biases); throws Error if the tensor is not F32 of length n.
const float* vector_f32(const gguf::GgufModel& m, const std::string& name, int64_t n);
/// Same, but nullptr when the tensor is absent.
const float* optional_vector_f32(const gguf::GgufModel& m, const std::string& name, int64_t n);

/// 2-D weight `name` with shape {n_out, n_in}; throws Error naming the tensor on a shape mismatch or an
/// unsupported type (the supported set: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, MXFP4).
Weight weight_2d(const gguf::GgufModel& m, const std::string& name, int64_t n_out, int64_t n_in);
/// Same, but an invalid Weight when absent.
Weight optional_weight_2d(const gguf::GgufModel& m, const std::string& name, int64_t n_out, int64_t n_in);

/// Stacked per-expert (or per-head) weights {n_mat, n_out, n_in}: matrix i starts at data + i * mat_bytes.
struct StackedWeight {
  Weight first;            // matrix 0
  int64_t n_mat = 0;
  uint64_t mat_bytes = 0;  // bytes of one matrix
  const gguf::TensorInfo* info = nullptr;
  Weight at(int64_t i) const {
    Weight w = first;
    w.data = first.data + static_cast<uint64_t>(i) * mat_bytes;
    return w;
  }
};
/// 3-D weight `name` with shape {n_mat, n_out, n_in}; Error on mismatch / unsupported type.
StackedWeight weight_3d(const gguf::GgufModel& m, const std::string& name, int64_t n_mat, int64_t n_out, int64_t n_in);

/// One SwiGLU FFN in host memory: out = down(silu(gate x) * up x). Biases (gpt-oss) optional.
using FfnWeights = HostFfn;

/// True for the weight types moetier computes with.
bool is_supported_weight_type(GgmlType t);

}  // namespace moetier::models
