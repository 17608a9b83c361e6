#include "kernels/cpu/cross_entropy.h"

#include <type_traits>

#include <algorithm>
#include <cmath>

#include "kernels/cpu/vmath.h"

namespace dtrain::cpu {

namespace {

// Elements per block of the argmax search: the max is taken per block with
// SIMD, and only the first block holding the row's max is scanned for its index.
constexpr int64_t kArgBlock = 512;

}  // namespace

template <class T>
void softmax_xent_forward(const T* x, const int32_t* tgt, int64_t rows, int64_t v,
                          compute_t<T>* row_max, compute_t<T>* row_sum, double* row_loss,
                          int32_t* argmax) {
  using A = compute_t<T>;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * v;  // (V)
    // The max and the first block that reaches it (a later block only wins if greater).
    A mx = xr[0];
    int64_t best = 0;
    for (int64_t b = 0; b < v; b += kArgBlock) {
      const A bm = max_of(xr + b, std::min(kArgBlock, v - b));
      if (bm > mx || b == 0) mx = bm, best = b;
    }
    int64_t arg = best;
    const int64_t end = std::min(v, best + kArgBlock);
    while (arg + 1 < end && A(xr[arg]) != mx) ++arg;  // mx is in the block unless NaN
    // The exp sum in double: in fp32 a lane holding the max's 1 drops the
    // terms under half its ulp, and a confident row's tail is made of them
    // (GPT-2's 50,304 logits, the target 20 above the rest: 7.6e-4 of tail,
    // a third lost, its loss and target gradient off by that; a GPU's tree
    // sum kept it and disagreed).
    double sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < v; ++j) sum += static_cast<double>(exp_fast(A(xr[j]) - mx));
    row_max[r] = mx;
    row_sum[r] = static_cast<A>(sum);
    row_loss[r] = std::log(sum) + static_cast<double>(mx) - static_cast<double>(A(xr[tgt[r]]));
    argmax[r] = static_cast<int32_t>(arg);
  }
}

template <class T>
void softmax_xent_backward(const T* x, const int32_t* tgt, const compute_t<T>* row_max,
                           const compute_t<T>* row_sum, int64_t rows, int64_t v,
                           compute_t<T> scale, T* dx) {
  using A = compute_t<T>;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * v;  // (V)
    T* dr = dx + r * v;
    const A mx = row_max[r], k = scale / row_sum[r];
    if constexpr (std::is_same_v<A, T>) {
#pragma omp simd
      for (int64_t j = 0; j < v; ++j) dr[j] = k * exp_fast(xr[j] - mx);
      dr[tgt[r]] -= scale;
    } else {  // bf16: the target's column from the fp32 value, rounded once
      const A xt = A(xr[tgt[r]]);  // read before the row is overwritten (dx may be x)
#pragma omp simd
      for (int64_t j = 0; j < v; ++j) store_elem(dr[j], k * exp_fast(load_elem(xr[j]) - mx));
      dr[tgt[r]] = T(k * exp_fast(xt - mx) - scale);
    }
  }
}

template <class T>
void row_max(const T* x, int64_t rows, int64_t v, compute_t<T>* m) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) m[r] = max_of(x + r * v, v);
}

template <class T>
void vp_exp_sums(const T* x, const int32_t* tgt, int64_t v0, int64_t rows, int64_t v,
                 const compute_t<T>* m, T* p, compute_t<T>* sums, int32_t* argmax) {
  using A = compute_t<T>;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * v;  // (V/t)
    T* pr = p + r * v;
    const A mr = m[r];
    // The first column holding the group's max: the first block whose max
    // reaches it, scanned (no element exceeds it).
    int64_t first = -1;
    for (int64_t b = 0; b < v && first < 0; b += kArgBlock)
      if (const int64_t n = std::min(kArgBlock, v - b); max_of(xr + b, n) >= mr)
        for (int64_t j = b; j < b + n && first < 0; ++j)
          if (A(xr[j]) == mr) first = j;
    argmax[r] = first < 0 ? INT32_MAX : static_cast<int32_t>(v0 + first);
    const int64_t y = tgt[r] - v0;
    const A target = (y >= 0 && y < v) ? A(xr[y]) : A(0);  // read before the row is overwritten (p may be x)
    double sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < v; ++j) {
      const A e = exp_fast(load_elem(xr[j]) - mr);
      store_elem(pr[j], e);
      sum += static_cast<double>(e);
    }
    sums[r] = static_cast<A>(sum);
    sums[rows + r] = target;
  }
}

#define DTRAIN_INSTANTIATE(T)                                                                    \
  template void softmax_xent_forward<T>(const T*, const int32_t*, int64_t, int64_t,           \
                                        compute_t<T>*, compute_t<T>*, double*, int32_t*);       \
  template void softmax_xent_backward<T>(const T*, const int32_t*, const compute_t<T>*,         \
                                         const compute_t<T>*, int64_t, int64_t, compute_t<T>,   \
                                         T*);                                                  \
  template void row_max<T>(const T*, int64_t, int64_t, compute_t<T>*);                          \
  template void vp_exp_sums<T>(const T*, const int32_t*, int64_t, int64_t, int64_t,             \
                               const compute_t<T>*, T*, compute_t<T>*, int32_t*);
DTRAIN_INSTANTIATE(float)
DTRAIN_INSTANTIATE(double)
DTRAIN_INSTANTIATE(bf16)
#undef DTRAIN_INSTANTIATE

}  // namespace dtrain::cpu
