#include "runtime/cli/inspect_report.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <optional>

#include "common/error.hpp"
#include "runtime/cli/text_escape.hpp"
#include "runtime/models/hparams_check.hpp"
#include "runtime/models/size_breakdown.hpp"
#include "runtime/tokenizer/vocab.hpp"

namespace moetier::cli {
namespace {

using Json = nlohmann::ordered_json;

const char* gating_name(models::Gating g) {
  switch (g) {
    case models::Gating::Softmax: return "softmax";
    case models::Gating::Sigmoid: return "sigmoid";
    case models::Gating::SoftmaxWeight: return "softmax_topk";
  }
  return "?";
}

Json hparams_json(const models::ModelHparams& hp) {
  Json j;
  j["n_vocab"] = hp.n_vocab;
  j["n_ctx_train"] = hp.n_ctx_train;
  j["n_embd"] = hp.n_embd;
  j["n_layer"] = hp.n_layer;
  j["n_layer_nextn"] = hp.n_layer_nextn;  // glm4moe NextN layers after the n_layer that run
  j["n_head"] = hp.n_head;
  j["n_head_kv"] = hp.n_head_kv;
  j["head_dim_k"] = hp.head_dim_k;
  j["head_dim_v"] = hp.head_dim_v;
  j["rms_eps"] = hp.rms_eps;
  j["rope_type"] = hp.rope_type == models::RopeType::Neox ? "neox" : "norm";
  j["n_rot"] = hp.n_rot;
  j["rope_freq_base"] = hp.rope_freq_base;
  j["rope_freq_scale"] = hp.rope_freq_scale;
  j["rope_yarn"] = hp.rope_yarn;
  if (hp.rope_yarn) {
    j["yarn_factor"] = hp.yarn_factor;
    j["yarn_orig_ctx"] = hp.yarn_orig_ctx;
    j["yarn_log_mul"] = hp.yarn_log_mul;
  }
  j["n_ff"] = hp.n_ff;
  j["n_ff_exp"] = hp.n_ff_exp;
  j["n_ff_shexp"] = hp.n_ff_shexp;
  j["n_expert"] = hp.n_expert;
  j["n_expert_used"] = hp.n_expert_used;
  j["n_expert_shared"] = hp.n_expert_shared;
  j["n_layer_dense_lead"] = hp.n_layer_dense_lead;
  j["gating"] = gating_name(hp.gating);
  j["norm_topk_prob"] = hp.norm_topk_prob;
  j["expert_weights_scale"] = hp.expert_weights_scale;
  j["n_expert_groups"] = hp.n_expert_groups;
  j["n_group_used"] = hp.n_group_used;
  if (hp.arch == models::Arch::Deepseek2) {
    j["q_lora_rank"] = hp.q_lora_rank;
    j["kv_lora_rank"] = hp.kv_lora_rank;
    j["qk_nope_dim"] = hp.qk_nope_dim;
    j["qk_rope_dim"] = hp.qk_rope_dim;
    j["v_head_dim_mla"] = hp.v_head_dim_mla;
  }
  if (hp.sliding_window > 0) j["sliding_window"] = hp.sliding_window;
  return j;
}

bool arch_supported(const std::string& arch) {
  try {
    models::arch_from_name(arch, "");
    return true;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace

Json inspect_report(const InspectInput& in) {
  const gguf::Metadata& md = *in.metadata;
  const auto& tensors = *in.tensors;
  Json r;
  r["schema"] = "moetier.inspect/1";
  r["file"] = in.file;
  r["n_files"] = in.n_files;
  r["gguf_version"] = in.gguf_version ? Json(in.gguf_version) : Json(nullptr);
  const std::string arch = md.get_string("general.architecture").value_or("");
  if (arch.empty()) fail("{}: missing metadata key general.architecture", in.file);
  r["architecture"] = arch;
  const bool supported = arch_supported(arch);
  r["architecture_supported"] = supported;
  if (!supported) r["architecture_note"] = fmt::format("architecture {} is not supported for run", arch);
  const auto name = md.get_string("general.name");
  r["name"] = name ? Json(*name) : Json(nullptr);
  const auto ftype = md.get_int("general.file_type");
  r["file_type"] = ftype ? Json(*ftype) : Json(nullptr);
  r["n_tensors"] = tensors.size();

  std::optional<models::ModelHparams> hp;
  // The same checks as `run` (runtime/models/hparams_check.hpp): an impossible file is an error here too.
  if (supported) hp = models::load_checked_hparams(md, tensors, in.file);
  tokenizer::check_token_metadata(md, in.file);
  r["hparams"] = hp ? hparams_json(*hp) : Json(nullptr);

  // Type histogram, largest first.
  std::map<GgmlType, std::pair<uint64_t, uint64_t>> hist;
  for (const auto& t : tensors) {
    auto& h = hist[t.type];
    ++h.first;
    h.second += t.n_bytes;
  }
  std::vector<std::pair<GgmlType, std::pair<uint64_t, uint64_t>>> hv(hist.begin(), hist.end());
  std::stable_sort(hv.begin(), hv.end(), [](const auto& a, const auto& b) { return a.second.second > b.second.second; });
  Json types = Json::array();
  for (const auto& [type, h] : hv)
    types.push_back({{"type", std::string(ggml_type_name(type))}, {"n_tensors", h.first}, {"bytes", h.second}});
  r["types"] = types;

  const models::SizeBreakdown s = models::compute_size_breakdown(tensors);
  r["sizes"] = {{"total", s.total},           {"embedding", s.embedding},       {"output", s.output},
                {"attention", s.attention},   {"norm", s.norm},                 {"dense_ffn", s.dense_ffn},
                {"shared_experts", s.shared_experts}, {"routed_experts", s.routed_experts}, {"router", s.router},
                {"other", s.other},           {"nextn", s.nextn}};
  Json layers = Json::array();
  for (const auto& l : s.expert_layers) {
    const uint64_t u = l.uniform_expert_bytes();
    layers.push_back({{"layer", l.layer}, {"n_experts", l.n_experts}, {"bytes", l.bytes},
                      {"bytes_per_expert", u ? Json(u) : Json(nullptr)}});
  }
  r["routed_experts"] = {{"n_moe_layers", s.expert_layers.size()}, {"layers", layers}};

  int64_t k = hp ? hp->n_expert_used : md.get_int(arch + ".expert_used_count").value_or(0);
  if (k < 0) k = 0;
  r["decode"] = {{"n_expert_used", k},
                 {"bytes_per_token", s.decode_bytes_per_token(k)},
                 {"embedding_row_bytes", s.embedding_row_bytes},
                 {"tied_output", s.tied_output}};
  if (hp) {
    r["kv_cache"] = {{"f32_bytes_per_token", models::kv_cache_bytes_per_token(*hp, 4)},
                     {"f16_bytes_per_token", models::kv_cache_bytes_per_token(*hp, 2)}};
  } else {
    r["kv_cache"] = nullptr;
  }
  return r;
}

namespace {

std::string bytes_str(uint64_t b) { return fmt::format("{:>10}  ({} bytes)", models::format_bytes(b), b); }

std::string kv(const Json& h, const char* key) {
  if (!h.contains(key)) return "-";
  const Json& v = h[key];
  if (v.is_number_float()) return fmt::format("{:g}", v.get<double>());
  if (v.is_string()) return escape_control_chars(v.get<std::string>());
  return v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

std::string inspect_text(const Json& r) {
  // Strings taken from the file (its path, general.name, general.architecture) are printed with their
  // control characters escaped: a model file must not move the cursor or clear the screen.
  const auto str = [&r](const char* key) { return escape_control_chars(r[key].get<std::string>()); };
  std::string o;
  auto line = [&](const std::string& s) { o += s + "\n"; };
  const std::string ver = r["gguf_version"].is_null() ? "not written (synth --dry-run)"
                                                      : fmt::format("GGUF v{}", r["gguf_version"].get<int>());
  line(fmt::format("model          {}  ({}, {} file{})", str("file"), ver,
                   r["n_files"].get<size_t>(), r["n_files"].get<size_t>() == 1 ? "" : "s"));
  line(fmt::format("architecture   {}{}{}", str("architecture"),
                   r["name"].is_null() ? "" : "  \"" + str("name") + "\"",
                   r["file_type"].is_null() ? "" : fmt::format("  file_type {}", r["file_type"].get<int64_t>())));
  if (!r["architecture_supported"].get<bool>()) line("               note: " + str("architecture_note"));
  const Json& sz = r["sizes"];
  line(fmt::format("tensors        {}, {}", r["n_tensors"].get<size_t>(), bytes_str(sz["total"].get<uint64_t>())));

  if (!r["hparams"].is_null()) {
    const Json& h = r["hparams"];
    line("");
    line("hyper-parameters");
    line(fmt::format("  vocab {}  ctx_train {}  embd {}  layers {}  ffn {}", kv(h, "n_vocab"), kv(h, "n_ctx_train"),
                     kv(h, "n_embd"), kv(h, "n_layer"), kv(h, "n_ff")));
    line(fmt::format("  attention: heads {}  kv_heads {}  head_dim k/v {}/{}  rms_eps {}", kv(h, "n_head"),
                     kv(h, "n_head_kv"), kv(h, "head_dim_k"), kv(h, "head_dim_v"), kv(h, "rms_eps")));
    line(fmt::format("  rope: {}  dims {}  base {}  scale {}{}", kv(h, "rope_type"), kv(h, "n_rot"),
                     kv(h, "rope_freq_base"), kv(h, "rope_freq_scale"),
                     h["rope_yarn"].get<bool>() ? fmt::format("  yarn factor {} orig_ctx {}", kv(h, "yarn_factor"),
                                                              kv(h, "yarn_orig_ctx"))
                                                : ""));
    line(fmt::format("  moe: experts {}  used {}  shared {}  expert_ffn {}  shared_ffn {}  dense_lead {}",
                     kv(h, "n_expert"), kv(h, "n_expert_used"), kv(h, "n_expert_shared"), kv(h, "n_ff_exp"),
                     kv(h, "n_ff_shexp"), kv(h, "n_layer_dense_lead")));
    line(fmt::format("  routing: {}  norm_topk {}  scale {}  groups {} (use {})", kv(h, "gating"),
                     kv(h, "norm_topk_prob"), kv(h, "expert_weights_scale"), kv(h, "n_expert_groups"),
                     kv(h, "n_group_used")));
    if (h.contains("kv_lora_rank"))
      line(fmt::format("  mla: q_lora {}  kv_lora {}  qk_nope {}  qk_rope {}  v_head {}", kv(h, "q_lora_rank"),
                       kv(h, "kv_lora_rank"), kv(h, "qk_nope_dim"), kv(h, "qk_rope_dim"), kv(h, "v_head_dim_mla")));
    if (h.contains("sliding_window")) line("  sliding_window " + kv(h, "sliding_window"));
  }

  line("");
  line("types");
  for (const auto& t : r["types"])
    line(fmt::format("  {:<8} {:>6} tensors  {}", t["type"].get<std::string>(), t["n_tensors"].get<uint64_t>(),
                     bytes_str(t["bytes"].get<uint64_t>())));

  line("");
  line("size breakdown");
  const std::pair<const char*, const char*> rows[] = {
      {"embedding", "embeddings (token_embd)"}, {"output", "output (LM head)"}, {"attention", "attention"},
      {"norm", "norms"}, {"dense_ffn", "dense FFN"}, {"shared_experts", "shared experts"},
      {"routed_experts", "routed experts"}, {"router", "router"}, {"other", "other"},
      {"nextn", "NextN layers (not run)"}, {"total", "total"}};
  for (const auto& [key, label] : rows) line(fmt::format("  {:<26}{}", label, bytes_str(sz[key].get<uint64_t>())));

  const Json& layers = r["routed_experts"]["layers"];
  if (!layers.empty()) {
    line(fmt::format("  routed experts by layer ({} MoE layers):", layers.size()));
    // Runs of consecutive layers with the same expert count and size are printed once.
    for (size_t i = 0; i < layers.size();) {
      size_t j = i + 1;
      while (j < layers.size() && layers[j]["layer"].get<int64_t>() == layers[j - 1]["layer"].get<int64_t>() + 1 &&
             layers[j]["n_experts"] == layers[i]["n_experts"] && layers[j]["bytes"] == layers[i]["bytes"] &&
             layers[j]["bytes_per_expert"] == layers[i]["bytes_per_expert"])
        ++j;
      const int64_t a = layers[i]["layer"].get<int64_t>(), b = layers[j - 1]["layer"].get<int64_t>();
      const Json& per = layers[i]["bytes_per_expert"];
      line(fmt::format("    {:<14}{} experts x {} = {} per layer", a == b ? fmt::format("layer {}", a)
                                                                          : fmt::format("layers {}-{}", a, b),
                       layers[i]["n_experts"].get<int64_t>(),
                       per.is_null() ? std::string("(unequal sizes)") : models::format_bytes(per.get<uint64_t>()),
                       models::format_bytes(layers[i]["bytes"].get<uint64_t>())));
      i = j;
    }
  }

  const Json& d = r["decode"];
  line("");
  line(fmt::format("decode bytes per token       {}", bytes_str(d["bytes_per_token"].get<uint64_t>())));
  line(fmt::format("  = every non-routed-expert weight + the {} largest experts of each MoE layer;",
                   d["n_expert_used"].get<int64_t>()));
  if (d["tied_output"].get<bool>())
    line("    token_embd is also the LM head (tied output), so it is read whole");
  else
    line(fmt::format("    token_embd counts one row ({}) per token, not the whole table",
                     models::format_bytes(d["embedding_row_bytes"].get<uint64_t>())));
  if (!r["kv_cache"].is_null()) {
    const Json& k = r["kv_cache"];
    line(fmt::format("KV cache per token of context  f32: {}  f16: {}",
                     models::format_bytes(k["f32_bytes_per_token"].get<uint64_t>()),
                     models::format_bytes(k["f16_bytes_per_token"].get<uint64_t>())));
  }
  return o;
}

}  // namespace moetier::cli
