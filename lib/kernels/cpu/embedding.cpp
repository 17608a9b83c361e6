#include "kernels/cpu/embedding.h"

#include <algorithm>
#include <cstdint>

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
    for (int64_t j = 0; j < C; ++j) yr[j] = F(compute_t<F>(e[j]) + compute_t<F>(p[j]));
  }
}

template <class F>
void token_embedding_shard_forward(const int32_t* tok, const F* wte, int64_t v0, int64_t vn,
                                   int64_t n, int64_t C, F* y) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    const int64_t v = static_cast<int64_t>(tok[r]) - v0;
    F* yr = y + r * C;
    if (v < 0 || v >= vn) {
      std::fill(yr, yr + C, F(0));
      continue;
    }
    const F* e = wte + v * C;  // (C)
#pragma omp simd
    for (int64_t j = 0; j < C; ++j) yr[j] = e[j];
  }
}

template <class F>
void position_embedding_add(const F* wpe, int64_t B, int64_t T, int64_t C, F* y) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < B * T; ++r) {
    const F* p = wpe + (r % T) * C;  // (C)
    F* yr = y + r * C;
#pragma omp simd
    for (int64_t j = 0; j < C; ++j) yr[j] = F(compute_t<F>(yr[j]) + compute_t<F>(p[j]));
  }
}

template <class F>
void embedding_backward(const F* dy, const int32_t* tok, int64_t B, int64_t T, int64_t C,
                        compute_t<F>* dwte, compute_t<F>* dwpe) {
  embedding_shard_backward<F>(dy, tok, B, T, C, 0, INT64_MAX, dwte, dwpe);
}

template <class F>
void embedding_shard_backward(const F* dy, const int32_t* tok, int64_t B, int64_t T, int64_t C,
                              int64_t v0, int64_t vn, compute_t<F>* dwte, compute_t<F>* dwpe) {
  using A = compute_t<F>;
  constexpr int64_t kCols = 64;
#pragma omp parallel for schedule(static)
  for (int64_t j0 = 0; j0 < C; j0 += kCols) {
    const int64_t j1 = std::min(C, j0 + kCols);
    for (int64_t r = 0; r < B * T; ++r) {
      const int64_t v = static_cast<int64_t>(tok[r]) - v0;
      if (v < 0 || v >= vn) continue;  // another rank's row
      A* d = dwte + v * C;
      const F* g = dy + r * C;
#pragma omp simd
      for (int64_t j = j0; j < j1; ++j) d[j] += A(g[j]);
    }
  }
  if (!dwpe) return;  // no learned positions
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    A* d = dwpe + t * C;
    for (int64_t b = 0; b < B; ++b) {
      const F* g = dy + (b * T + t) * C;
#pragma omp simd
      for (int64_t j = 0; j < C; ++j) d[j] += A(g[j]);
    }
  }
}

#define DTRAIN_INSTANTIATE(F)                                                                   \
  template void embedding_forward<F>(const int32_t*, const F*, const F*, int64_t, int64_t,     \
                                     int64_t, F*);                                             \
  template void embedding_backward<F>(const F*, const int32_t*, int64_t, int64_t, int64_t,     \
                                      compute_t<F>*, compute_t<F>*);                                                   \
  template void token_embedding_shard_forward<F>(const int32_t*, const F*, int64_t, int64_t,   \
                                                 int64_t, int64_t, F*);                        \
  template void position_embedding_add<F>(const F*, int64_t, int64_t, int64_t, F*);          \
  template void embedding_shard_backward<F>(const F*, const int32_t*, int64_t, int64_t,        \
                                            int64_t, int64_t, int64_t, compute_t<F>*, compute_t<F>*);
DTRAIN_INSTANTIATE(float)
DTRAIN_INSTANTIATE(double)
DTRAIN_INSTANTIATE(bf16)
#undef DTRAIN_INSTANTIATE

}  // namespace dtrain::cpu
