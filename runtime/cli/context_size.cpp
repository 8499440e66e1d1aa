#include "runtime/cli/context_size.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <limits>

#include "common/error.hpp"
#include "runtime/models/size_breakdown.hpp"

namespace moetier::cli {
namespace {

uint64_t physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return std::numeric_limits<uint64_t>::max();  // unknown: no limit
  return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page);
}

}  // namespace

uint64_t kv_cache_bytes(const models::ModelHparams& hp, int64_t n_ctx) {
  const uint64_t per_token = models::kv_cache_bytes_per_token(hp);
  const uint64_t n = static_cast<uint64_t>(std::max<int64_t>(n_ctx, 0));
  if (per_token != 0 && n > std::numeric_limits<uint64_t>::max() / per_token) return std::numeric_limits<uint64_t>::max();
  return per_token * n;
}

void check_kv_cache_fits(const models::ModelHparams& hp, int64_t n_ctx, const std::string& why) {
  const uint64_t bytes = kv_cache_bytes(hp, n_ctx), have = physical_memory_bytes();
  if (bytes > have)
    fail("KV cache for {} ({} tokens) needs {} ({} per token) but this machine has {} of memory", why, n_ctx,
         models::format_bytes(bytes), models::format_bytes(models::kv_cache_bytes_per_token(hp)),
         models::format_bytes(have));
}

void fail_kv_allocation(const models::ModelHparams& hp, int64_t n_ctx, const std::string& why) {
  fail("KV cache for {} ({} tokens) needs {} ({} per token): allocation failed", why, n_ctx,
       models::format_bytes(kv_cache_bytes(hp, n_ctx)), models::format_bytes(models::kv_cache_bytes_per_token(hp)));
}

int64_t resolve_context(const models::ModelHparams& hp, int64_t requested) {
  const int64_t n_ctx =
      requested > 0 ? requested : (hp.n_ctx_train > 0 ? std::min<int64_t>(4096, hp.n_ctx_train) : 4096);
  check_kv_cache_fits(hp, n_ctx, requested > 0 ? fmt::format("-c {}", n_ctx) : std::string("the default context"));
  return n_ctx;
}

void warn_above_training_context(const models::ModelHparams& hp, int64_t n_ctx) {
  if (hp.n_ctx_train > 0 && n_ctx > hp.n_ctx_train)
    std::fprintf(stderr,
                 "moetier: warning: -c %lld is above the model's training context (%lld tokens); positions past it "
                 "are outside what the model was trained on\n",
                 static_cast<long long>(n_ctx), static_cast<long long>(hp.n_ctx_train));
}

}  // namespace moetier::cli
