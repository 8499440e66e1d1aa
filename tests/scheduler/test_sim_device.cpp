// The simulated device's parts (scheduler/sim_device.hpp): memory that never exceeds its capacity and says
// so in one line, a copy engine that copies the bytes, counts them and is never faster than its rate, and
// a stream that runs work in order on its own thread, blocks submitters when full, and hands errors back
// through wait() without losing any.
#include <doctest/doctest.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <numeric>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/error.hpp"
#include "scheduler/sim_device.hpp"
#include "scheduler/thread_pool.hpp"
#include "tests/scheduler/sim_test_util.hpp"

using namespace moetier;
using namespace moetier::sched;

namespace {

using test::message_of;

SimWork work_for(int expert) {
  SimWork w;
  w.group.key = FfnKey{0, expert};
  return w;
}

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

}  // namespace

TEST_CASE("sim memory: allocations are counted, freed by RAII, and never exceed the capacity") {
  SimMemory mem("sim:0", 1000);
  CHECK(mem.capacity_bytes() == 1000);
  {
    SimBuffer a = mem.allocate(400);
    CHECK(a.size() == 400);
    CHECK(reinterpret_cast<uintptr_t>(a.device_data()) % 64 == 0);
    SimBuffer b = mem.allocate(600);  // exactly full
    CHECK(mem.used_bytes() == 1000);
    const std::string msg = message_of([&] { (void)mem.allocate(1, "layer 2 expert 7"); });
    CHECK(msg == "sim:0: out of device memory for layer 2 expert 7: 1 bytes requested, 1000 in use, capacity 1000");
    CHECK(msg.find('\n') == std::string::npos);
    CHECK(mem.used_bytes() == 1000);  // the failed allocation took nothing
    SimBuffer moved = std::move(a);   // ownership moves; bytes are counted once
    CHECK_FALSE(a.valid());
    CHECK(mem.used_bytes() == 1000);
    moved = SimBuffer();  // move-assigning frees the old allocation
    CHECK(mem.used_bytes() == 600);
  }
  CHECK(mem.used_bytes() == 0);
  CHECK(mem.peak_bytes() == 1000);
  CHECK(message_of([&] { (void)mem.allocate(1001); }) ==
        "sim:0: out of device memory: 1001 bytes requested, 0 in use, capacity 1000");
}

