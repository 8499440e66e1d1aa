// `moetier calibrate`'s measurements (runtime/cli/cli_calibrate.cpp drives them): DRAM read bandwidth per
// thread count, disk read bandwidth of expert-sized reads with the expert reader (io_uring, O_DIRECT), CPU
// kernel rates per weight type and batch size through LinearExec (the path the model's FFNs take), the
// thread pool's dispatch cost and the per-token overheads of a decode token: attention per layer at each
// context length (cpu::attention split over heads as Model::run_attention), the router (LinearExec on an
// F32 matrix + sched::route_token) and rms_norm (cpu::rms_norm). Every figure records its method (machine_profile.hpp).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/tuning/machine_profile.hpp"

namespace moetier::tuning {

/// What to measure.
struct CalibrateOptions {
  int max_threads = 0;                  ///< 0: the pool's default worker count
  bool quick = false;                   ///< ~30 s: fewer thread counts, sizes, depths and repetitions
  std::string disk_dir;                 ///< folder of the temporary file (created, deleted afterwards)
  std::vector<uint64_t> read_sizes;     ///< expert read sizes in bytes (empty: 1, 4, 16 MiB)
  std::vector<std::string> types;       ///< ggml type names to rate (empty: Q4_K, Q6_K, Q8_0)
  int64_t n_embd = 2048, n_ff = 768;    ///< the matrix shape rated: [n_ff, n_embd] (an expert's gate / up)
  /// Per-token overheads: attention as cpu::attention is called (query heads, KV heads, key and value
  /// widths; MLA: 1 KV head of the compressed width), at each context length; the router's F32
  /// [n_expert, n_embd] GEMV + top-n_expert_used; rms_norm over n_embd values.
  int64_t n_head = 32, n_head_kv = 8, d_k = 128, d_v = 128;
  int64_t n_expert = 128, n_expert_used = 8;
  std::vector<int64_t> contexts{512, 4096, 32768};
};

/// Called with one line of progress ("dram 2 threads", ...), step and step count.
using ProgressFn = std::function<void(const std::string& what, int step, int n_steps)>;

/// Runs every measurement and returns the profile (created = now). Throws Error when the disk folder
/// cannot hold the temporary file, a type has no CPU kernel, or a measurement fails its own check.
MachineProfile calibrate(const CalibrateOptions& opts, const ProgressFn& progress = {});

}  // namespace moetier::tuning
