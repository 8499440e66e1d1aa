// The context size a subcommand runs with, and the memory its KV cache needs: -c is resolved against the
// model's training context (warn_above_training_context), and the f32 KV cache is checked against the
// machine's physical memory before it is allocated, so that a large -c is one line saying how much
// memory it needs instead of std::bad_alloc or the OOM killer.
#pragma once

#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>

#include "runtime/models/hparams.hpp"

namespace moetier::cli {

/// -c `requested` (tokens; 0: min(4096, n_ctx_train), or 4096 when the model gives no training context)
/// for `hp`, after check_kv_cache_fits(hp, result, "-c N").
int64_t resolve_context(const models::ModelHparams& hp, int64_t requested);

/// Prints "moetier: warning: -c N is above the model's training context (T tokens); ..." on stderr when
/// n_ctx exceeds a known n_ctx_train. Call it once the run is set up, so that an error stays one line.
void warn_above_training_context(const models::ModelHparams& hp, int64_t n_ctx);

/// f32 KV-cache bytes for `n_ctx` tokens of `hp` (models::kv_cache_bytes_per_token x n_ctx, saturating).
uint64_t kv_cache_bytes(const models::ModelHparams& hp, int64_t n_ctx);

/// Throws Error "KV cache for <why> (N tokens) needs X (B per token x N) but this machine has Y of
/// memory" when the cache exceeds physical memory (sysconf). `why` names the option(s) that set n_ctx.
void check_kv_cache_fits(const models::ModelHparams& hp, int64_t n_ctx, const std::string& why);

/// Throws Error "KV cache for <why> (N tokens) needs X: allocation failed".
[[noreturn]] void fail_kv_allocation(const models::ModelHparams& hp, int64_t n_ctx, const std::string& why);

/// Returns alloc() (which allocates the KV cache for `n_ctx` tokens), turning std::bad_alloc and
/// std::length_error into fail_kv_allocation.
template <typename F>
auto allocate_kv_cache(const models::ModelHparams& hp, int64_t n_ctx, const std::string& why, F&& alloc)
    -> decltype(alloc()) {
  try {
    return alloc();
  } catch (const std::bad_alloc&) {
    fail_kv_allocation(hp, n_ctx, why);
  } catch (const std::length_error&) {
    fail_kv_allocation(hp, n_ctx, why);
  }
}

}  // namespace moetier::cli
