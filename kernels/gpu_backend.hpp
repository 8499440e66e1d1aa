// GPU backend entry points. Built with CUDA only when the `cuda` option finds a toolkit; otherwise
// every query says "no GPU backend in this build" and plans that place experts on gpu:N are refused.
#pragma once

#include <string>

namespace moetier::gpu {

/// True when this binary was compiled with the CUDA kernels.
bool compiled_with_cuda();

/// Number of CUDA devices usable at run time (0 without CUDA, without a driver, or without a device).
int device_count();

/// One line describing the GPU backend state, e.g. "CUDA: 1 device(s)" or "no CUDA in this build".
std::string describe();

}  // namespace moetier::gpu
