// common/trace_events: nothing is recorded while tracing is off (the instrumented code costs one branch);
// on, scopes become complete events on the recording thread's own track (nested scopes inside their
// parent, args kept), other threads get other tracks with their names, kIoTrack events stay on the I/O
// track, clear() empties the buffers, a buffer grows past a chunk.
#include <doctest/doctest.h>

#include <string_view>
#include <thread>

#include "common/trace_events.hpp"

using namespace moetier;

namespace {

size_t n_events() {
  size_t n = 0;
  for (const auto& t : trace::collect()) n += t.events.size();
  return n;
}

const trace::ThreadEvents* find_thread(const std::vector<trace::ThreadEvents>& all, std::string_view name) {
  for (const auto& t : all)
    if (t.name == name) return &t;
  return nullptr;
}

struct TraceOff {  // every case leaves tracing off and empty
  ~TraceOff() {
    trace::set_enabled(false);
    trace::clear();
  }
};

}  // namespace

TEST_CASE("trace: off records nothing (scopes, record, from any thread)") {
  TraceOff guard;
  trace::set_enabled(false);
  trace::clear();
  {
    trace::Scope s("x", "test");
    CHECK(!s.on());
    s.arg("a", 1);
  }
  trace::Event e;
  e.name = "y";
  trace::record(e);
  std::thread([] { trace::Scope s("z", "test"); }).join();
  CHECK(n_events() == 0);
}

TEST_CASE("trace: on, nested scopes on this thread's track, other threads on theirs, I/O track kept") {
  TraceOff guard;
  trace::clear();
  trace::set_thread_name("test main");
  trace::set_enabled(true);
  {
    trace::Scope outer("outer", "test");
    outer.arg("layer", 3).str("tier", "dram");
    { trace::Scope inner("inner", "test"); }
    trace::Event io;
    io.name = "read";
    io.cat = "io";
    io.track = trace::kIoTrack;
    io.begin_ns = trace::now_ns();
    io.dur_ns = 5;
    io.arg("bytes", 4096);
    trace::record(io);
  }
  std::thread([] {
    trace::set_thread_name("test worker");
    trace::Scope s("work", "test");
  }).join();
  trace::set_enabled(false);
  { trace::Scope after("after", "test"); }

  const auto all = trace::collect();
  const auto* main = find_thread(all, "test main");
  const auto* worker = find_thread(all, "test worker");
  REQUIRE(main != nullptr);
  REQUIRE(worker != nullptr);
  CHECK(main->tid != worker->tid);
  REQUIRE(main->events.size() == 3);  // inner ends first, then the read, then outer
  const auto& inner = main->events[0];
  const auto& read = main->events[1];
  const auto& outer = main->events[2];
  CHECK(std::string_view(inner.name) == "inner");
  CHECK(std::string_view(outer.name) == "outer");
  CHECK(inner.track == main->tid);
  CHECK(outer.track == main->tid);
  CHECK(read.track == trace::kIoTrack);
  CHECK(read.args[0].value == 4096);
  CHECK(outer.begin_ns <= inner.begin_ns);
  CHECK(inner.begin_ns + inner.dur_ns <= outer.begin_ns + outer.dur_ns);
  CHECK(inner.dur_ns >= 0);
  REQUIRE(outer.n_args == 1);
  CHECK(std::string_view(outer.args[0].key) == "layer");
  CHECK(outer.args[0].value == 3);
  CHECK(std::string_view(outer.str_value) == "dram");
  REQUIRE(worker->events.size() == 1);
  CHECK(worker->events[0].track == worker->tid);

  trace::clear();
  CHECK(n_events() == 0);
}

TEST_CASE("trace: a buffer grows past one chunk without losing events") {
  TraceOff guard;
  trace::clear();
  trace::set_enabled(true);
  for (int i = 0; i < 10000; ++i) {
    trace::Event e;
    e.name = "n";
    e.begin_ns = i;
    e.arg("i", i);
    trace::record(e);
  }
  trace::set_enabled(false);
  const auto all = trace::collect();
  size_t n = 0;
  for (const auto& t : all)
    for (size_t i = 0; i < t.events.size(); ++i, ++n) CHECK_EQ(t.events[i].args[0].value, static_cast<int64_t>(i));
  CHECK(n == 10000);
  CHECK(trace::dropped() == 0);
}
