// libFuzzer target: parse_gguf on arbitrary bytes, then everything a reader does with the result
// (value display, typed getters, tensor geometry, size breakdown). Any problem must be a
// moetier::Error: a crash, leak, sanitizer report, other exception or timeout is a bug.
// Build and run: fuzz/run.sh SECONDS (clang, -fsanitize=fuzzer,address,undefined).
#include <cstddef>
#include <cstdint>
#include <span>

#include "common/error.hpp"
#include "runtime/gguf/gguf_file.hpp"
#include "runtime/models/size_breakdown.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace moetier;
  try {
    const gguf::GgufFile f = gguf::parse_gguf(std::span(reinterpret_cast<const std::byte*>(data), size), "fuzz.gguf");
    size_t sink = 0;
    for (const auto& key : f.metadata.keys()) {
      const gguf::Value* v = f.metadata.find(key);
      sink += v->to_display().size();
      try {
        sink += static_cast<size_t>(f.metadata.get_int(key).value_or(0));
      } catch (const Error&) {
      }
      try {
        sink += f.metadata.get_string(key).value_or("").size();
      } catch (const Error&) {
      }
      try {
        if (auto a = f.metadata.get_float_array(key)) sink += a->size();
      } catch (const Error&) {
      }
    }
    for (const auto& t : f.tensors) sink += static_cast<size_t>(t.n_elements() + t.n_rows() + t.row_size());
    const auto s = models::compute_size_breakdown(f.tensors);
    sink += s.decode_bytes_per_token(8) + s.expert_layers.size();
    if (sink == 0xDEADBEEF) return 1;  // keep the work observable
  } catch (const Error&) {
  }
  return 0;
}
