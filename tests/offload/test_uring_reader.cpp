// Tests of offload/uring_reader: correctness against the file contents on random unaligned ranges, both
// backends (io_uring and forced pread), out-of-order waits, fault injection (short reads, transient
// errors, EIO, truncation) and a file really truncated after opening.
#include <doctest/doctest.h>

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <map>
#include <random>

#include "offload/uring_reader.hpp"
#include "offload_test_util.hpp"

using namespace moetier::offload;
using moetier::test::ScopedEnv;
using moetier::test::SlotBuffers;
using moetier::test::TempDataFile;

namespace {

struct TestExpert {
  ExpertId id;
  std::vector<ByteRange> ranges;
};

// Random experts of 1..3 ranges over a file of `file_size` bytes: tiny, medium, multi-chunk, and ranges
// ending exactly at end of file (whose aligned extent runs past it).
std::vector<TestExpert> random_experts(size_t n, uint64_t file_size, uint64_t seed, uint64_t max_len) {
  std::mt19937_64 rng(seed);
  std::vector<TestExpert> out;
  for (size_t i = 0; i < n; ++i) {
    TestExpert e{ExpertId{static_cast<int32_t>(i / 8), static_cast<int32_t>(i % 8)}, {}};
    const size_t n_ranges = 1 + rng() % 3;
    for (size_t r = 0; r < n_ranges; ++r) {
      uint64_t len = 0;
      switch (rng() % 4) {
        case 0: len = 1 + rng() % 100; break;
        case 1: len = 1 + rng() % 9000; break;
        default: len = 1 + rng() % max_len; break;
      }
      len = std::min(len, file_size);
      const uint64_t off = (rng() % 5 == 0) ? file_size - len : rng() % (file_size - len + 1);
      e.ranges.push_back(ByteRange{0, off, len});
    }
    out.push_back(std::move(e));
  }
  return out;
}

uint64_t max_slot(const std::vector<TestExpert>& experts) {
  uint64_t m = 0;
  for (const TestExpert& e : experts) m = std::max(m, slot_bytes_needed(e.ranges));
  return m;
}

bool same_bytes(const UringReader& reader, uint32_t slot, const TestExpert& e, const TempDataFile& file) {
  for (size_t i = 0; i < e.ranges.size(); ++i) {
    const auto d = reader.data(slot, i);
    if (d.size() != e.ranges[i].length) return false;
    if (std::memcmp(d.data(), file.bytes().data() + e.ranges[i].offset, d.size()) != 0) return false;
  }
  return true;
}

// Reads every expert through `reader` keeping all slots busy; checks each completion's bytes. Returns
// how many completions arrived in an order different from submission.
size_t read_all_and_check(UringReader& reader, const std::vector<TestExpert>& experts, const TempDataFile& file) {
  std::vector<uint32_t> free_slots;
  for (uint32_t s = 0; s < reader.n_slots(); ++s) free_slots.push_back(s);
  std::map<ExpertId, size_t> index;
  size_t next = 0, done = 0, out_of_order = 0, expected_next_done = 0;
  std::vector<Completion> comps;
  while (done < experts.size()) {
    while (next < experts.size() && !free_slots.empty()) {
      const uint32_t s = free_slots.back();
      free_slots.pop_back();
      index[experts[next].id] = next;
      reader.submit(experts[next].id, experts[next].ranges, s);
      ++next;
    }
    comps.clear();
    reader.poll(comps, true);
    REQUIRE(!comps.empty());
    for (const Completion& c : comps) {
      REQUIRE_MESSAGE(c.ok(), c.error);
      const size_t i = index.at(c.expert);
      out_of_order += i != expected_next_done;
      expected_next_done = i + 1;
      CHECK(same_bytes(reader, c.slot, experts[i], file));
      free_slots.push_back(c.slot);
      ++done;
    }
  }
  CHECK(reader.n_active() == 0);
  return out_of_order;
}

ReaderOptions small_chunks(bool force_pread) {
  ReaderOptions o;
  o.queue_depth = 16;
  o.chunk_bytes = 16 * 1024;  // many reads per expert, completing in any order
  o.force_pread = force_pread;
  return o;
}

}  // namespace

