#include "runtime/tiered/tiered_experts.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "common/error.hpp"
#include "common/trace_events.hpp"
#include "offload/eviction_policy.hpp"
#include "runtime/models/size_breakdown.hpp"
#include "runtime/models/tensor_roles.hpp"

namespace moetier::tiered {

namespace {

/// Byte range of one expert's matrix inside a stacked tensor (or a whole legacy per-expert tensor).
offload::ByteRange expert_range(const gguf::GgufModel& g, int il, int e, const char* part) {
  if (const gguf::TensorInfo* t = g.find(fmt::format("blk.{}.ffn_{}_exps.weight", il, part))) {
    if (t->shape.size() != 3 || e >= t->shape[0])
      fail("{}: tensor {}: expected stacked experts [n_expert, n_out, n_in]", g.path(), t->name);
    const uint64_t per = t->n_bytes / static_cast<uint64_t>(t->shape[0]);
    const auto r = g.byte_range(*t, per * static_cast<uint64_t>(e), per);
    return {r.file_index, r.offset, r.length};
  }
  const gguf::TensorInfo& t = g.require(fmt::format("blk.{}.ffn_{}.{}.weight", il, part, e));
  const auto r = g.byte_range(t);
  return {r.file_index, r.offset, r.length};
}

}  // namespace

offload::ModelIdentity model_identity(const models::Model& model) {
  const auto& hp = model.hparams();
  offload::ModelIdentity id;
  const std::string& path = model.gguf().path();
  id.file = path.substr(path.find_last_of('/') == std::string::npos ? 0 : path.find_last_of('/') + 1);
  id.n_layers = static_cast<int32_t>(hp.n_layer);
  id.n_experts = static_cast<int32_t>(hp.n_expert);
  id.expert_bytes.assign(static_cast<size_t>(hp.n_layer), 0);
  const auto sizes = models::compute_size_breakdown(model.gguf().tensors());
  for (const auto& l : sizes.expert_layers)
    if (l.layer >= 0 && l.layer < hp.n_layer) id.expert_bytes[l.layer] = l.top_k_bytes(1);
  return id;
}

uint64_t non_expert_bytes(const models::Model& model) {
  const auto sizes = models::compute_size_breakdown(model.gguf().tensors());
  return sizes.total - sizes.routed_experts;
}

offload::ExpertCatalog build_expert_catalog(const models::Model& model, const offload::PlacementPlan* plan) {
  const auto& hp = model.hparams();
  offload::ExpertCatalog cat;
  for (int il = 0; il < hp.n_layer; ++il) {
    if (!hp.is_moe_layer(il)) continue;
    for (int e = 0; e < hp.n_expert; ++e) {
      const offload::ExpertId id{il, e};
      if (plan && plan->tier(id).kind != offload::Tier::Kind::Nvme) continue;
      const gguf::GgufModel& g = model.gguf();
      cat.add(id, {expert_range(g, il, e, "gate"), expert_range(g, il, e, "up"), expert_range(g, il, e, "down")},
              model.resident_expert(il, e));
    }
  }
  return cat;
}

TieredExperts::TieredExperts(const models::Model& model, const offload::PlacementPlan& plan, const TieredOptions& opts)
    : plan_(plan) {
  plan_.check_model(model_identity(model));
  plan_.validate_for_backends(opts.devices);
  offload::ExpertCatalog cat = build_expert_catalog(model, &plan_);
  n_streamed_ = cat.size();
  if (n_streamed_ > 0) {
    std::vector<std::string> files;
    for (size_t i = 0; i < model.gguf().n_files(); ++i) files.push_back(model.gguf().file_path(static_cast<uint32_t>(i)));
    offload::CacheOptions co;
    co.budget_bytes = plan_.cache_bytes;
    co.policy = plan_.cache_policy;
    co.policy_params = opts.policy_params;
    co.reader = opts.reader;
    cache_ = std::make_unique<offload::ExpertCache>(std::move(files), std::move(cat), co);
  }
}

void TieredExperts::begin(int32_t layer, std::span<const int32_t> experts) {
  lease_.reset();
  // Experts of the previous layer that were never handed out (its computation was interrupted).
  for (size_t i = 0; i < streamed_.size(); ++i)
    if (!streamed_done_[i]) cache_->unprotect({layer_, streamed_[i]});
  layer_ = layer;
  streamed_.clear();
  for (int32_t e : experts) {
    if (!serves(layer, e)) fail("tiered experts: expert {} of layer {} is not homed on nvme", e, layer);
    streamed_.push_back(e);
  }
  streamed_done_.assign(streamed_.size(), 0);
  if (streamed_.empty()) return;
  if (demand_.size() <= static_cast<size_t>(layer)) demand_.resize(static_cast<size_t>(layer) + 1);
  DemandStats& d = demand_[layer];
  // None of this layer's experts may be evicted to make room for another of them (or for a prediction).
  for (int32_t e : streamed_) cache_->protect({layer, e});
  // Start every missing read now; the resident experts are computed while they arrive.
  for (int32_t e : streamed_) {
    const char* result = "miss";
    if (cache_->ready({layer, e})) ++d.hits, result = "hit";
    else if (cache_->in_flight({layer, e})) ++d.prefetched, result = "prefetched";
    else ++d.misses;
    if (trace::enabled()) {  // the demand's outcome (profile's heat map)
      trace::Event ev;
      ev.name = "demand";
      ev.cat = "cache";
      ev.begin_ns = trace::now_ns();
      ev.arg("layer", layer).arg("expert", e).str("result", result);
      trace::record(ev);
    }
    cache_->prefetch({layer, e}, true);
  }
}

bool TieredExperts::serves(int32_t layer, int32_t expert) const {
  return cache_ && plan_.tier({layer, expert}).kind == offload::Tier::Kind::Nvme;
}

void TieredExperts::poll() {
  if (cache_) cache_->poll();
}

HostFfn TieredExperts::weights_from_lease(const offload::ExpertLease& lease) const {
  HostFfn r = cache_->catalog().layout(cache_->catalog().index(lease.id()));  // shapes, types, biases
  const auto bind = [](HostWeight& w, std::span<const std::byte> bytes) { w.data = bytes.data(); };
  bind(r.gate, lease.range(0));
  bind(r.up, lease.range(1));
  bind(r.down, lease.range(2));
  return r;
}

int32_t TieredExperts::next(HostFfn& out) {
  lease_.reset();
  // Streamed experts: the first one already read, else the first one being read (wait for it), else
  // the first one not started (no slot was free at begin): read it now. Waiting for a read in flight
  // before starting another keeps the protected experts from filling every slot.
  if (streamed_.empty()) return -1;
  cache_->poll();
  size_t pick = streamed_.size();
  for (int pass = 0; pass < 3 && pick == streamed_.size(); ++pass)
    for (size_t i = 0; i < streamed_.size(); ++i) {
      if (streamed_done_[i]) continue;
      const offload::ExpertId id{layer_, streamed_[i]};
      if (pass == 2 || (pass == 0 && cache_->ready(id)) || (pass == 1 && cache_->in_flight(id))) {
        pick = i;
        break;
      }
    }
  if (pick == streamed_.size()) return -1;
  streamed_done_[pick] = 1;
  cache_->unprotect({layer_, streamed_[pick]});
  lease_ = cache_->acquire({layer_, streamed_[pick]});
  out = weights_from_lease(lease_);
  return streamed_[pick];
}

void TieredExperts::predict(int32_t layer, std::span<const int32_t> experts) {
  if (!cache_) return;
  for (int32_t e : experts)
    if (plan_.tier({layer, e}).kind == offload::Tier::Kind::Nvme) cache_->prefetch({layer, e});
}

TieredExperts::DemandStats TieredExperts::total_demand() const {
  DemandStats t;
  for (const auto& d : demand_) {
    t.hits += d.hits;
    t.prefetched += d.prefetched;
    t.misses += d.misses;
  }
  return t;
}

std::string TieredExperts::stats_report() const {
  std::string s = fmt::format("tiers: {} experts in DRAM, {} on NVMe; cache {} in {} slots of {} ({} policy)\n",
                              plan_.experts_on(offload::Tier::Kind::Dram).size(), n_streamed_,
                              models::format_bytes(plan_.cache_bytes), cache_ ? cache_->n_slots() : 0,
                              models::format_bytes(cache_ ? cache_->slot_bytes() : 0),
                              offload::policy_name(plan_.cache_policy));
  if (!cache_) return s;
  const auto stats = cache_->stats();
  for (size_t il = 0; il < demand_.size(); ++il) {
    const DemandStats& d = demand_[il];
    if (d.requests() == 0) continue;
    const auto& st = stats[il];
    s += fmt::format("  layer {:3d}: {:6d} requests, hit {:5.1f}%, prefetched {:5.1f}%, miss {:5.1f}%, {} read, stalled {:.1f} ms\n",
                     il, d.requests(), 100.0 * d.hits / d.requests(), 100.0 * d.prefetched / d.requests(),
                     100.0 * d.misses / d.requests(), models::format_bytes(st.bytes_read), st.stall_ns / 1e6);
  }
  const DemandStats d = total_demand();
  const auto t = cache_->total_stats();
  const uint64_t req = d.requests();
  s += fmt::format("  total: {} requests, hit {:.1f}%, prefetched {:.1f}%, miss {:.1f}%, {} read, stalled {:.1f} ms, {} evictions\n",
                   req, req ? 100.0 * d.hits / req : 0.0, req ? 100.0 * d.prefetched / req : 0.0,
                   req ? 100.0 * d.misses / req : 0.0, models::format_bytes(t.bytes_read), t.stall_ns / 1e6, t.evictions);
  return s;
}

}  // namespace moetier::tiered
