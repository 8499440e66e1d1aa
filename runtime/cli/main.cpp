// `moetier`: entry point of the CLI. Subcommands register themselves (runtime/cli/commands.hpp); every
// failure is one line "moetier: error: <what>" on stderr and exit status 1.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>

#include "common/error.hpp"
#include "runtime/cli/commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"moetier: Mixture-of-Experts inference with GPU / DRAM / NVMe expert tiers", "moetier"};
  app.require_subcommand(1);
  moetier::cli::register_inspect(app);
  moetier::cli::register_synth(app);
  moetier::cli::register_run(app);
  moetier::cli::register_bench(app);
  moetier::cli::register_plan(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const moetier::Error& e) {
    std::fprintf(stderr, "moetier: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moetier: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