TEST_CASE("sim memory: a random allocate / free sequence keeps used = sum of live buffers <= peak <= capacity") {
  SimMemory mem("sim:3", 10'000);
  std::vector<SimBuffer> live;
  uint32_t state = 12345;
  int refused = 0;
  for (int i = 0; i < 500; ++i) {
    state = state * 1664525u + 1013904223u;
    const uint64_t bytes = 1 + (state >> 8) % 3000;
    if (!live.empty() && (state & 3) == 0) {
      live.erase(live.begin() + static_cast<std::ptrdiff_t>((state >> 4) % live.size()));
    } else {
      try {
        live.push_back(mem.allocate(bytes));
      } catch (const Error& e) {
        ++refused;
        CHECK(std::string(e.what()).find("sim:3: out of device memory") == 0);
      }
    }
    uint64_t sum = 0;
    for (const SimBuffer& b : live) sum += b.size();
    REQUIRE(mem.used_bytes() == sum);
    REQUIRE(mem.peak_bytes() <= mem.capacity_bytes());
  }
  CHECK(refused > 0);  // the sequence did run into the capacity
}

TEST_CASE("sim copy engine: copies the bytes, counts them, rejects copies outside the buffer") {
  SimMemory mem("sim:0", 1 << 20);
  SimBuffer buf = mem.allocate(1000);
  SimCopyEngine copy(0);
  std::vector<uint8_t> src(600);
  std::iota(src.begin(), src.end(), uint8_t{1});
  copy.copy_h2d(buf, 0, src.data(), 600);
  copy.copy_h2d(buf, 600, src.data(), 400);
  CHECK(std::memcmp(buf.device_data(), src.data(), 600) == 0);
  CHECK(std::memcmp(buf.device_data() + 600, src.data(), 400) == 0);
  CHECK(copy.bytes() == 1000);
  CHECK(message_of([&] { copy.copy_h2d(buf, 900, src.data(), 101); }) ==
        "simulated device: copy of 101 bytes at offset 900 does not fit a buffer of 1000 bytes");
  CHECK_THROWS_AS(copy.copy_h2d(buf, 1001, src.data(), 0), Error);
  CHECK(copy.bytes() == 1000);  // refused copies are not counted
  CHECK_THROWS_AS(SimCopyEngine(-1.0), Error);
  CHECK_THROWS_AS(SimCopyEngine(std::nan("")), Error);
}

TEST_CASE("sim copy engine: a copy of N bytes at R GB/s takes at least N / R") {
  struct Case { uint64_t bytes; double gbps; };
  // Lower bounds only: a loaded machine may take longer, never less.
  for (const Case c : {Case{4 << 20, 1.0}, Case{8 << 20, 4.0}, Case{1 << 20, 0.25}}) {
    CAPTURE(c.bytes);
    CAPTURE(c.gbps);
    SimMemory mem("sim:0", c.bytes);
    SimBuffer buf = mem.allocate(c.bytes);
    std::vector<uint8_t> src(c.bytes, 7);
    SimCopyEngine copy(c.gbps);
    const auto t0 = std::chrono::steady_clock::now();
    const uint64_t ns = copy.copy_h2d(buf, 0, src.data(), c.bytes);
    const auto wall = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0);
    const double min_ns = double(c.bytes) / c.gbps;
    CHECK(double(ns) >= min_ns);
    CHECK(double(wall.count()) >= min_ns);
    CHECK(copy.ns() == ns);
    CHECK(copy.bytes() == c.bytes);
    CHECK(buf.device_data()[c.bytes - 1] == std::byte{7});
  }
}

TEST_CASE("sim stream: items run in submission order on the stream thread; wait(t) covers t and all before") {
  std::vector<int> order;  // written by the stream thread only; read after wait()
  std::vector<uint64_t> tickets;
  std::thread::id ran_on;
  // Capacity 3 with 20 items: submit() must block on a full ring and resume without losing order.
  SimStream stream("sim:0", 3, [&](const SimWork& w, uint64_t t) {
    sleep_ms(1);
    order.push_back(w.group.key.expert);
    tickets.push_back(t);
    ran_on = std::this_thread::get_id();
  });
  CHECK(stream.last_ticket() == 0);
  stream.wait(0);  // nothing issued: returns at once
  std::vector<uint64_t> issued;
  for (int e = 0; e < 20; ++e) issued.push_back(stream.submit(work_for(e)));
  for (size_t i = 0; i < issued.size(); ++i) CHECK(issued[i] == i + 1);
  stream.wait(10);
  CHECK(stream.done(10));
  CHECK(stream.done(9));
  stream.wait(20);
  REQUIRE(order.size() == 20);
  for (int e = 0; e < 20; ++e) {
    CHECK(order[static_cast<size_t>(e)] == e);
    CHECK(tickets[static_cast<size_t>(e)] == static_cast<uint64_t>(e + 1));
  }
  CHECK(ran_on == stream.thread_id());
  CHECK(ran_on != std::this_thread::get_id());
  CHECK(message_of([&] { stream.wait(21); }) == "sim:0: wait for ticket 21, but only 20 were issued");
  const std::vector<SimSpan> spans = stream.recent_spans();
  REQUIRE(spans.size() == 20);
  for (size_t i = 0; i < spans.size(); ++i) {
    CHECK(spans[i].ticket == i + 1);
    CHECK(spans[i].key.expert == static_cast<int>(i));
    CHECK(spans[i].end_ns - spans[i].start_ns >= 1'000'000);  // the 1 ms sleep
    if (i > 0) CHECK(spans[i].start_ns >= spans[i - 1].end_ns);  // one at a time, in order
  }
}

