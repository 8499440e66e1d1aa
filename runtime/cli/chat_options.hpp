// Options of `moetier chat` and `moetier run --chat` beyond the run options, and the chat loop both run
// (runtime/cli/cli_chat.cpp).
#pragma once

#include <string>

#include "runtime/cli/run_options.hpp"

namespace CLI {
class App;
}

namespace moetier::cli {

struct ChatOptions {
  bool chat = false;          // `run --chat` / --conversation / -cnv: chat instead of one completion
  std::string chat_template;  // --chat-template NAME ("" = detect from the model)
  std::string system;         // --system TEXT ("" = -p / -f, as llama.cpp's conversation mode)
};

/// Adds --chat-template and --system to `sub` (CLI11), bound to `c`.
void add_chat_options(CLI::App& sub, ChatOptions& c);

/// The interactive chat on standard input / output with the model and sampling options of `o`.
void run_chat(const RunOptions& o, const ChatOptions& c);

}  // namespace moetier::cli
