#include "scheduler/expert_backend.hpp"

#include <fmt/format.h>

#include "common/error.hpp"

namespace moetier::sched {

std::string to_string(FfnKey key) {
  return key.expert == FfnKey::kSharedFfn ? fmt::format("layer {} shared FFN", key.layer)
                                          : fmt::format("layer {} expert {}", key.layer, key.expert);
}

void check_placeable(const std::string& device, FfnKey key, const HostFfn& w,
                     const std::function<std::optional<std::string>(const HostWeight&)>& declines) {
  const std::string what = to_string(key);
  for (const HostWeight* m : {&w.gate, &w.up, &w.down}) {
    const char* which = m == &w.gate ? "gate" : m == &w.up ? "up" : "down";
    if (!m->valid() || m->n_out < 1 || m->n_in < 1) fail("{}: {}: no {} matrix to place", device, what, which);
    if (auto why = declines(*m)) fail("{}: cannot hold {}: {} matrix: {}", device, what, which, *why);
    const uint64_t row = ggml_row_bytes(m->type, static_cast<uint64_t>(m->n_in));
    if (m->row_bytes != row)
      fail("{}: {}: {} matrix has {} bytes per row, expected {} for {} x {}", device, what, which, m->row_bytes, row,
           m->n_in, ggml_type_name(m->type));
  }
  if (w.up.n_out != w.gate.n_out || w.up.n_in != w.gate.n_in || w.down.n_in != w.gate.n_out ||
      w.down.n_out != w.gate.n_in)
    fail("{}: {}: FFN matrices do not fit each other: gate [{}, {}], up [{}, {}], down [{}, {}]", device, what,
         w.gate.n_out, w.gate.n_in, w.up.n_out, w.up.n_in, w.down.n_out, w.down.n_in);
}

void check_group(const std::string& device, const ExpertGroup& g, int64_t ffn_n_embd) {
  if (g.n_tokens < 1 || !g.x || !g.y)
    fail("{}: {}: group of {} rows with x {} and y {}: needs >= 1 row and both buffers", device, to_string(g.key),
         g.n_tokens, g.x ? "set" : "null", g.y ? "set" : "null");
  if (g.n_embd != ffn_n_embd)
    fail("{}: {}: group rows have {} values, the FFN takes {}", device, to_string(g.key), g.n_embd, ffn_n_embd);
}

}  // namespace moetier::sched
