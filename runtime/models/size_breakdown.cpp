#include "runtime/models/size_breakdown.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include "runtime/models/tensor_roles.hpp"

namespace moetier::models {

uint64_t ExpertLayerBytes::uniform_expert_bytes() const {
  if (expert_bytes.empty()) return 0;
  for (uint64_t b : expert_bytes)
    if (b != expert_bytes.front()) return 0;
  return expert_bytes.front();
}

uint64_t ExpertLayerBytes::top_k_bytes(int64_t k) const {
  if (k <= 0 || expert_bytes.empty()) return 0;
  std::vector<uint64_t> sorted = expert_bytes;
  const size_t n = std::min<size_t>(static_cast<size_t>(k), sorted.size());
  std::partial_sort(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(n), sorted.end(),
                    std::greater<>());
  uint64_t sum = 0;
  for (size_t i = 0; i < n; ++i) sum += sorted[i];
  return sum;
}

uint64_t SizeBreakdown::decode_bytes_per_token(int64_t n_expert_used) const {
  uint64_t bytes = total - routed_experts - nextn;
  if (!tied_output) bytes = bytes - embedding + embedding_row_bytes;
  for (const auto& l : expert_layers) bytes += l.top_k_bytes(n_expert_used);
  return bytes;
}

SizeBreakdown compute_size_breakdown(const std::vector<gguf::TensorInfo>& tensors) {
  SizeBreakdown s;
  std::map<int32_t, ExpertLayerBytes> layers;
  bool has_output = false;
  std::set<int32_t> nextn_layers;  // layers holding blk.N.nextn.* tensors
  for (const auto& t : tensors)
    if (const TensorClass c = classify_tensor(t.name);
        c.layer >= 0 && t.name.find(".nextn.") != std::string::npos)
      nextn_layers.insert(c.layer);
  for (const auto& t : tensors) {
    s.total += t.n_bytes;
    const TensorClass c = classify_tensor(t.name);
    if (c.layer >= 0 && nextn_layers.count(c.layer)) {
      s.nextn += t.n_bytes;
      continue;
    }
    switch (c.role) {
      case TensorRole::Embedding:
        s.embedding += t.n_bytes;
        if (!c.is_bias && t.n_rows() > 0) s.embedding_row_bytes = t.n_bytes / static_cast<uint64_t>(t.n_rows());
        break;
      case TensorRole::Output:
        s.output += t.n_bytes;
        has_output = true;
        break;
      case TensorRole::OutputNorm:
      case TensorRole::Norm: s.norm += t.n_bytes; break;
      case TensorRole::Attention: s.attention += t.n_bytes; break;
      case TensorRole::Router: s.router += t.n_bytes; break;
      case TensorRole::SharedExpert: s.shared_experts += t.n_bytes; break;
      case TensorRole::DenseFfn: s.dense_ffn += t.n_bytes; break;
      case TensorRole::Other: s.other += t.n_bytes; break;
      case TensorRole::RoutedExpert: {
        // An expert id or count no real model has (a hostile name or shape) would make the per-expert
        // table huge: count such a tensor as `other` instead.
        const int64_t n_stacked = t.shape.empty() ? 1 : t.shape.front();
        if (c.expert >= kMaxExperts || (c.expert < 0 && n_stacked > kMaxExperts)) {
          s.other += t.n_bytes;
          break;
        }
        s.routed_experts += t.n_bytes;
        ExpertLayerBytes& l = layers[c.layer];
        l.layer = c.layer;
        l.bytes += t.n_bytes;
        if (c.expert >= 0) {  // legacy layout: one tensor per expert
          const auto e = static_cast<size_t>(c.expert);
          if (l.expert_bytes.size() <= e) l.expert_bytes.resize(e + 1, 0);
          l.expert_bytes[e] += t.n_bytes;
        } else {  // stacked [n_expert, ...]: every expert owns an equal slice
          const int64_t n = std::max<int64_t>(1, n_stacked);
          const auto ne = static_cast<size_t>(n);
          if (l.expert_bytes.size() < ne) l.expert_bytes.resize(ne, 0);
          const uint64_t per = t.n_bytes / static_cast<uint64_t>(n);
          for (size_t e = 0; e < ne; ++e) l.expert_bytes[e] += per;
          l.expert_bytes[0] += t.n_bytes - per * static_cast<uint64_t>(n);  // remainder (never for GGUF)
        }
        l.n_experts = static_cast<int64_t>(l.expert_bytes.size());
        break;
      }
    }
  }
  s.tied_output = !has_output && s.embedding > 0;
  for (auto& [layer, l] : layers) s.expert_layers.push_back(std::move(l));
  return s;
}

std::string format_bytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return fmt::format("{} B", bytes);
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 5) {
    v /= 1024.0;
    ++u;
  }
  if (v >= 100.0) return fmt::format("{:.0f} {}", v, kUnits[u]);
  if (v >= 10.0) return fmt::format("{:.1f} {}", v, kUnits[u]);
  return fmt::format("{:.2f} {}", v, kUnits[u]);
}

}  // namespace moetier::models
