// The DRAM budget is the whole process: a model whose routed experts (tens of MB) far exceed the budget
// runs with `moetier run --ram-budget`, and the process's peak resident memory (VmHWM, measured inside
// the `moetier` child by an LD_PRELOAD probe, so this test process's own memory does not count) stays
// within the budget for contexts of 64, 4096 and 65536 positions: the KV cache, scratch, I/O state,
// metadata + tokenizer and the fixed overhead (tiered::kFixedOverheadBytes) are counted in the budget,
// and a budget too small for them and the non-expert weights is refused with one line saying how much
// is needed. Streamed experts are never mmapped: pages inside them are absent from the process's
// mapping of the GGUF file (/proc/self/pagemap), the bytes the cache reports equal the catalog's
// extents of what it read, and equal the storage reads the kernel counted for the child
// (/proc/self/io read_bytes, with O_DIRECT).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "offload/routing_trace.hpp"
#include "offload/slot_layout.hpp"
#include "runtime/tiered/memory_budget.hpp"
#include "tests/tiered/tiered_test_util.hpp"

using namespace moetier;
using moetier::test::LoadedModel;
using moetier::test::TempDir;
using Json = nlohmann::json;

namespace {

constexpr uint64_t kMiB = 1ull << 20;
/// Run-to-run noise of VmHWM between two runs that differ only in budget (allocator arenas, stacks).
constexpr uint64_t kNoiseBytes = 3 * kMiB;
/// Experts made this wide: 16 experts x 2 layers of ~2 MB each, ~65 MB of routed experts.
constexpr int64_t kWideExperts = 8192;
/// A read fault on a file mapping maps neighbouring page-cache pages too: fault-around (64 KiB) and,
/// on recent kernels (seen on 6.18), the whole large folio, up to 2 MiB aligned in the file. Pages of
/// a 2 MiB-aligned block that also holds DRAM-homed or non-expert bytes may thus be mapped without
/// anything reading them; blocks entirely inside streamed experts must not be.
constexpr uint64_t kLargeFolioBytes = 2 * kMiB;

struct WideModel {
  TempDir dir;
  std::string path = dir.file("tiny-qwen3moe-wide.gguf");
  WideModel() { test::write_tiny_model(path, "tiny-qwen3moe", GgmlType::Q4_K, kWideExperts); }
};
const WideModel& wide() {
  static WideModel m;
  return m;
}

/// The prompt of the runs below (47 tokens: they fit in -c 64 with 6 generated).
constexpr const char* kPrompt = "Tiered experts keep the hottest weights in memory and stream the rest from disk";

/// The budget `moetier run -c n_ctx` asks for when given one too small: its error is one line naming
/// the KV cache for n_ctx positions and ending "give --ram-budget NMiB or more, ...". Returns N MiB.
uint64_t asked_budget(const TempDir& dir, int64_t n_ctx) {
  const auto r = test::run_moetier(dir, {"run", "-m", wide().path, "-c", std::to_string(n_ctx), "-n", "6", "--temp",
                                         "0", "-p", kPrompt, "--ram-budget", "1MiB"});
  CAPTURE(r.err);
  REQUIRE(r.status == 1);
  REQUIRE(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  for (const char* part : {"non-expert weights", "one streamed expert", "scratch", "I/O", "metadata and tokenizer",
                           "fixed overhead"})
    CHECK(r.err.find(part) != std::string::npos);
  CHECK(r.err.find(fmt::format("KV cache for {} positions", n_ctx)) != std::string::npos);
  // What opening the model and its tokenizer took, measured from RSS: a few MiB for these tiny files
  // (a regression once counted the whole process, ~15 MiB, and failed the demo's budget).
  {
    const std::string mk = "metadata and tokenizer ";
    const size_t m = r.err.find(mk);
    REQUIRE(m != std::string::npos);
    const double v = std::stod(r.err.substr(m + mk.size()));
    const std::string unit = r.err.substr(r.err.find(' ', m + mk.size()) + 1, 3);
    CHECK((unit == "KiB" || (unit == "MiB" && v < 4.0) || unit == "B (" || unit.starts_with("B")));
  }
  const std::string key = "give --ram-budget ";
  const size_t at = r.err.find(key);
  REQUIRE(at != std::string::npos);
  return std::stoull(r.err.substr(at + key.size())) * kMiB;
}

struct ProbeResult {
  uint64_t vmhwm = 0, read_bytes = 0;
  Json result;
  std::string err;
};

/// `moetier run` of the wide model under the probe; extra args select the tiers.
ProbeResult probed_run(const TempDir& dir, std::vector<std::string> extra, int64_t n_ctx = 128) {
  const char* probe = std::getenv("MOETIER_VMHWM_PROBE");
  REQUIRE(probe != nullptr);
  const std::string out = dir.file("probe.txt");
  std::filesystem::remove(out);
  std::vector<std::string> args = {"run", "-m", wide().path, "-c", std::to_string(n_ctx), "-n", "6", "--temp", "0", "--ignore-eos",
                                   "--json", "-p", kPrompt};
  args.insert(args.end(), extra.begin(), extra.end());
  const auto r = test::run_moetier(dir, args,
                                   {"LD_PRELOAD=" + test::shell_quote(probe), "MOETIER_PROBE_OUT=" + test::shell_quote(out)});
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  ProbeResult p;
  p.err = r.err;
  REQUIRE_NOTHROW(p.result = Json::parse(r.out));
  std::istringstream in(test::slurp(out));
  std::string key;
  uint64_t v = 0;
  while (in >> key >> v) {
    if (key == "vmhwm_kb") p.vmhwm = v * 1024;
    if (key == "read_bytes") p.read_bytes = v;
  }
  REQUIRE_MESSAGE(p.vmhwm > 0, "the probe wrote no VmHWM (" << out << ")");
  return p;
}

/// True when the page at `addr` is mapped in this process (/proc/self/pagemap bit 63).
bool page_present(int pagemap_fd, const void* addr) {
  const auto page = reinterpret_cast<uintptr_t>(addr) / static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  uint64_t entry = 0;
  if (::pread(pagemap_fd, &entry, sizeof entry, static_cast<off_t>(page * sizeof entry)) != sizeof entry) return true;
  return (entry >> 63) & 1;
}

}  // namespace

TEST_CASE("tiered budget: moetier run --ram-budget keeps VmHWM within the budget for -c 64, 4096, 65536") {
  const char* probe = std::getenv("MOETIER_VMHWM_PROBE");
  if (probe == nullptr || std::string(std::getenv("MOETIER_SANITIZE") ? std::getenv("MOETIER_SANITIZE") : "") == "1") {
    MESSAGE("skipped: no VmHWM probe (MOETIER_VMHWM_PROBE unset) or a sanitizer build");
    return;
  }
  LoadedModel m(wide().path);
  const uint64_t ne = tiered::non_expert_bytes(*m.model);
  const auto id = tiered::model_identity(*m.model);
  uint64_t experts = 0;
  for (uint64_t b : id.expert_bytes) experts += b * static_cast<uint64_t>(id.n_experts);
  const uint64_t one = *std::max_element(id.expert_bytes.begin(), id.expert_bytes.end());
  MESSAGE("routed experts " << experts / 1e6 << " MB (" << one / 1e6 << " MB each), non-expert " << ne / 1e6 << " MB");
  REQUIRE(experts >= 48 * kMiB);

  TempDir dir;
  const std::string trace = dir.file("routing.jsonl");
  const ProbeResult res = probed_run(dir, {}, 64);
  std::map<int64_t, uint64_t> asked;
  std::vector<ProbeResult> runs;
  for (const int64_t n_ctx : {64, 4096, 65536}) {
    CAPTURE(n_ctx);
    const uint64_t b = asked_budget(dir, n_ctx);
    asked[n_ctx] = b;
    std::vector<std::string> extra = {"--ram-budget", std::to_string(b), "--no-prefetch"};
    if (n_ctx == 64) extra.insert(extra.end(), {"--record-routing", trace});
    const ProbeResult r = probed_run(dir, extra, n_ctx);
    MESSAGE("-c " << n_ctx << ": --ram-budget " << b / kMiB << " MiB -> VmHWM " << r.vmhwm / 1e6 << " MB ("
                  << (static_cast<double>(b) - static_cast<double>(r.vmhwm)) / 1e6 << " MB to spare)");
    CHECK(r.vmhwm <= b);  // the whole process within the budget
    CHECK(r.result["generated_tokens"] == res.result["generated_tokens"]);
    CHECK(r.result["expert_cache"]["misses"].get<uint64_t>() > 0);
    runs.push_back(r);
  }
  // The KV cache is part of what is asked for: 65536 positions ask for at least their KV cache more.
  CHECK(asked[65536] >= asked[64] + m.model->kv_cache_bytes(65536) - m.model->kv_cache_bytes(64));
  CHECK(asked[4096] >= asked[64]);
  // A larger budget may only add its own size.
  const uint64_t b0 = asked[64], b1 = b0 + 6 * test::slot_bytes(*m.model);
  const ProbeResult r1 = probed_run(dir, {"--ram-budget", std::to_string(b1)}, 64);
  const ProbeResult& r0 = runs[0];
  CHECK(r1.vmhwm <= b1);
  CHECK(static_cast<int64_t>(r1.vmhwm) - static_cast<int64_t>(b1) <=
        static_cast<int64_t>(r0.vmhwm) - static_cast<int64_t>(b0) + static_cast<int64_t>(kNoiseBytes));
  CHECK(r1.result["generated_tokens"] == res.result["generated_tokens"]);

  // The measurement sees expert bytes: the all-resident run maps every routed expert it touched.
  std::set<std::pair<int32_t, int32_t>> routed;
  for (const auto& rec : offload::read_routing_trace(trace).records)
    for (int32_t e : rec.experts) routed.insert({rec.layer, e});
  const uint64_t touched = routed.size() * one;
  MESSAGE(routed.size() << " distinct experts routed (" << touched / 1e6 << " MB)");
  REQUIRE(touched >= 8 * one);
  CHECK(res.vmhwm >= r0.vmhwm + touched / 2);

  // The bytes the cache reports are the bytes the kernel read for the process (O_DIRECT reads count in
  // read_bytes; the GGUF header and the resident weights come from the page cache, just written).
  for (const ProbeResult* r : {&r0, &r1}) {
    const uint64_t reported = (*r).result["expert_cache"]["bytes_read"].get<uint64_t>();
    const uint64_t misses = (*r).result["expert_cache"]["misses"].get<uint64_t>();
    CHECK(misses > 0);
    CHECK(reported >= misses * one);  // every miss read one whole expert at least
    if (r->err.find("buffered") != std::string::npos) {
      MESSAGE("reader fell back to buffered reads (no O_DIRECT here): /proc/self/io not compared");
      continue;
    }
    MESSAGE("cache reports " << reported << " bytes read, /proc/self/io read_bytes " << r->read_bytes);
    CAPTURE(r->err);
    CHECK(r->read_bytes >= reported);
    CHECK(r->read_bytes <= reported + 2 * kMiB);  // cold-cache reads of the header / non-expert pages
  }
}

TEST_CASE("tiered budget: the KV cache, scratch, I/O, metadata and fixed overhead come out of the budget") {
  LoadedModel m(wide().path);
  const auto id = tiered::model_identity(*m.model);
  const uint64_t ne = tiered::non_expert_bytes(*m.model);
  const std::string& file = m.model->gguf().path();
  uint64_t prev_need = 0, prev_kv = 0;
  for (const int64_t n_ctx : {64, 4096, 65536}) {
    CAPTURE(n_ctx);
    tiered::MemoryParts parts = tiered::process_parts(*m.model, n_ctx, 24, 2, 32, 3 * kMiB);
    CHECK(parts.kv_cache == m.model->new_cache(n_ctx).bytes());  // the formula is what is allocated
    CHECK(parts.fixed == tiered::kFixedOverheadBytes + 2 * tiered::kWorkerOverheadBytes);
    CHECK(parts.reserved() == parts.kv_cache + parts.scratch + parts.io + 3 * kMiB + parts.fixed);
    CHECK(parts.scratch >= m.model->scratch_bytes(1, n_ctx, 2));
    const uint64_t need = tiered::min_budget(parts, id);
    CHECK(need == parts.reserved() + ne + offload::planned_slot_bytes(id));
    CHECK(need >= prev_need + parts.kv_cache - prev_kv);  // a larger context asks for its KV cache
    prev_need = need;
    prev_kv = parts.kv_cache;
    // One byte short: one line naming every part and how much to give.
    std::string err;
    try {
      (void)tiered::weights_budget(file, need - 1, parts, id);
    } catch (const Error& e) {
      err = e.what();
    }
    CAPTURE(err);
    CHECK(std::count(err.begin(), err.end(), '\n') == 0);
    for (const std::string& part : {fmt::format("KV cache for {} positions", n_ctx), std::string("non-expert weights"),
                                   std::string("scratch for a batch of 24 tokens"), std::string("fixed overhead"),
                                   std::string("metadata and tokenizer"), std::string("one streamed expert"),
                                   fmt::format("({} bytes)", need), std::string("give --ram-budget")})
      CHECK(err.find(part) != std::string::npos);
    // Enough: the weights get what is left, the plan fits, and everything adds up to at most the budget.
    const uint64_t weights = tiered::weights_budget(file, need, parts, id);
    CHECK(weights == need - parts.reserved());
    const auto plan = offload::plan_from_ram_budget(id, weights, ne);
    REQUIRE(!plan.experts_on(offload::Tier::Kind::Nvme).empty());
    tiered::add_plan_parts(parts, plan, test::slot_bytes(*m.model));
    CHECK(parts.total() <= need);
    CHECK(parts.n_cache_slots >= 1);
    const std::string table = tiered::memory_table(parts, need);
    for (const std::string& part : {std::string("non-expert weights"), std::string("resident experts"),
                                   std::string("expert cache"), fmt::format("KV cache (n_ctx {})", n_ctx),
                                   std::string("scratch"), std::string("I/O slots"), std::string("metadata + tokenizer"),
                                   std::string("fixed overhead"), std::string("of --ram-budget")})
      CHECK(table.find(part) != std::string::npos);
  }
  // Scratch grows with the batch and with the context (attention score rows per worker).
  CHECK(m.model->scratch_bytes(512, 4096, 2) > m.model->scratch_bytes(1, 4096, 2));
  CHECK(m.model->scratch_bytes(1, 65536, 2) > m.model->scratch_bytes(1, 64, 2));
}

TEST_CASE("tiered budget: plan --json and run -v report every part of the budget") {
  TempDir dir;
  const uint64_t budget = 160 * kMiB;
  const auto p = test::run_moetier(dir, {"plan", "-m", wide().path, "--ram-budget", std::to_string(budget), "-c", "4096",
                                         "-b", "64", "--dram-gbps", "10", "--json"});
  CAPTURE(p.err);
  REQUIRE(p.status == 0);
  const Json mem = Json::parse(p.out).at("memory");
  LoadedModel m(wide().path);
  CHECK(mem.at("kv_cache_bytes").get<uint64_t>() == m.model->kv_cache_bytes(4096));
  CHECK(mem.at("n_ctx") == 4096);
  CHECK(mem.at("n_batch") == 64);
  const uint64_t fixed = mem.at("fixed_overhead_bytes").get<uint64_t>();
  REQUIRE(fixed > tiered::kFixedOverheadBytes);
  const auto n_workers = static_cast<int>((fixed - tiered::kFixedOverheadBytes) / tiered::kWorkerOverheadBytes);
  CHECK(fixed == tiered::kFixedOverheadBytes + static_cast<uint64_t>(n_workers) * tiered::kWorkerOverheadBytes);
  CHECK(mem.at("scratch_bytes").get<uint64_t>() == m.model->scratch_bytes(64, 4096, n_workers));
  CHECK(mem.at("non_expert_bytes").get<uint64_t>() == tiered::non_expert_bytes(*m.model));
  CHECK(mem.at("metadata_bytes").get<uint64_t>() > 0);
  uint64_t sum = 0;
  for (const char* k : {"non_expert_bytes", "resident_expert_bytes", "expert_cache_bytes", "kv_cache_bytes",
                        "scratch_bytes", "io_bytes", "metadata_bytes", "fixed_overhead_bytes"})
    sum += mem.at(k).get<uint64_t>();
  CHECK(sum == mem.at("total_bytes").get<uint64_t>());
  CHECK(mem.at("total_bytes").get<uint64_t>() <= budget);
  CHECK(mem.at("budget_bytes").get<uint64_t>() == budget);

  const auto r = test::run_moetier(dir, {"run", "-m", wide().path, "-c", "4096", "-n", "2", "--temp", "0", "-p", "hello",
                                         "--ram-budget", std::to_string(budget), "-v"});
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  for (const char* part : {"non-expert weights", "resident experts", "expert cache", "KV cache (n_ctx 4096)", "scratch",
                           "I/O slots", "metadata + tokenizer", "fixed overhead", "of --ram-budget 160 MiB"})
    CHECK(r.err.find(part) != std::string::npos);
}

TEST_CASE("tiered budget: streamed experts are never mmapped") {
  LoadedModel m(wide().path);
  const auto id = tiered::model_identity(*m.model);
  const uint64_t one = *std::max_element(id.expert_bytes.begin(), id.expert_bytes.end());
  // Room for 12 DRAM-homed experts and a 2-slot cache: DRAM and NVMe experts sit side by side.
  offload::RamBudgetOptions ro;
  ro.min_cache_experts = 2;
  const uint64_t ne = tiered::non_expert_bytes(*m.model);
  const auto plan = offload::plan_from_ram_budget(id, ne + 2 * test::slot_bytes(*m.model) + 12 * one + one / 2, ne, {}, ro);
  const auto streamed = plan.experts_on(offload::Tier::Kind::Nvme);
  REQUIRE(plan.experts_on(offload::Tier::Kind::Dram).size() == 12);
  REQUIRE(streamed.size() == 20);
  tiered::TieredExperts tiers(*m.model, plan);
  m.model->set_streamed_experts(&tiers);
  const auto prompt = test::test_prompt(*m.model, 24);
  const auto got = test::run_steps(*m.model, prompt, 4);
  m.model->set_streamed_experts(nullptr);
  REQUIRE(tiers.total_demand().requests() > 0);

  // Pages of 2 MiB blocks that hold only streamed experts' bytes are not mapped in this process.
  const gguf::GgufModel& g = m.model->gguf();
  const gguf::TensorInfo& t0 = g.require("blk.0.ffn_gate_exps.weight");
  const std::byte* base = g.data(t0).data() - g.byte_range(t0).offset;  // file 0 is mapped from offset 0
  const auto cat = tiered::build_expert_catalog(*m.model, &plan);
  const int fd = ::open("/proc/self/pagemap", O_RDONLY);
  REQUIRE(fd >= 0);
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  // Streamed bytes as maximal runs [begin, end) of file offsets (a layer's streamed experts are adjacent
  // inside each stacked tensor), then the large-folio blocks entirely inside a run.
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  for (const auto e : streamed)
    for (const auto& r : cat.ranges(e)) runs.emplace_back(r.offset, r.offset + r.length);
  std::sort(runs.begin(), runs.end());
  std::vector<std::pair<uint64_t, uint64_t>> merged;
  for (const auto& r : runs) {
    if (!merged.empty() && r.first <= merged.back().second) merged.back().second = std::max(merged.back().second, r.second);
    else merged.push_back(r);
  }
  const auto count_present = [&](uint64_t& checked) {
    uint64_t present = 0;
    checked = 0;
    for (const auto& [b, e] : merged)
      for (uint64_t off = offload::align_up(b, kLargeFolioBytes); off < offload::align_down(e, kLargeFolioBytes);
           off += page) {
        ++checked;
        present += page_present(fd, base + off);
      }
    return present;
  };
  uint64_t checked = 0;
  CHECK(count_present(checked) == 0);
  MESSAGE(checked << " pages inside " << streamed.size() << " streamed experts checked");
  CHECK(checked >= 2048);

  // The all-resident run maps the experts it routes to: the check does see mapped pages.
  const auto reference = test::run_steps(*m.model, prompt, 4);
  CHECK(test::bit_identical(got, reference));
  CHECK(count_present(checked) > 0);
  ::close(fd);
}

TEST_CASE("tiered budget: bytes read through the cache equal the extents of the experts read") {
  // All experts streamed, a cache that holds every expert (nothing evicted), no prediction: each
  // distinct routed expert is read exactly once, as its three 4096-aligned extents.
  TempDir dir;
  const std::string path = dir.file("tiny-qwen3moe.gguf");
  test::write_tiny_model(path, "tiny-qwen3moe", GgmlType::Q4_K);
  LoadedModel m(path);
  const auto& hp = m.model->hparams();
  const auto plan = test::all_nvme_plan(*m.model, static_cast<uint64_t>(hp.n_layer * hp.n_expert));
  tiered::TieredExperts tiers(*m.model, plan);
  tiers.set_prefetch(false);
  m.model->set_streamed_experts(&tiers);
  std::vector<std::vector<models::RoutingRecord>> routing;
  (void)test::run_steps(*m.model, test::test_prompt(*m.model, 10), 4, &routing);
  m.model->set_streamed_experts(nullptr);
  std::set<std::pair<int32_t, int32_t>> used;
  for (const auto& step : routing)
    for (size_t il = 0; il < step.size(); ++il)
      for (int32_t e : step[il].ids) used.insert({static_cast<int32_t>(il), e});
  const auto cat = tiered::build_expert_catalog(*m.model, &plan);
  uint64_t expected = 0;
  for (const auto& [l, e] : used)
    for (const auto& r : cat.ranges(offload::ExpertId{l, e}))
      expected += offload::align_up(r.offset + r.length) - offload::align_down(r.offset);
  const auto st = tiers.cache()->total_stats();
  CHECK(st.evictions == 0);
  CHECK(st.bytes_read == expected);
  CHECK(tiers.total_demand().misses == used.size());
  CHECK(st.misses + st.prefetches == used.size());  // reads started: one per distinct expert

  // A 2-slot cache, no prediction: every read the cache starts is one the provider counted as a miss
  // (an expert found ready when the layer began is not evicted before it is used).
  for (const auto policy : {offload::PolicyKind::Lru, offload::PolicyKind::Lfu, offload::PolicyKind::FreqDecay})
  for (const uint64_t n_slots : {2, 3, 5, 8}) {
    CAPTURE(n_slots);
    tiered::TieredExperts small(*m.model, test::all_nvme_plan(*m.model, n_slots, policy));
    small.set_prefetch(false);
    m.model->set_streamed_experts(&small);
    (void)test::run_steps(*m.model, test::test_prompt(*m.model, 10), 16);
    m.model->set_streamed_experts(nullptr);
    const auto s2 = small.cache()->total_stats();
    const auto d2 = small.total_demand();
    CAPTURE(d2.hits);
    CHECK(s2.misses + s2.prefetches == d2.misses);
    CHECK(s2.hits + s2.inflight_hits + s2.misses == d2.requests());
  }
}
