// `moetier synth`: writes a valid GGUF model of a preset architecture with seeded random weights
// (runtime/synth/synth_model.hpp), with a progress bar on stderr when it is a terminal.
#include <CLI/CLI.hpp>
#include <sys/statvfs.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <map>
#include <string>

#include "common/error.hpp"
#include "common/file_io.hpp"
#include "runtime/cli/commands.hpp"
#include "runtime/cli/inspect_report.hpp"
#include "runtime/cli/option_checks.hpp"
#include "runtime/models/size_breakdown.hpp"
#include "runtime/synth/synth_model.hpp"

namespace moetier::cli {
namespace {

/// Progress bar on stderr, redrawn at most once per percent.
class ProgressBar {
 public:
  void operator()(uint64_t done, uint64_t total) {
    const int pct = total ? static_cast<int>(done * 100 / total) : 100;
    if (pct == last_pct_) return;
    last_pct_ = pct;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double mbps = s > 0 ? static_cast<double>(done) / s / 1e6 : 0.0;
    constexpr int kWidth = 40;
    const int fill = pct * kWidth / 100;
    std::fprintf(stderr, "\r[%s%s] %3d%%  %s / %s  %.0f MB/s ", std::string(static_cast<size_t>(fill), '#').c_str(),
                 std::string(static_cast<size_t>(kWidth - fill), ' ').c_str(), pct,
                 models::format_bytes(done).c_str(), models::format_bytes(total).c_str(), mbps);
    if (done >= total) std::fputc('\n', stderr);
    std::fflush(stderr);
  }

 private:
  int last_pct_ = -1;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

void list_presets() {
  for (const auto& p : synth::all_presets())
    std::printf("%-24s %-10s %s\n", p.name.c_str(), p.arch.c_str(), p.source.c_str());
  std::printf("%-24s %-10s alias of deepseek-v3\n", "deepseek-r1", "deepseek2");
}

}  // namespace

void register_synth(CLI::App& app) {
  struct Args {
    std::string preset, type = "F32", vocab_from, out;
    uint64_t seed = 0;
    bool dry_run = false, json = false, list = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("synth", "Write a GGUF model of a preset architecture with seeded random weights");
  sub->add_option("--preset", a->preset, "Preset name (--list-presets shows them)");
  sub->add_option("--type", a->type, "Weight type: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K Q5_K Q6_K MXFP4 "
                  "IQ1_S IQ1_M IQ2_XXS IQ2_XS IQ2_S IQ3_XXS IQ3_S IQ4_NL IQ4_XS")
      ->capture_default_str();
  sub->add_option("--vocab-from", a->vocab_from, "Copy every tokenizer.* key from this GGUF (default: self-made BPE)");
  sub->add_option("--seed", a->seed, "Random seed (same seed, same bytes)")
      ->capture_default_str()
      ->check(in_range(0, static_cast<long double>(std::numeric_limits<uint64_t>::max())));
  sub->add_option("-o,--output", a->out, "Output GGUF file (a new name or a regular file, replaced when complete)")
      ->check(non_empty());
  sub->add_flag("--dry-run", a->dry_run, "Print what would be written (the inspect report) and write nothing");
  sub->add_flag("--json", a->json, "With --dry-run: print the report as JSON");
  sub->add_flag("--list-presets", a->list, "List the presets and exit");
  sub->callback([a] {
    if (a->list) return list_presets();
    if (a->preset.empty()) fail("synth: --preset is required (--list-presets shows them)");
    const auto type = ggml_type_from_name(a->type);
    if (!type) fail("synth: unknown type {}", a->type);
    if (!a->dry_run) check_distinct_files({{"--vocab-from", a->vocab_from}}, {{"-o", a->out}});
    const synth::SynthModel m = synth::build_synth_model({a->preset, *type, a->vocab_from, a->seed});
    if (a->dry_run) {
      const gguf::Metadata md = m.metadata_map();
      const auto tensors = m.tensor_infos();
      InspectInput in;
      in.file = a->out.empty() ? "(" + a->preset + ")" : a->out;
      in.metadata = &md;
      in.tensors = &tensors;
      const auto report = inspect_report(in);
      const std::string text =
          a->json ? report.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n" : inspect_text(report);
      std::fwrite(text.data(), 1, text.size(), stdout);
      return;
    }
    if (a->out.empty()) fail("synth: -o OUT.gguf is required (or --dry-run)");
    // Refuses a folder, FIFO, socket or device as -o, and writes through a temporary beside the target,
    // renamed onto it on success, so that a failed run leaves no truncated model and nothing else replaced.
    OutputFile file(a->out, "GGUF model");
    const auto writer = m.make_writer();
    const uint64_t size = writer.file_size();
    const std::filesystem::path out(a->out);
    const std::filesystem::path dir = out.has_parent_path() ? out.parent_path() : std::filesystem::path(".");
    struct statvfs vfs {};
    if (::statvfs(dir.c_str(), &vfs) == 0) {
      const uint64_t avail = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
      if (avail < size)
        fail("{}: {} needs {} but only {} are free in {}", a->out, a->preset, models::format_bytes(size),
             models::format_bytes(avail), dir.string());
    }
    const bool tty = ::isatty(::fileno(stderr)) != 0;
    if (tty)
      std::fprintf(stderr, "synth: %s %s seed %llu -> %s (%s)\n", a->preset.c_str(), a->type.c_str(),
                   static_cast<unsigned long long>(a->seed), a->out.c_str(), models::format_bytes(size).c_str());
    ProgressBar bar;
    writer.write(file.temp_path(), m.fill_fn(), tty ? gguf::GgufWriter::ProgressFn(std::ref(bar)) : gguf::GgufWriter::ProgressFn{});
    file.commit();
    // Which types the tensors got: the requested one applies only where llama-quantize would put it (the
    // 1-3-bit IQ types on routed experts only; rows not a multiple of the block fall back).
    std::map<std::string, int> types;
    for (const auto& t : m.tensors) ++types[std::string(ggml_type_name(t.type))];
    std::string hist;
    for (const auto& [name, n] : types) hist += fmt::format("{}{} x{}", hist.empty() ? "" : ", ", name, n);
    std::printf("%s: %s, %zu tensors, %llu bytes (%s)\n", a->out.c_str(), a->preset.c_str(), m.tensors.size(),
                static_cast<unsigned long long>(size), hist.c_str());
    if (!types.count(std::string(ggml_type_name(m.type))))
      std::printf("note: no tensor of %s takes %s (its shapes fall back as llama-quantize's do); the file tests the "
                  "types above\n", a->preset.c_str(), std::string(ggml_type_name(m.type)).c_str());
  });
}

}  // namespace moetier::cli
