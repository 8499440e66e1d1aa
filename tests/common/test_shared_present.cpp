#include <doctest/doctest.h>

#include <cstdlib>
#include <string>

#include "tests/shared_data.hpp"

TEST_CASE("CI has ../shared (tests that need it must run there, not skip)") {
  const char* ci = std::getenv("CI");
  if (ci && std::string(ci) == "true") {
    CHECK_MESSAGE(moetier::test::shared_available(), "CI=true but ../shared/models is missing");
  } else {
    CHECK(moetier::test::shared_dir().string().size() > 0);
  }
}
