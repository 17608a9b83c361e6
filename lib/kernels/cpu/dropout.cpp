#include "kernels/cpu/dropout.h"

#include <algorithm>
#include <cmath>

#include "core/rng.h"
#include "kernels/elementwise_math.h"

namespace dtrain::cpu {

uint64_t dropout_key(uint64_t seed, int64_t step, uint64_t name_hash) {
  return hash_combine(hash_combine(seed, static_cast<uint64_t>(step)), name_hash);
}

template <class F>
void dropout_forward(const F* x, const F* resid, int64_t samples, int64_t sample_numel, double p,
                     uint64_t key, int64_t first_sample, int64_t first_element, uint8_t* mask, F* y) {
  // Element e of a sample is kept iff the top 24 bits of its random word,
  // read as a fraction of 2^24, are >= p (math::dropout_keep, shared with the GPU).
  const uint64_t threshold = math::dropout_threshold(p);
  using A = compute_t<F>;
  const A scale = static_cast<A>(1.0 / (1.0 - p));
  constexpr int64_t kChunk = 4096;  // elements per parallel work item
  const int64_t chunks = (sample_numel + kChunk - 1) / kChunk;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t s = 0; s < samples; ++s) {
    for (int64_t c = 0; c < chunks; ++c) {
      const uint64_t skey = math::dropout_sample_key(key, first_sample + s);
      const int64_t base = s * sample_numel;
      const int64_t e1 = std::min(sample_numel, (c + 1) * kChunk);
#pragma omp simd
      for (int64_t e = c * kChunk; e < e1; ++e) {
        const uint8_t keep = math::dropout_keep(skey, first_element + e, threshold);
        const int64_t i = base + e;
        mask[i] = keep;
        const A v = keep ? A(x[i]) * scale : A(0);
        y[i] = F(resid ? A(resid[i]) + v : v);
      }
    }
  }
}

template <class F>
void dropout_backward(const F* dy, const uint8_t* mask, int64_t n, double p, F* dx) {
  using A = compute_t<F>;
  const A scale = static_cast<A>(1.0 / (1.0 - p));
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) dx[i] = F(mask[i] ? A(dy[i]) * scale : A(0));
}

#define DTRAIN_INSTANTIATE(F)                                                                    \
  template void dropout_forward<F>(const F*, const F*, int64_t, int64_t, double, uint64_t,     \
                                   int64_t, int64_t, uint8_t*, F*);                            \
  template void dropout_backward<F>(const F*, const uint8_t*, int64_t, double, F*);
DTRAIN_INSTANTIATE(float)
DTRAIN_INSTANTIATE(double)
DTRAIN_INSTANTIATE(bf16)
#undef DTRAIN_INSTANTIATE

}  // namespace dtrain::cpu
