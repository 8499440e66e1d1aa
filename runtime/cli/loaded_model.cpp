#include "runtime/cli/loaded_model.hpp"

#include <algorithm>

#include "common/error.hpp"
#include "runtime/cli/weights_memory.hpp"
#include "runtime/tiered/memory_budget.hpp"
#include "scheduler/thread_pool.hpp"

namespace moetier::cli {

namespace {
/// Configures the pool and checks the options before the file is opened, then opens it.
gguf::GgufModel open_model(const std::string& path, const LoadOptions& o, uint64_t& rss_before,
                           std::optional<chat::ChatTemplate>& tmpl) {
  if (o.no_mmap && o.tiers)
    fail("--no-mmap copies the whole model into memory; it cannot be combined with --ram-budget, --plan, "
         "--experts-on-nvme or the device options, which keep part of it elsewhere");
  if (o.configure_pool) {
    sched::ThreadPoolOptions po;
    po.n_threads = o.threads;
    sched::configure_global_pool(po);
  }
  rss_before = tiered::current_rss_bytes();
  auto g = gguf::GgufModel::open(path);
  if (o.chat) tmpl = chat::ChatTemplate::for_model(g, o.chat_template);
  if (o.no_mmap) copy_weights_to_memory(g);
  return g;
}
}  // namespace

LoadedModel::LoadedModel(const std::string& path, const LoadOptions& o)
    : g(open_model(path, o, rss_before_, tmpl)), model(models::load_model(g)), tok(tokenizer::Tokenizer::from_gguf(g)) {
  model->set_gemm_min_tokens(o.gemm_min_batch);
  metadata_bytes = std::max(tiered::current_rss_bytes(), rss_before_) - rss_before_;
  if (tok.n_vocab() != model->hparams().n_vocab)
    fail("{}: tokenizer has {} tokens but the model's vocabulary is {}", path, tok.n_vocab(), model->hparams().n_vocab);
}

GenerateParams generate_params(const RunOptions& o) {
  GenerateParams gp;
  gp.n_predict = o.n_predict;
  gp.sampling.temperature = o.temp;
  gp.sampling.top_k = o.top_k;
  gp.sampling.top_p = o.top_p;
  gp.sampling.min_p = o.min_p;
  gp.sampling.repeat_penalty = o.repeat_penalty;
  gp.sampling.repeat_last_n = o.repeat_last_n;
  if (o.seed >= 0) gp.sampling.seed = static_cast<uint64_t>(o.seed);
  gp.stop_at_eog = !o.ignore_eos;
  (void)sampling::Sampler(gp.sampling);  // throws Error for invalid sampling parameters
  return gp;
}

}  // namespace moetier::cli
