// offload/routing_trace.hpp — routing traces: which experts the router chose, per (layer, token
// position). Used by the cache simulator, by `plan` (usage counts -> hot experts) and written by the
// runtime when asked to record routing.
//
// Our format (JSONL, one object per line, blank lines ignored):
//   {"layer":L,"pos":P,"experts":[e0,e1,...],"weights":[w0,w1,...]}      optional "seq":S (default 0)
// Mixtral trace format (e.g. ../shared/traces/mixtral-8x7b-humaneval-2.jsonl), grouped by (problem, layer):
//   {"dataset":"humaneval","problem_id":S,"layer":L,"experts":[...],"gating_probs":[...],"token_idx":P}
// Both read into RoutingTrace records; decode_order() gives the order a decoder requests experts in:
// sequence by sequence, token by token, layer by layer.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "common/file_io.hpp"
#include "offload/expert_id.hpp"

namespace moetier::offload {

/// Routing of one token at one layer: chosen expert ids (router order) and their gate weights.
struct RoutingRecord {
  int32_t seq = 0;    ///< sequence (prompt / problem) index
  int32_t layer = 0;  ///< model block index (il)
  int32_t pos = 0;    ///< token position within the sequence
  std::vector<int32_t> experts;
  std::vector<float> weights;  ///< same length as experts
};

/// One expert request of a decode-ordered trace; `group` numbers the (seq, pos, layer) step it belongs
/// to: experts of one step are used together (none of them may evict another).
struct ExpertRequest {
  ExpertId id;
  uint32_t group = 0;
};

/// A routing trace, records in file order.
struct RoutingTrace {
  std::vector<RoutingRecord> records;

  /// 1 + largest layer / expert id seen (0 when empty).
  int32_t n_layers() const;
  int32_t n_experts() const;
  /// All expert requests ordered by (seq, pos, layer), each record's experts in router order.
  std::vector<ExpertRequest> decode_order() const;
  /// Times each expert was chosen: counts[layer][expert], shape [n_layers][n_experts] (arguments may
  /// exceed the trace's own sizes). Throws moetier::Error when an id falls outside the shape.
  std::vector<std::vector<uint64_t>> usage_counts(int32_t n_layers, int32_t n_experts) const;
};

/// Reads our JSONL format. Throws moetier::Error "path:line: what" for unreadable files, invalid JSON,
/// missing/mistyped fields, negative ids or experts/weights of different lengths.
RoutingTrace read_routing_trace(const std::string& path);

/// Reads the Mixtral trace format (see file comment). Same errors as read_routing_trace.
RoutingTrace read_mixtral_trace(const std::string& path);

/// Reads either format, deciding by the first non-blank line ("gating_probs" -> Mixtral).
RoutingTrace read_any_trace(const std::string& path);

/// Writes `trace` in our format (overwrites). Throws moetier::Error when the file cannot be written.
void write_routing_trace(const std::string& path, const RoutingTrace& trace);

/// Appends records to a trace file as they come (the runtime's recorder), through a temporary beside
/// `path` (common/file_io.hpp: `path` must be absent or a regular file) that close() renames onto it.
/// Throws moetier::Error when the file cannot be created or written.
class RoutingTraceWriter {
 public:
  explicit RoutingTraceWriter(const std::string& path);
  void write(const RoutingRecord& record);
  /// Flushes and renames the trace into place; throws on a write error. Without close() (e.g. a run
  /// that failed) the destructor discards the partial trace and `path` is left as it was.
  void close();

 private:
  std::string path_;
  std::unique_ptr<OutputFile> file_;
};

}  // namespace moetier::offload