TEST_CASE("slot layout: aligned extents, sub-range offsets, bound") {
  const std::vector<ByteRange> ranges{{0, 4095, 2}, {0, 8192, 4096}, {0, 100, 0}, {0, 12345, 70000}};
  std::vector<RangePlacement> p;
  const uint64_t total = layout_slot(ranges, p);
  REQUIRE(p.size() == ranges.size());
  uint64_t pos = 0;
  for (size_t i = 0; i < ranges.size(); ++i) {
    CHECK(p[i].read_offset % kIoAlignment == 0);
    CHECK(p[i].read_length % kIoAlignment == 0);
    CHECK(p[i].slot_offset == pos);
    CHECK(p[i].read_offset <= ranges[i].offset);
    if (ranges[i].length > 0) {
      CHECK(p[i].read_offset + p[i].read_length >= ranges[i].offset + ranges[i].length);
      CHECK(p[i].read_offset + p[i].read_length < ranges[i].offset + ranges[i].length + kIoAlignment);
    } else {
      CHECK(p[i].read_length == 0);
    }
    CHECK(p[i].data_offset == p[i].slot_offset + ranges[i].offset - p[i].read_offset);
    pos += p[i].read_length;
  }
  CHECK(total == pos);
  CHECK(total <= slot_bytes_bound(total_length(ranges), ranges.size()));
}

TEST_CASE("uring reader: random unaligned ranges match the file, both backends") {
  const TempDataFile file(3 * 1024 * 1024 + 1234, 11);
  const auto experts = random_experts(120, file.bytes().size(), 5, 200000);
  for (const bool force_pread : {false, true}) {
    CAPTURE(force_pread);
    SlotBuffers slots(6, max_slot(experts));
    UringReader reader({file.path()}, slots.spans, small_chunks(force_pread));
    CHECK(reader.backend() == (force_pread ? "pread" : "io_uring"));
    MESSAGE("backend ", reader.backend(), ", O_DIRECT ", reader.direct(0), ", registered buffers ",
            reader.buffers_registered());
    const size_t ooo = read_all_and_check(reader, experts, file);
    MESSAGE("completions out of submission order: ", ooo, " of ", experts.size());
  }
}

TEST_CASE("uring reader: MOETIER_NO_URING=1 forces the pread backend") {
  const TempDataFile file(256 * 1024 + 77, 3);
  const auto experts = random_experts(30, file.bytes().size(), 9, 60000);
  const ScopedEnv env("MOETIER_NO_URING", "1");
  SlotBuffers slots(4, max_slot(experts));
  UringReader reader({file.path()}, slots.spans, small_chunks(false));
  CHECK(reader.backend() == "pread");
  read_all_and_check(reader, experts, file);
}

TEST_CASE("uring reader: io_uring refused by seccomp (ENOSYS) -> pread fallback, same results") {
  const TempDataFile file(300 * 1024 + 1, 8);
  const auto experts = random_experts(20, file.bytes().size(), 19, 50000);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {  // child: forbid io_uring_setup, then read everything; the exit code tells the result
    sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog prog{static_cast<unsigned short>(sizeof(filter) / sizeof(filter[0])), filter};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
      ::_exit(3);
    int code = 0;
    try {
      SlotBuffers slots(1, max_slot(experts));
      UringReader reader({file.path()}, slots.spans, small_chunks(false));
      if (reader.backend() != "pread") code = 2;
      for (const TestExpert& e : experts) {
        reader.submit(e.id, e.ranges, 0);
        if (!reader.wait(e.id).ok() || !same_bytes(reader, 0, e, file)) code = 1;
      }
    } catch (...) {
      code = 4;
    }
    ::_exit(code);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 3) {
    MESSAGE("seccomp filters unavailable here: the refused-io_uring path was not exercised");
    return;
  }
  CHECK(WEXITSTATUS(status) == 0);  // 2: io_uring not refused, 1: wrong bytes, 4: an exception
}

TEST_CASE("uring reader: buffered mode (no O_DIRECT) and unregistered buffers") {
  const TempDataFile file(512 * 1024 + 5, 4);
  const auto experts = random_experts(40, file.bytes().size(), 13, 100000);
  ReaderOptions o = small_chunks(false);
  o.direct = false;
  o.register_buffers = false;
  SlotBuffers slots(3, max_slot(experts));
  UringReader reader({file.path()}, slots.spans, o);
  CHECK(!reader.direct(0));
  CHECK(!reader.buffers_registered());
  read_all_and_check(reader, experts, file);
}

