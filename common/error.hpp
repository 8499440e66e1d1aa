// moetier::Error — the one error type of the project.
// Thrown at load and configuration time (never from hot loops). The message carries its context, e.g.
// "model.gguf: tensor blk.3.ffn_up_exps: offset beyond end of file (offset 123, size 456, file 400)".
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace moetier {

/// The project's error: a std::runtime_error whose what() is one self-contained line naming the
/// file / tensor / offset involved and what was expected. Catch it at the CLI, print what(), exit 1.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

/// Throws moetier::Error with a fmt-formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace moetier
