#include "kernels/cpu/embedding.h"

#include <algorithm>

namespace dtrain::cpu {

template <class F>
void embedding_forward(const int32_t* tok, const F* wte, const F* wpe, int64_t B, int64_t T,
                       int64_t C, F* y) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < B * T; ++r) {
    const F* e = wte + static_cast<int64_t>(tok[r]) * C;  // (C)
    const F* p = wpe + (r % T) * C;                       // (C)
    F* yr = y + r * C;
#pragma omp simd
    for (int64_t j = 0; j < C; ++j) yr[j] = e[j] + p[j];
  }
}

template <class F>
void embedding_backward(const F* dy, const int32_t* tok, int64_t B, int64_t T, int64_t C, F* dwte,
                        F* dwpe) {
  constexpr int64_t kCols = 64;
#pragma omp parallel for schedule(static)
  for (int64_t j0 = 0; j0 < C; j0 += kCols) {
    const int64_t j1 = std::min(C, j0 + kCols);
    for (int64_t r = 0; r < B * T; ++r) {
      F* d = dwte + static_cast<int64_t>(tok[r]) * C;
      const F* g = dy + r * C;
#pragma omp simd
      for (int64_t j = j0; j < j1; ++j) d[j] += g[j];
    }
  }
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    F* d = dwpe + t * C;
    for (int64_t b = 0; b < B; ++b) {
      const F* g = dy + (b * T + t) * C;
#pragma omp simd
      for (int64_t j = 0; j < C; ++j) d[j] += g[j];
    }
  }
}

#define DTRAIN_INSTANTIATE(F)                                                                   \
  template void embedding_forward<F>(const int32_t*, const F*, const F*, int64_t, int64_t,     \
                                     int64_t, F*);                                             \
  template void embedding_backward<F>(const F*, const int32_t*, int64_t, int64_t, int64_t, F*, \
                                      F*);
DTRAIN_INSTANTIATE(float)
DTRAIN_INSTANTIATE(double)
#undef DTRAIN_INSTANTIATE

}  // namespace dtrain::cpu
