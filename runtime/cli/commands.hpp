// Subcommands of the `moetier` CLI. Each lives in its own file and registers itself on the root
// CLI::App (CLI11); main.cpp calls every register_* function. A subcommand's callback throws
// moetier::Error on failure; main prints "moetier: error: <what>" on stderr and exits 1.
#pragma once

namespace CLI {
class App;
}

namespace moetier::cli {

/// `moetier inspect MODEL [--json]`: architecture, hyper-parameters, type histogram, size breakdown,
/// decode bytes per token and KV-cache bytes per token (runtime/cli/cli_inspect.cpp).
void register_inspect(CLI::App& app);

/// `moetier synth --preset NAME [--type T] [--vocab-from GGUF] [--seed N] -o OUT.gguf [--dry-run]`:
/// writes a valid GGUF with seeded random weights (runtime/cli/cli_synth.cpp).
void register_synth(CLI::App& app);

/// `moetier run -m MODEL -p PROMPT ...`: text generation (runtime/cli/cli_run.cpp).
void register_run(CLI::App& app);

/// `moetier chat -m MODEL [run options] [--chat-template NAME] [--system TEXT]`: interactive chat
/// (runtime/cli/cli_chat.cpp).
void register_chat(CLI::App& app);

/// `moetier bench -m MODEL -p 512 -n 128 -r 3`: llama-bench-style table with roofline ratios.
void register_bench(CLI::App& app);

/// `moetier plan -m MODEL --ram-budget SIZE [-o PLAN]`: placement and predicted speed (cli_plan.cpp).
void register_plan(CLI::App& app);

/// `moetier serve -m MODEL [--port 8080] [--parallel N]`: OpenAI-compatible HTTP server (cli_serve.cpp).
void register_serve(CLI::App& app);

/// `moetier profile -m MODEL [run options] -o DIR`: traced generation; trace.json, summary.json,
/// heatmap.svg, routing.jsonl in DIR (cli_profile.cpp).
void register_profile(CLI::App& app);

/// `moetier calibrate [-m MODEL | --preset NAME] [-t N] [--quick] [-o FILE]`: writes the machine profile
/// (cli_calibrate.cpp).
void register_calibrate(CLI::App& app);

}  // namespace moetier::cli
