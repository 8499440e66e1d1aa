// common/trace_events.hpp — the profiler's event recorder (`moetier profile`): per-thread buffers of
// complete events (name, category, track, begin ns, duration, a few integer args and one string arg),
// exported by runtime/cli/profile_trace.cpp as Chrome trace-event JSON (Perfetto opens it).
//
// Cost: off (the default), a Scope or a record() call is one relaxed atomic load and a branch. On, an
// event is a steady_clock read at each end and a copy into the calling thread's own buffer: no lock, no
// allocation except one chunk of kChunkEvents events when the current chunk fills. A thread's buffer is
// registered (under a mutex) the first time it records, and lives until the end of the process, so
// events of threads that have exited are still collected.
//
// Threading: record() and set_thread_name() from any thread; collect() and clear() while no thread
// records (e.g. after the traced generation returned): collect() reads each buffer up to its published
// count (release/acquire), clear() empties them (memory is kept for reuse).
//
// Strings: `name`, `cat`, arg keys and the string arg's value must be string literals (or otherwise
// outlive the trace): events store the pointers.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace moetier::trace {

/// Track of an event. kThisThread: the recording thread's own track. kIoTrack: the I/O ring (reads may
/// overlap there; the exporter spreads them over lanes so that no two events of a lane overlap).
inline constexpr int32_t kThisThread = -1;
inline constexpr int32_t kIoTrack = -2;

/// At most this many integer args per event.
inline constexpr int kMaxArgs = 5;

struct Arg {
  const char* key = nullptr;
  int64_t value = 0;
};

/// One complete event: [begin_ns, begin_ns + dur_ns) on steady_clock (ns since its epoch).
struct Event {
  const char* name = nullptr;
  const char* cat = nullptr;
  int32_t track = kThisThread;
  int32_t n_args = 0;
  int64_t begin_ns = 0;
  int64_t dur_ns = 0;
  const char* str_key = nullptr;  ///< optional string arg (nullptr: none)
  const char* str_value = nullptr;
  Arg args[kMaxArgs];

  Event& arg(const char* key, int64_t value) {
    if (n_args < kMaxArgs) args[n_args++] = Arg{key, value};
    return *this;
  }
  Event& str(const char* key, const char* value) {
    str_key = key;
    str_value = value;
    return *this;
  }
};

namespace detail {
extern std::atomic<bool> g_enabled;
}

/// Whether events are recorded now (relaxed: a thread may see a change a little late).
inline bool enabled() { return detail::g_enabled.load(std::memory_order_relaxed); }
/// Turns recording on or off for every thread.
void set_enabled(bool on);

/// steady_clock now, ns since its epoch.
int64_t now_ns();

/// Appends `e` to the calling thread's buffer when enabled(); nothing otherwise. Resolves kThisThread to
/// the thread's track. Never throws (an allocation failure drops the event and counts it in dropped()).
void record(const Event& e);

/// Names the calling thread's track ("worker 3", "sim:0 stream"); any time, on or off (kept for the
/// buffer the thread's first event makes). Never throws.
void set_thread_name(const std::string& name);

/// Events recorded by one thread, in recording order (end time order for nested scopes).
struct ThreadEvents {
  int32_t tid = 0;      ///< 1, 2, ... in registration order
  std::string name;     ///< set_thread_name, else "thread <tid>"
  std::vector<Event> events;
};

/// Every registered thread's events so far (see the threading rule above).
std::vector<ThreadEvents> collect();
/// Drops every recorded event (buffers and names stay registered).
void clear();
/// Events dropped because a buffer could not grow.
uint64_t dropped();

/// RAII complete event on the calling thread's track: begins at construction, recorded at destruction
/// when tracing was on at construction. Args may be added in between.
class Scope {
 public:
  Scope(const char* name, const char* cat) : on_(enabled()) {
    if (on_) {
      e_.name = name;
      e_.cat = cat;
      e_.begin_ns = now_ns();
    }
  }
  ~Scope() { end(); }
  /// Records the event now (no-op when off or already ended).
  void end() {
    if (on_) {
      e_.dur_ns = now_ns() - e_.begin_ns;
      record(e_);
      on_ = false;
    }
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;
  bool on() const { return on_; }
  Scope& arg(const char* key, int64_t value) {
    if (on_) e_.arg(key, value);
    return *this;
  }
  Scope& str(const char* key, const char* value) {
    if (on_) e_.str(key, value);
    return *this;
  }

 private:
  bool on_;
  Event e_;
};

}  // namespace moetier::trace
