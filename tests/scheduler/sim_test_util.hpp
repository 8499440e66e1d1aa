// Helpers shared by the simulated-device tests: the message of the moetier::Error a call throws.
#pragma once

#include <functional>
#include <string>

#include "common/error.hpp"

namespace moetier::test {

/// What `f` throws as moetier::Error, or a marker saying it threw nothing.
inline std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no moetier::Error thrown)";
}

}  // namespace moetier::test
