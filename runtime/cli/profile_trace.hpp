// The Chrome trace-event JSON of `moetier profile` (Perfetto and chrome://tracing open it), from the events
// common/trace_events.hpp recorded. Format reference: "Trace Event Format" (Google, the JSON Object
// Format with "traceEvents", complete events ph "X" with ts / dur in microseconds, metadata events ph "M"
// thread_name / process_name / thread_sort_index).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/trace_events.hpp"

namespace moetier::cli {

/// Track ids (the JSON's "tid") of the I/O ring's lanes: kIoLaneTid0 + lane.
inline constexpr int32_t kIoLaneTid0 = 1000;

/// Lanes for events that may overlap (the I/O ring's reads): lane[i] for events[i], the lowest lane whose
/// previous event (in begin order) ended at or before events[i] begins, so that no two events of a lane
/// overlap. Lanes are 0, 1, ... (as many as the most reads in flight at once).
std::vector<int> assign_lanes(std::span<const trace::Event> events);

/// The trace as a JSON document: one track per recording thread (its name as thread_name), the I/O ring's
/// reads spread over lanes named "I/O ring lane N", every event a complete event ("X") with ts and dur in
/// microseconds since the earliest event (3 decimals), its category, and args (the integer args, the
/// string arg). pid 1, named `process_name`.
std::string chrome_trace_json(const std::vector<trace::ThreadEvents>& threads, const std::string& process_name);

}  // namespace moetier::cli
