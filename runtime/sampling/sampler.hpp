// Token sampling from a logits row, in llama.cpp's default chain order: repetition penalty -> top-k ->
// top-p -> min-p -> temperature -> draw from the distribution (seeded); temperature <= 0 is greedy
// (argmax, lowest id on ties). Source: llama.cpp src/llama-sampling.cpp (penalties, top_k, top_p,
// min_p, temp, dist samplers) and common/sampling.cpp defaults.
#pragma once

#include <cstdint>
#include <deque>
#include <random>
#include <span>
#include <vector>

namespace moetier::sampling {

struct SamplerParams {
  float temperature = 0.8f;     // <= 0: greedy
  int32_t top_k = 40;           // <= 0: off
  float top_p = 0.95f;          // >= 1: off
  float min_p = 0.05f;          // <= 0: off
  float repeat_penalty = 1.0f;  // 1: off; logits of recent tokens: l > 0 ? l / p : l * p
  int32_t repeat_last_n = 64;   // window of recent tokens the penalty looks at
  uint64_t seed = 0xFFFFFFFFu;  // LLAMA_DEFAULT_SEED-style: 0xFFFFFFFF means "random seed"
};

class Sampler {
 public:
  /// Throws Error for invalid parameters (NaN temperature, top_p outside (0, 1], min_p outside [0, 1],
  /// penalty <= 0).
  explicit Sampler(const SamplerParams& p);

  /// Picks a token from logits [n_vocab] f32 (read; copied internally). Never allocates once sized.
  int32_t sample(std::span<const float> logits);
  /// Records an accepted token (prompt or generated) for the repetition penalty.
  void accept(int32_t token);
  /// Seed actually used (after resolving "random").
  uint64_t seed() const { return seed_; }

 private:
  struct Cand {
    int32_t id;
    float logit;
    float p;
  };
  SamplerParams p_;
  uint64_t seed_;
  std::mt19937_64 rng_;
  std::deque<int32_t> recent_;
  std::vector<Cand> cand_;
  std::vector<double> weights_;  // sample(): exp((logit - max) / temperature) of the kept candidates
};

/// Index of the largest value (lowest index on ties).
int32_t argmax(std::span<const float> logits);

}  // namespace moetier::sampling
