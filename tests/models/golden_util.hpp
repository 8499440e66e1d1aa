// Helpers for the golden end-to-end tests: loading ../shared/golden/<stem>/golden.json and the dumps.
#pragma once

#include <nlohmann/json.hpp>

#include <fstream>
#include <string>
#include <vector>

#include "tests/npy.hpp"
#include "tests/shared_data.hpp"

namespace moetier::test {

inline nlohmann::json read_json(const std::filesystem::path& p) {
  std::ifstream in(p);
  if (!in) throw std::runtime_error(p.string() + ": cannot open");
  return nlohmann::json::parse(in);
}

inline std::vector<std::string> golden_stems() {
  return {"mixtral-tiny-f32", "mixtral-tiny-q8_0", "qwen3moe-tiny-q8_0", "deepseek2-tiny-f32", "deepseek2-tiny-q8_0"};
}

/// File name of dump tensor `name` (first match) in dump_p0/index.json, or "".
inline std::string dump_file(const nlohmann::json& index, const std::string& name) {
  for (const auto& t : index["tensors"])
    if (t["name"] == name) return t["file"];
  return "";
}

}  // namespace moetier::test
