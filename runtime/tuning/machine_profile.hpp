// The machine profile `moetier calibrate` writes and `moetier plan` reads: measured ceilings of this
// machine (DRAM read bandwidth per thread count, disk read bandwidth per read size and queue depth, CPU
// kernel rates per weight type and batch size, per-token overheads, the GPU or its absence), each figure
// with how it was measured. Stored as JSON, schema "moetier.machine/1"; the default file is
// $XDG_CACHE_HOME/moetier/machine.json (~/.cache/moetier/machine.json without XDG_CACHE_HOME).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace moetier::tuning {

/// The schema string written and the only one read.
inline constexpr const char* kMachineSchema = "moetier.machine/1";

/// How a figure was measured.
struct Method {
  std::string method;     ///< what ran, e.g. "STREAM-like read, best of reps"
  uint64_t bytes = 0;     ///< bytes touched per repetition (buffer, file region or weights)
  int threads = 0;        ///< worker threads
  int repetitions = 0;    ///< timed repetitions (the best or median is kept, as `method` says)
};

/// DRAM read bandwidth with `threads` workers, GB/s (1e9 bytes/s).
struct DramFigure {
  int threads = 0;
  double gbps = 0;
  Method how;
};

/// Disk read bandwidth of expert-sized reads (`read_bytes` each, `queue_depth` reads in flight), GB/s.
struct DiskFigure {
  uint64_t read_bytes = 0;
  int queue_depth = 0;
  double gbps = 0;
  Method how;
};

/// CPU kernel rate of one weight type at `tokens` tokens per matrix, on weights streamed from DRAM: both
/// weight bytes/s (GB/s) and GFLOP/s (2 * n_out * n_in * tokens per product). calibrate measures 1 and 8
/// tokens on the GEMV path (LinearExec::operator()) and 32, 128 and 512 on LinearExec::batch (the prefill
/// GEMM); the throughput model reads gbps below 32 tokens and gflops from 32.
struct KernelFigure {
  std::string type;  ///< ggml type name, "Q4_K"
  int64_t tokens = 1;
  double gbps = 0;    ///< weight bytes per second / 1e9 (every batch size)
  double gflops = 0;  ///< 1e9 FLOP/s (every batch size)
  Method how;
};

/// A fixed per-event cost, microseconds: "pool_dispatch" (one parallel_for of the thread pool), and the
/// per-token costs of one decode token: "attention" (one layer, at `context` KV positions, for a shape of
/// `elements` = n_head x (d_k + d_v)), "attention_prefill" (the same per query token of a 64-token prompt
/// chunk ending at `context`), "router" (one MoE layer: the F32 [n_expert, n_embd] GEMV and the
/// top-k, `elements` = n_expert x n_embd) and "rms_norm" (one norm of `elements` = n_embd values). The
/// throughput model scales a figure linearly by the model's elements / the measured ones. `context` and
/// `elements` are optional in the JSON (0: not applicable; profiles written before them read as 0).
struct OverheadFigure {
  std::string what;
  double microseconds = 0;
  Method how;
  int64_t context = 0;   ///< KV positions attended to ("attention"), else 0
  double elements = 0;   ///< the measured shape's work unit (see above), else 0
};

struct MachineProfile {
  std::string created;        ///< UTC time, ISO 8601
  std::string cpu;            ///< CPU features / topology summary
  int max_threads = 0;        ///< the largest thread count measured
  std::vector<DramFigure> dram;
  std::string disk_dir;       ///< folder of the temporary file the disk was measured on
  std::string disk_backend;   ///< "io_uring, O_DIRECT", ...
  std::vector<DiskFigure> disk;
  std::vector<KernelFigure> kernels;
  std::vector<OverheadFigure> overheads;
  std::string gpu = "absent";  ///< "absent", or the device's name

  /// DRAM GB/s at `threads` (the figure of the largest measured count <= threads; the smallest measured
  /// count when all are above). Throws Error when there is no DRAM figure.
  double dram_gbps(int threads) const;
  /// Disk GB/s for reads of `read_bytes` (the figure of the nearest measured size, log scale; of those,
  /// the best queue depth). nullopt when there is no disk figure.
  std::optional<double> disk_gbps(uint64_t read_bytes) const;
  /// The kernel figure of `type` at the measured batch size nearest `tokens` (log scale), or nullptr.
  const KernelFigure* kernel(const std::string& type, int64_t tokens) const;
  /// The overhead named `what` in microseconds, or 0 when absent.
  double overhead_us(const std::string& what) const;
  /// The overhead figure named `what` (the first), or nullptr.
  const OverheadFigure* overhead(const std::string& what) const;
};

/// The profile as JSON text (schema kMachineSchema).
std::string machine_profile_to_json(const MachineProfile& p);
/// Parses JSON text; `source` names the file in errors. Throws Error (one line naming source and the key)
/// for malformed JSON, another schema, or a missing / mistyped / non-positive figure.
MachineProfile machine_profile_from_json(const std::string& text, const std::string& source);
/// Reads `path` (read_input_file checks) and parses it.
MachineProfile read_machine_profile(const std::string& path);
/// Writes `path` through a temporary (creates its folder first).
void write_machine_profile(const std::string& path, const MachineProfile& p);
/// $XDG_CACHE_HOME/moetier/machine.json, or $HOME/.cache/moetier/machine.json; "" when neither is set.
std::string default_machine_profile_path();

}  // namespace moetier::tuning
