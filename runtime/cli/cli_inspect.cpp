// `moetier inspect MODEL [--json]`: prints what a GGUF model is and what running it costs (see
// runtime/cli/inspect_report.hpp; JSON schema in docs/inspect-json.md).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>
#include <string>

#include "runtime/cli/commands.hpp"
#include "runtime/cli/inspect_report.hpp"
#include "runtime/gguf/gguf_model.hpp"

namespace moetier::cli {

void register_inspect(CLI::App& app) {
  struct Args {
    std::string model;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("inspect", "Show a GGUF model's architecture, hyper-parameters and sizes");
  sub->add_option("model", args->model, "GGUF model file (first part of a split model)")->required();
  sub->add_flag("--json", args->json, "Print JSON (schema moetier.inspect/1, docs/inspect-json.md)");
  sub->callback([args] {
    const auto model = gguf::GgufModel::open(args->model);
    InspectInput in;
    in.file = args->model;
    in.gguf_version = model.file(0).version;
    in.n_files = model.n_files();
    in.metadata = &model.metadata();
    in.tensors = &model.tensors();
    const auto report = inspect_report(in);
    const std::string out = args->json ? report.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n" : inspect_text(report);
    std::fwrite(out.data(), 1, out.size(), stdout);
  });
}

}  // namespace moetier::cli