TEST_CASE("uring reader: wait() in reverse submission order, several files") {
  const TempDataFile a(1024 * 1024, 21), b(700 * 1000 + 3, 22);
  for (const bool force_pread : {false, true}) {
    CAPTURE(force_pread);
    SlotBuffers slots(4, 1024 * 1024 + 3 * 8192);
    UringReader reader({a.path(), b.path()}, slots.spans, small_chunks(force_pread));
    const std::vector<std::vector<ByteRange>> ranges{
        {{0, 33, 900000}}, {{1, 100, 5000}, {0, 7, 3}}, {{1, 699000, 1003}}, {{0, 4096, 4096}, {1, 1, 1}}};
    for (uint32_t i = 0; i < 4; ++i) reader.submit(ExpertId{0, static_cast<int32_t>(i)}, ranges[i], i);
    CHECK(reader.n_active() == 4);
    for (int i = 3; i >= 0; --i) {
      const Completion c = reader.wait(ExpertId{0, i});
      REQUIRE_MESSAGE(c.ok(), c.error);
      CHECK(c.slot == static_cast<uint32_t>(i));
      for (size_t r = 0; r < ranges[i].size(); ++r) {
        const ByteRange& br = ranges[i][r];
        const auto& src = br.file_index == 0 ? a.bytes() : b.bytes();
        const auto d = reader.data(c.slot, r);
        REQUIRE(d.size() == br.length);
        CHECK(std::memcmp(d.data(), src.data() + br.offset, br.length) == 0);
      }
    }
    std::vector<Completion> rest;
    CHECK(reader.poll(rest) == 0);  // all were returned by wait()
    CHECK(reader.n_active() == 0);
  }
}

TEST_CASE("uring reader: misuse is refused with a clear error") {
  const TempDataFile file(64 * 1024, 1);
  SlotBuffers slots(2, 16384);
  UringReader reader({file.path()}, slots.spans);
  const std::vector<ByteRange> ok{{0, 10, 100}};
  CHECK_THROWS_WITH_AS(reader.submit({1, 2}, std::vector<ByteRange>{{0, 60000, 10000}}, 0),
                       doctest::Contains("beyond end of file"), moetier::Error);
  CHECK_THROWS_WITH_AS(reader.submit({1, 2}, std::vector<ByteRange>{{3, 0, 10}}, 0), doctest::Contains("file index 3"),
                       moetier::Error);
  CHECK_THROWS_WITH_AS(reader.submit({1, 2}, std::vector<ByteRange>{{0, 100, 20000}}, 0),
                       doctest::Contains("slot 0 holds 16384 bytes"), moetier::Error);
  reader.submit({1, 2}, ok, 0);
  CHECK_THROWS_WITH_AS(reader.submit({1, 3}, ok, 0), doctest::Contains("busy"), moetier::Error);
  CHECK_THROWS_WITH_AS(reader.submit({1, 2}, ok, 1), doctest::Contains("already being read"), moetier::Error);
  CHECK_THROWS_WITH_AS(reader.wait({9, 9}), doctest::Contains("not submitted"), moetier::Error);
  CHECK(reader.wait({1, 2}).ok());
  CHECK_THROWS_AS(UringReader({"/nonexistent/moetier.gguf"}, slots.spans), moetier::Error);
}

TEST_CASE("uring reader: injected short reads and EAGAIN/EINTR complete correctly") {
  const TempDataFile file(1024 * 1024 + 999, 31);
  const auto experts = random_experts(50, file.bytes().size(), 17, 150000);
  for (const bool force_pread : {false, true}) {
    for (const int transient : {EAGAIN, EINTR}) {
      CAPTURE(force_pread);
      CAPTURE(transient);
      auto faults = std::make_shared<ScriptedFaults>();
      faults->short_reads(3);
      faults->transient(transient, 25);
      ReaderOptions o = small_chunks(force_pread);
      o.faults = faults;
      SlotBuffers slots(5, max_slot(experts));
      UringReader reader({file.path()}, slots.spans, o);
      read_all_and_check(reader, experts, file);
      CHECK(faults->n_short() > 0);
      CHECK(faults->n_transient() == 25);
    }
  }
}

