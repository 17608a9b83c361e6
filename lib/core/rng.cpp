#include "core/rng.h"

#include <cmath>
#include <numeric>

namespace dtrain {

uint64_t hash_string(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return mix64(h);
}

double CounterRng::normal() {
  double u1 = uniform();
  double u2 = uniform();
  if (u1 < 1e-300) u1 = 1e-300;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

uint64_t CounterRng::below(uint64_t n) {
  // Multiply-high mapping; the bias (< n / 2^64) is irrelevant for our sizes.
  return static_cast<uint64_t>((static_cast<unsigned __int128>(next_u64()) * n) >> 64);
}

void random_permutation(uint64_t key, std::vector<int64_t>& out, int64_t n) {
  out.resize(static_cast<size_t>(n));
  std::iota(out.begin(), out.end(), int64_t{0});
  CounterRng rng(key);
  for (int64_t i = n - 1; i > 0; --i) {
    int64_t j = static_cast<int64_t>(rng.below(static_cast<uint64_t>(i + 1)));
    std::swap(out[i], out[j]);
  }
}

}  // namespace dtrain
