// cuda_check: turns a CUDA runtime status into moetier::Error (for the .cu files of kernels/ only).
#pragma once

#include <string_view>

namespace moetier::gpu {

/// Returns when `code` (a cudaError_t) is cudaSuccess; otherwise throws moetier::Error:
/// "<what>: CUDA error <name> (<cudaGetErrorString>)".
void cuda_check(int code, std::string_view what);

}  // namespace moetier::gpu