TEST_CASE("sim stream: wait does not return before the item finished") {
  std::atomic<bool> release{false}, finished{false};
  SimStream stream("sim:0", 4, [&](const SimWork&, uint64_t) {
    while (!release.load()) std::this_thread::yield();  // held until the test lets it finish
    finished = true;
  });
  const uint64_t t = stream.submit(work_for(0));
  sleep_ms(5);
  CHECK_FALSE(stream.done(t));
  std::thread releaser([&] {
    sleep_ms(20);
    release = true;
  });
  stream.wait(t);  // blocks until the releaser lets the item finish
  CHECK(finished.load());
  CHECK(stream.done(t));
  releaser.join();
}

TEST_CASE("sim stream: errors are captured on the stream thread and rethrown by wait, each exactly once") {
  std::vector<int> ran;
  SimStream stream("sim:0", 8, [&](const SimWork& w, uint64_t) {
    const int e = w.group.key.expert;
    if (e == 3) throw Error("expert 3 broke");
    if (e == 5) throw std::runtime_error("expert 5 broke");
    if (e == 7) throw 42;  // not an exception class
    ran.push_back(e);
  });
  for (int e = 0; e < 10; ++e) stream.submit(work_for(e));
  stream.wait(3);  // tickets 1..3 are experts 0..2: all fine
  // Ticket 4 (expert 3) failed: the first failure is reported with the count of the others up to 6.
  CHECK(message_of([&] { stream.wait(6); }) == "expert 3 broke (and 1 more failed groups)");
  stream.wait(6);  // already reported: no second throw
  CHECK(message_of([&] { stream.wait(10); }) == "sim:0: unknown exception in a stream item");
  stream.wait(10);
  CHECK(ran == std::vector<int>{0, 1, 2, 4, 6, 8, 9});  // later items kept running
  // The stream keeps working after errors.
  const uint64_t t = stream.submit(work_for(11));
  stream.wait(t);
  CHECK(ran.back() == 11);
}

TEST_CASE("sim stream: drain waits without reporting; destruction drops queued items and does not hang") {
  std::atomic<int> ran{0};
  {
    SimStream stream("sim:0", 16, [&](const SimWork& w, uint64_t) {
      sleep_ms(20);
      ++ran;
      if (w.group.key.expert == 0) throw Error("first failed");
    });
    stream.submit(work_for(0));
    stream.drain();  // no throw
    CHECK(ran.load() == 1);
    CHECK(message_of([&] { stream.wait(1); }) == "first failed");
    for (int e = 1; e <= 10; ++e) stream.submit(work_for(e));
    sleep_ms(5);
  }  // 10 x 20 ms queued: the destructor finishes at most the running one
  CHECK(ran.load() < 11);
  CHECK_THROWS_AS(SimStream("sim:0", 0, [](const SimWork&, uint64_t) {}), Error);
}

TEST_CASE("sim stream: the stream thread runs on the process's CPUs even when its creator was pinned to one") {
  cpu_set_t before;
  REQUIRE(sched_getaffinity(0, sizeof(before), &before) == 0);
  if (CPU_COUNT(&before) < 2) return;  // one allowed CPU: nothing to widen (the check below needs two)
  int first = 0;
  while (!CPU_ISSET(first, &before)) ++first;
  pin_current_thread(std::span<const int>(&first, 1));  // as the pool pins its caller
  int stream_cpus = 0;
  {
    SimStream stream("sim:0", 1, [&](const SimWork&, uint64_t) {
      cpu_set_t s;
      if (sched_getaffinity(0, sizeof(s), &s) == 0) stream_cpus = CPU_COUNT(&s);
    });
    stream.wait(stream.submit(work_for(0)));
  }
  REQUIRE(sched_setaffinity(0, sizeof(before), &before) == 0);  // restore this thread
  CHECK(stream_cpus == CPU_COUNT(&before));
}
