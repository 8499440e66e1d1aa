// Text from files (metadata strings, tensor names, paths) made safe to print on a terminal: control
// characters never reach it raw, so an error stays one line and carries no escape sequences.
#pragma once

#include <fmt/format.h>

#include <string>
#include <string_view>

namespace moetier::cli {

/// `s` with every control byte (< 0x20 and 0x7f) written as an escape: \n, \r, \t, else \xHH (two
/// lower-case hex digits). Other bytes, UTF-8 included, are kept as they are.
inline std::string escape_control_chars(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c != 0x7f) out.push_back(ch);
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else out += fmt::format("\\x{:02x}", c);
  }
  return out;
}

}  // namespace moetier::cli
