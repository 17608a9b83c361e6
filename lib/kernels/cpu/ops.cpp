#include "kernels/cpu/ops.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include <omp.h>

namespace dtrain::cpu {

void zero_bytes(void* x, int64_t bytes) {
  char* p = static_cast<char*>(x);
  constexpr int64_t kPerThread = int64_t(1) << 20;  // below 1 MiB a team costs more than it saves
  const int team = static_cast<int>(std::clamp<int64_t>(bytes / kPerThread, 1, omp_get_max_threads()));
#pragma omp parallel num_threads(team) if (team > 1)
  {
    const int64_t nt = omp_get_num_threads(), id = omp_get_thread_num();
    const int64_t lo = bytes * id / nt, hi = bytes * (id + 1) / nt;
    std::memset(p + lo, 0, static_cast<size_t>(hi - lo));
  }
}

void transpose_blocks(const void* src, int64_t a, int64_t b, size_t block, void* dst) {
  const char* s = static_cast<const char*>(src);
  char* d = static_cast<char*>(dst);
#pragma omp parallel for collapse(2) schedule(static) if (a * b * static_cast<int64_t>(block) > (int64_t(1) << 18))
  for (int64_t i = 0; i < a; ++i)
    for (int64_t j = 0; j < b; ++j)
      std::memcpy(d + static_cast<size_t>(j * a + i) * block, s + static_cast<size_t>(i * b + j) * block, block);
}

template <class T>
void broadcast_rows(const T* b, int64_t n, int64_t m, T* y) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) std::memcpy(y + i * m, b, sizeof(T) * m);
}

template <class T>
void add_rows(const T* b, int64_t n, int64_t m, T* y) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    T* row = y + i * m;
#pragma omp simd
    for (int64_t j = 0; j < m; ++j) row[j] = T(compute_t<T>(row[j]) + compute_t<T>(b[j]));
  }
}

template <class T>
void sum_rows_acc(const T* x, int64_t n, int64_t m, compute_t<T>* acc) {
  using A = compute_t<T>;
  // Parallel over columns: each column summed by one thread in row order.
#pragma omp parallel for schedule(static)
  for (int64_t j0 = 0; j0 < m; j0 += 64) {
    int64_t j1 = std::min(m, j0 + 64);
    A s[64] = {};
    for (int64_t i = 0; i < n; ++i) {
      const T* row = x + i * m;
      for (int64_t j = j0; j < j1; ++j) s[j - j0] += A(row[j]);
    }
    for (int64_t j = j0; j < j1; ++j) acc[j] += s[j - j0];
  }
}

template <class T>
void add(const T* a, const T* b, int64_t n, T* y) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] = T(compute_t<T>(a[i]) + compute_t<T>(b[i]));
}

namespace {

// A fixed number of chunks per array (independent of the thread count),
// summed in order, so the result is bit-identical for any number of threads.
constexpr int64_t kChunks = 256;

template <class T>
double chunk_sum_squares(const T* x, int64_t n, int64_t c) {
  const int64_t len = (n + kChunks - 1) / kChunks;
  const int64_t b = std::min(n, c * len), e = std::min(n, b + len);
  double s = 0;
  // simd reduction: a fixed lane order chosen at compile time, so still
  // deterministic, and vectorised (a plain loop must keep strict order).
#pragma omp simd reduction(+ : s)
  for (int64_t i = b; i < e; ++i) {
    const double v = static_cast<double>(compute_t<T>(x[i]));
    s += v * v;
  }
  return s;
}

}  // namespace

template <class T>
double sum_squares(const T* x, int64_t n) {
  double part[kChunks] = {};
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < kChunks; ++c) part[c] = chunk_sum_squares(x, n, c);
  double total = 0;
  for (double p : part) total += p;
  return total;
}

template <class T>
double sum_squares_many(const T* const* xs, const int64_t* ns, int64_t count) {
  std::vector<double> part(static_cast<size_t>(count * kChunks), 0.0);  // (count, kChunks): a few kB
  int64_t total_n = 0;
  for (int64_t k = 0; k < count; ++k) total_n += ns[k];
  double* pp = part.data();
#pragma omp parallel
  {
    // Each thread takes the chunks that start in its share of the elements.
    const int64_t nt = omp_get_num_threads(), id = omp_get_thread_num();
    const int64_t lo = total_n * id / nt, hi = total_n * (id + 1) / nt;
    int64_t seen = 0;
    for (int64_t k = 0; k < count; ++k) {
      const int64_t n = ns[k], len = (n + kChunks - 1) / kChunks;
      if (seen + n > lo && seen < hi)
        for (int64_t c = 0; c < kChunks; ++c) {
          const int64_t start = seen + std::min(n, c * len);
          if (start >= lo && (start < hi || (id == nt - 1 && start == hi)))
            pp[k * kChunks + c] = chunk_sum_squares(xs[k], n, c);
        }
      seen += n;
    }
  }
  double sum = 0;
  for (int64_t k = 0; k < count; ++k) {
    double total = 0;
    for (int64_t c = 0; c < kChunks; ++c) total += pp[k * kChunks + c];
    sum += total;
  }
  return sum;
}

#define DTRAIN_INSTANTIATE(T)                                       \
  template void broadcast_rows<T>(const T*, int64_t, int64_t, T*);  \
  template void add_rows<T>(const T*, int64_t, int64_t, T*);        \
  template void sum_rows_acc<T>(const T*, int64_t, int64_t, compute_t<T>*); \
  template void add<T>(const T*, const T*, int64_t, T*);            \
  template double sum_squares<T>(const T*, int64_t);                \
  template double sum_squares_many<T>(const T* const*, const int64_t*, int64_t);
DTRAIN_INSTANTIATE(float)
DTRAIN_INSTANTIATE(double)
DTRAIN_INSTANTIATE(bf16)
#undef DTRAIN_INSTANTIATE

}  // namespace dtrain::cpu
