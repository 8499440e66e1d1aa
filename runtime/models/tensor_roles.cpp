#include "runtime/models/tensor_roles.hpp"

#include <charconv>

namespace moetier::models {

const char* role_name(TensorRole r) {
  switch (r) {
    case TensorRole::Embedding: return "embedding";
    case TensorRole::Output: return "output";
    case TensorRole::OutputNorm: return "output_norm";
    case TensorRole::Norm: return "norm";
    case TensorRole::Attention: return "attention";
    case TensorRole::Router: return "router";
    case TensorRole::RoutedExpert: return "routed_experts";
    case TensorRole::SharedExpert: return "shared_experts";
    case TensorRole::DenseFfn: return "dense_ffn";
    case TensorRole::Other: return "other";
  }
  return "?";
}

namespace {

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool ends_with(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

FfnPart part_of(std::string_view base) {
  if (starts_with(base, "ffn_gate_up")) return FfnPart::GateUp;
  if (starts_with(base, "ffn_gate")) return FfnPart::Gate;
  if (starts_with(base, "ffn_up")) return FfnPart::Up;
  if (starts_with(base, "ffn_down")) return FfnPart::Down;
  return FfnPart::None;
}

}  // namespace

TensorClass classify_tensor(std::string_view name) {
  TensorClass c;
  c.is_bias = ends_with(name, ".bias");
  if (starts_with(name, "token_embd")) return c.role = TensorRole::Embedding, c;
  if (starts_with(name, "output_norm")) return c.role = TensorRole::OutputNorm, c;
  if (starts_with(name, "output")) return c.role = TensorRole::Output, c;
  if (!starts_with(name, "blk.")) return c;

  std::string_view rest = name.substr(4);
  int layer = -1;
  auto [p, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), layer);
  if (ec != std::errc() || p == rest.data() + rest.size() || *p != '.') return c;
  c.layer = layer;
  rest = rest.substr(static_cast<size_t>(p - rest.data()) + 1);  // e.g. "ffn_gate_exps.weight"
  const std::string_view base = rest.substr(0, rest.find('.'));
  std::string_view after = rest.substr(base.size());  // ".weight" or ".7.weight"

  if (ends_with(base, "_norm") || base == "attn_post_norm" || base == "ffn_post_norm")
    return c.role = TensorRole::Norm, c;
  if (starts_with(base, "attn_")) return c.role = TensorRole::Attention, c;
  if (base == "ffn_gate_inp" || base == "exp_probs_b" || base == "ffn_exp_probs_b")
    return c.role = TensorRole::Router, c;
  if (base == "ffn_gate_inp_shexp") return c.role = TensorRole::SharedExpert, c;
  if (ends_with(base, "_exps")) {
    c.role = TensorRole::RoutedExpert;
    c.part = part_of(base);
    return c;
  }
  if (ends_with(base, "_shexp")) {
    c.role = TensorRole::SharedExpert;
    c.part = part_of(base);
    return c;
  }
  if (base == "ffn_gate" || base == "ffn_up" || base == "ffn_down") {
    c.part = part_of(base);
    // Legacy Mixtral layout: blk.N.ffn_gate.E.weight (one tensor per expert).
    if (after.size() > 1 && after[0] == '.' && after[1] >= '0' && after[1] <= '9') {
      int e = -1;
      auto [q, ec2] = std::from_chars(after.data() + 1, after.data() + after.size(), e);
      if (ec2 == std::errc()) {
        c.role = TensorRole::RoutedExpert;
        c.expert = e;
        return c;
      }
    }
    c.role = TensorRole::DenseFfn;
    return c;
  }
  return c;
}

}  // namespace moetier::models