TEST_CASE("uring reader: EIO fails only the expert that hit it, with file, offset, length, expert") {
  const TempDataFile file(512 * 1024, 41);
  for (const bool force_pread : {false, true}) {
    CAPTURE(force_pread);
    auto faults = std::make_shared<ScriptedFaults>();
    faults->fail_at(0, 300000);
    ReaderOptions o = small_chunks(force_pread);
    o.faults = faults;
    SlotBuffers slots(3, 256 * 1024);
    UringReader reader({file.path()}, slots.spans, o);
    const std::vector<ByteRange> bad{{0, 100, 1000}, {0, 250001, 100000}};  // second range covers 300000
    const std::vector<ByteRange> good{{0, 1000, 50000}};
    reader.submit({7, 3}, bad, 0);
    reader.submit({7, 4}, good, 1);
    const Completion cb = reader.wait({7, 3});
    CHECK(!cb.ok());
    CHECK(cb.error.find(file.path()) != std::string::npos);
    CHECK(cb.error.find("layer 7 expert 3") != std::string::npos);
    CHECK(cb.error.find("offset 250001") != std::string::npos);
    CHECK(cb.error.find("length 100000") != std::string::npos);
    CHECK(cb.error.find("EIO") != std::string::npos);
    CHECK_THROWS_AS(cb.throw_if_failed(), moetier::Error);
    CHECK(faults->n_errors() >= 1);
    const Completion cg = reader.wait({7, 4});
    REQUIRE_MESSAGE(cg.ok(), cg.error);
    CHECK(std::memcmp(reader.data(1, 0).data(), file.bytes().data() + 1000, 50000) == 0);
    // The failed slot is free again and usable.
    CHECK(!reader.busy(0));
    reader.submit({7, 5}, good, 0);
    CHECK(reader.wait({7, 5}).ok());
  }
}

TEST_CASE("uring reader: truncation (injected and real) gives a clear error, no hang") {
  const TempDataFile file(1024 * 1024, 51);
  for (const bool force_pread : {false, true}) {
    CAPTURE(force_pread);
    SUBCASE("injected") {
      auto faults = std::make_shared<ScriptedFaults>();
      faults->truncate(0, 600001);
      ReaderOptions o = small_chunks(force_pread);
      o.faults = faults;
      SlotBuffers slots(2, 512 * 1024);
      UringReader reader({file.path()}, slots.spans, o);
      reader.submit({2, 1}, std::vector<ByteRange>{{0, 550000, 100000}}, 0);  // straddles the cut
      reader.submit({2, 2}, std::vector<ByteRange>{{0, 10, 500000}}, 1);      // before it
      const Completion c = reader.wait({2, 1});
      CHECK(!c.ok());
      CHECK(c.error.find("unexpected end of file") != std::string::npos);
      CHECK(c.error.find("layer 2 expert 1") != std::string::npos);
      CHECK(reader.wait({2, 2}).ok());
    }
    SUBCASE("real file truncated after opening") {
      const TempDataFile f2(1024 * 1024, 52);
      SlotBuffers slots(3, 512 * 1024);
      UringReader reader({f2.path()}, slots.spans, small_chunks(force_pread));
      f2.truncate(400000);
      reader.submit({4, 0}, std::vector<ByteRange>{{0, 700000, 200000}}, 0);  // wholly past the new end
      reader.submit({4, 1}, std::vector<ByteRange>{{0, 390000, 20000}}, 1);   // straddles it
      reader.submit({4, 2}, std::vector<ByteRange>{{0, 1000, 200000}}, 2);    // still there
      std::vector<Completion> comps;
      while (comps.size() < 3) reader.poll(comps, true);
      for (const Completion& c : comps) {
        CAPTURE(c.error);
        if (c.expert.expert == 2) {
          CHECK(c.ok());
          CHECK(std::memcmp(reader.data(c.slot, 0).data(), f2.bytes().data() + 1000, 200000) == 0);
        } else {
          CHECK(!c.ok());
          CHECK(c.error.find("unexpected end of file") != std::string::npos);
          CHECK(c.error.find(f2.path()) != std::string::npos);
        }
      }
    }
  }
}

TEST_CASE("uring reader: a stuck transient error gives up after max_retries") {
  const TempDataFile file(64 * 1024, 61);
  auto faults = std::make_shared<ScriptedFaults>();
  faults->transient(EAGAIN, 1000000);
  ReaderOptions o;
  o.max_retries = 5;
  o.faults = faults;
  SlotBuffers slots(1, 65536);
  UringReader reader({file.path()}, slots.spans, o);
  reader.submit({0, 0}, std::vector<ByteRange>{{0, 0, 4096}}, 0);
  const Completion c = reader.wait({0, 0});
  CHECK(!c.ok());
  CHECK(c.error.find("gave up after 5 retries") != std::string::npos);
}
