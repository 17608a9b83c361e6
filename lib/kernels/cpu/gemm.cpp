#include "kernels/cpu/gemm.h"

#include <cblas.h>
#include <omp.h>

#ifdef DTRAIN_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#endif

namespace dtrain::cpu {

namespace {

void sgemm_one(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
               int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
#ifdef DTRAIN_HAVE_ONEDNN
  // Row-major, like cblas. It only refuses bad arguments; cblas then reports them.
  if (dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) ==
      dnnl_success)
    return;
#endif
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a,
              static_cast<int>(lda), b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

}  // namespace

template <>
void gemm<float>(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
#ifdef DTRAIN_HAVE_ONEDNN
  // These products are cut between the threads here, each thread running one
  // single-threaded oneDNN product over the whole K, because oneDNN's own
  // split of these shapes ran fewer FLOPs per CPU-second and, with its
  // internal barriers, much slower by the clock on a loaded machine (measured
  // with 2 threads, tools/bench/results_cpu.md):
  // - a layer's forward y = x W^T (A plain, B transposed): blocks of C's
  //   columns (fc_proj, K = 4C: 148 -> 213 GFLOP per CPU-second);
  // - an input gradient dx = dy W (both plain) with many columns and a small
  //   K, i.e. fc_proj's input (256 x 3072 x 768): column blocks again
  //   (380 -> 460 GFLOP/s by the clock);
  // - a weight gradient dW = dy^T x (A transposed, B plain): blocks of C's
  //   rows (qkv: 240 -> 450 GFLOP/s by the clock).
  // Everything else (the other input gradients, the head's with K = the
  // vocabulary) is oneDNN's: there its split was as good as ours.
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const bool big = m * n * k >= (int64_t{1} << 24);
  const bool forward = !ta && tb && n >= 64 * threads;
  const bool wide_dx = !ta && !tb && n >= 2048 && k <= 4096;  // not a K = vocabulary product
  if ((forward || wide_dx) && threads > 1 && big) {
    constexpr int64_t kMaxBlock = 8192;  // columns per product at most (logits: 8 blocks)
    int64_t parts = threads;
    while (n / parts > kMaxBlock) parts += threads;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t p = 0; p < parts; ++p) {
      // 16-column boundaries: every block starts on a 64-byte line of C's rows.
      const int64_t n0 = p == 0 ? 0 : n * p / parts / 16 * 16;
      const int64_t n1 = p + 1 == parts ? n : n * (p + 1) / parts / 16 * 16;
      sgemm_one(false, tb, m, n1 - n0, k, alpha, a, lda, tb ? b + n0 * ldb : b + n0, ldb, beta,
                c + n0, ldc);
    }
    return;
  }
  if (ta && !tb && threads > 1 && big && m >= 64 * threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t p = 0; p < threads; ++p) {
      const int64_t m0 = m * p / threads, m1 = m * (p + 1) / threads;
      sgemm_one(true, false, m1 - m0, n, k, alpha, a + m0, lda, b, ldb, beta, c + m0 * ldc, ldc);
    }
    return;
  }
#endif
  sgemm_one(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

template <>
void gemm<double>(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
                  int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a,
              static_cast<int>(lda), b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

void set_num_threads(int n) {
  if (n <= 0) n = omp_get_num_procs();
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int num_threads() { return omp_get_max_threads(); }

}  // namespace dtrain::cpu
