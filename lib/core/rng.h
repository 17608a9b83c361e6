// Counter-based random numbers. Every random draw in dtrain is a pure function
// of (seed, stream, counter): parameter init is keyed by the parameter's name,
// dropout by the global sample index, data shuffling by the epoch. So results
// do not depend on thread count, call order or (later) the parallel layout,
// and resuming needs only the seed and the step, not a hidden generator state.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "core/host_device.h"

namespace dtrain {

// SplitMix64 finaliser: a strong 64-bit mixing function. Host and device
// (dropout's masks are drawn from it on both).
DTRAIN_HOST_DEVICE constexpr uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

DTRAIN_HOST_DEVICE constexpr uint64_t hash_combine(uint64_t a, uint64_t b) { return mix64(a ^ mix64(b)); }

uint64_t hash_string(std::string_view s);  // FNV-1a, then mixed

// A stream of random numbers: the i-th draw is mix(key, i).
class CounterRng {
 public:
  explicit CounterRng(uint64_t key, uint64_t counter = 0) : key_(key), counter_(counter) {}
  uint64_t next_u64() { return hash_combine(key_, counter_++); }
  // Uniform in [0, 1) with 24 (float) or 53 (double) random bits.
  float uniform_f32() { return static_cast<float>(next_u64() >> 40) * (1.0f / 16777216.0f); }
  double uniform() { return static_cast<double>(next_u64() >> 11) * (1.0 / 9007199254740992.0); }
  // Standard normal (Box-Muller, one value per two draws: simple and stateless).
  double normal();
  // Uniform integer in [0, n).
  uint64_t below(uint64_t n);
  uint64_t counter() const { return counter_; }

 private:
  uint64_t key_;
  uint64_t counter_;
};

// A permutation of [0, n) determined by key (Fisher-Yates).
void random_permutation(uint64_t key, std::vector<int64_t>& out, int64_t n);

}  // namespace dtrain
