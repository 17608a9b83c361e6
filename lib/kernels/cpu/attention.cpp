#include "kernels/cpu/attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/gemm_bf16.h"
#include "kernels/cpu/vmath.h"

namespace dtrain::cpu {

namespace {

// Row i of a causal score matrix: softmax over [0, n), zeros in [n, end).
template <class F>
void softmax_causal_row(F* row, int64_t n, int64_t end) {
  const F mx = max_of(row, n);
  F sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; ++j) {
    row[j] = exp_fast(row[j] - mx);
    sum += row[j];
  }
  const F inv = F(1) / sum;
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) row[j] *= inv;
  std::fill(row + n, row + end, F(0));
}

// Softmax backward on row i: ds = p * (dp - sum(p * dp)) over [0, n), zeros
// in [n, end). ds overwrites p.
template <class F>
void softmax_causal_row_backward(F* p, const F* dp, int64_t n, int64_t end) {
  F d = 0;
#pragma omp simd reduction(+ : d)
  for (int64_t j = 0; j < n; ++j) d += p[j] * dp[j];
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) p[j] = p[j] * (dp[j] - d);
  std::fill(p + n, p + end, F(0));
}

}  // namespace

namespace {
// The shapes of one call: head width hs, key (and value) width ckv, row stride
// ld of qkv, query heads per key/value head.
struct Dims {
  int64_t hs, ckv, ld, group;
  Dims(int64_t c, int64_t nh, int64_t nkv) : hs(c / nh), ckv(c / nh * nkv), ld(c + 2 * (c / nh * nkv)), group(nh / nkv) {}
};

// The backward's schedule (see attention_backward below), for either element
// type: key_block(b, g, blk, values) makes dV (values) or dK of one key block
// of (batch b, key/value head g); rows(b, h) dS and dQ of query head h.
template <class KeyBlock, class Rows>
void run_backward(int64_t B, int64_t nh, int64_t nkv, int64_t blocks, int threads, const KeyBlock& key_block,
                  const Rows& rows) {
  const int64_t group = nh / nkv;
  if (B * nkv >= threads) {  // an item per (batch, key/value head): the three passes of a group in turn
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t bg = 0; bg < B * nkv; ++bg) {
      const int64_t b = bg / nkv, g = bg % nkv;
      for (int64_t blk = 0; blk < blocks; ++blk) key_block(b, g, blk, /*values=*/true);
      for (int64_t h = g * group; h < (g + 1) * group; ++h) rows(b, h);
      for (int64_t blk = 0; blk < blocks; ++blk) key_block(b, g, blk, /*values=*/false);
    }
    return;
  }
#pragma omp parallel num_threads(threads)
  {
#pragma omp for schedule(dynamic)
    for (int64_t item = 0; item < B * nkv * blocks; ++item)
      key_block(item / (nkv * blocks), item / blocks % nkv, item % blocks, /*values=*/true);
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < B * nh; ++bh) rows(bh / nh, bh % nh);
#pragma omp for schedule(dynamic)
    for (int64_t item = 0; item < B * nkv * blocks; ++item)
      key_block(item / (nkv * blocks), item / blocks % nkv, item % blocks, /*values=*/false);
  }
}
}  // namespace

template <class F>
void attention_forward(const F* qkv, int64_t B, int64_t T, int64_t C, int64_t nh, int64_t nkv, F* att, F* y,
                       compute_t<F>*, int) {
  const Dims d(C, nh, nkv);
  const int64_t hs = d.hs, ld = d.ld;
  const F scale = F(1) / std::sqrt(static_cast<F>(hs));
#pragma omp parallel for schedule(static)
  for (int64_t bh = 0; bh < B * nh; ++bh) {
    const int64_t b = bh / nh, h = bh % nh;
    const F* q = qkv + b * T * ld + h * hs;  // (T, hs), row stride ld
    const F* k = qkv + b * T * ld + C + h / d.group * hs;
    const F* v = k + d.ckv;
    F* p = att + bh * T * T;          // (T, T)
    F* o = y ? y + b * T * C + h * hs : nullptr;  // (T, hs), row stride C; null: probabilities only
    for (int64_t r0 = 0; r0 < T; r0 += kAttentionBlock) {
      const int64_t r1 = std::min(T, r0 + kAttentionBlock);
      // S[r0:r1, :r1] = scale * Q[r0:r1] @ K[:r1]^T
      gemm<F>(false, true, r1 - r0, r1, hs, scale, q + r0 * ld, ld, k, ld, F(0), p + r0 * T, T);
      for (int64_t i = r0; i < r1; ++i) softmax_causal_row(p + i * T, i + 1, r1);
      // O[r0:r1] = P[r0:r1, :r1] @ V[:r1]
      if (y) gemm<F>(false, false, r1 - r0, hs, r1, F(1), p + r0 * T, T, v, ld, F(0), o + r0 * C, C);
    }
  }
}

// The backward in three passes (a group's dK and dV are sums over its query
// heads, which one item must own):
//   1. per (batch, key/value head, key block): dV[block] = sum over the
//      group's heads of P_h[:, block]^T dO_h, heads in order (the first
//      writes, the rest add);
//   2. per (batch, query head): dP = dO V^T and dS over P's rows (att now holds
//      dS), dQ = scale dS K;
//   3. per (batch, key/value head, key block): dK[block] = scale sum over the
//      heads of dS_h[:, block]^T Q_h.
// With at least as many (batch, key/value head) pairs as threads, each pair
// is one item running the three passes in turn (multi-head attention: a
// head's P stays in cache between them); with fewer (grouped-query or
// multi-query attention on small batches), each pass is its own parallel
// loop over key blocks or query heads, so the threads still have work. Both
// run the same products on the same operands in the same order: each output
// element is one thread's, summed in one order, and the bits depend neither
// on the thread count nor on which way ran. Key blocks c0..c1 are seen by
// queries c0..T only.
template <class F>
void attention_backward(const F* dy, const F* qkv, F* att, int64_t B, int64_t T, int64_t C,
                        int64_t nh, int64_t nkv, compute_t<F>* scratch, int slots, F* dqkv) {
  const Dims d(C, nh, nkv);
  const int64_t hs = d.hs, ld = d.ld, blocks = (T + kAttentionBlock - 1) / kAttentionBlock;
  const F scale = F(1) / std::sqrt(static_cast<F>(hs));
  const int threads = std::max(1, std::min(slots, omp_get_max_threads()));
  // dK or dV of key block `blk` of (batch b, key/value head g): sum over the group's heads of
  // alpha * M_h[c0:, c0:c1]^T X_h[c0:] (M: P or dS in att; X: dO rows of stride C, or Q rows of ld).
  auto key_block = [&](int64_t b, int64_t g, int64_t blk, bool values) {
    const int64_t c0 = blk * kAttentionBlock, c1 = std::min(T, c0 + kAttentionBlock);
    F* out = dqkv + b * T * ld + C + (values ? d.ckv : 0) + g * hs + c0 * ld;
    for (int64_t h = g * d.group; h < (g + 1) * d.group; ++h) {
      const F* m = att + (b * nh + h) * T * T + c0 * T + c0;
      const F* x = values ? dy + b * T * C + h * hs + c0 * C : qkv + b * T * ld + h * hs + c0 * ld;
      gemm<F>(true, false, c1 - c0, hs, T - c0, values ? F(1) : scale, m, T, x, values ? C : ld,
              h == g * d.group ? F(0) : F(1), out, ld);
    }
  };
  // dP, dS (over P in att) and dQ of query head h of batch b.
  auto rows = [&](int64_t b, int64_t h) {
    const F* k = qkv + b * T * ld + C + h / d.group * hs;  // (T, hs), row stride ld
    const F* v = k + d.ckv;
    F* p = att + (b * nh + h) * T * T;      // (T, T): P, then dS
    const F* go = dy + b * T * C + h * hs;  // dO (T, hs), row stride C
    F* dq = dqkv + b * T * ld + h * hs;
    F* dp = scratch + omp_get_thread_num() * attention_scratch_size(T, hs);  // (block, T)
    for (int64_t r0 = 0; r0 < T; r0 += kAttentionBlock) {
      const int64_t r1 = std::min(T, r0 + kAttentionBlock);
      // dP[r0:r1, :r1] = dO[r0:r1] @ V[:r1]^T, then dS over P's rows
      gemm<F>(false, true, r1 - r0, r1, hs, F(1), go + r0 * C, C, v, ld, F(0), dp, T);
      for (int64_t i = r0; i < r1; ++i)
        softmax_causal_row_backward(p + i * T, dp + (i - r0) * T, i + 1, r1);
      // dQ[r0:r1] = scale * dS[r0:r1, :r1] @ K[:r1]
      gemm<F>(false, false, r1 - r0, hs, r1, scale, p + r0 * T, T, k, ld, F(0), dq + r0 * ld, ld);
    }
  };
  run_backward(B, nh, nkv, blocks, threads, key_block, rows);
}

// bf16: Q, K, V, P, dO and the outputs in bf16; scores, softmax and score
// gradients in fp32 in the thread's scratch rows; products accumulate in fp32.
template <>
void attention_forward<bf16>(const bf16* qkv, int64_t B, int64_t T, int64_t C, int64_t nh, int64_t nkv,
                             bf16* att, bf16* y, float* scratch, int slots) {
  const Dims d(C, nh, nkv);
  const int64_t hs = d.hs, ld = d.ld;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  const int threads = std::max(1, std::min(slots, omp_get_max_threads()));
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t bh = 0; bh < B * nh; ++bh) {
    const int64_t b = bh / nh, h = bh % nh;
    const bf16* q = qkv + b * T * ld + h * hs;
    const bf16* k = qkv + b * T * ld + C + h / d.group * hs;
    const bf16* v = k + d.ckv;
    bf16* p = att + bh * T * T;
    bf16* o = y ? y + b * T * C + h * hs : nullptr;
    float* s = scratch + omp_get_thread_num() * attention_scratch_size(T, hs);  // (block, T)
    for (int64_t r0 = 0; r0 < T; r0 += kAttentionBlock) {
      const int64_t r1 = std::min(T, r0 + kAttentionBlock);
      gemm_bf16(false, true, r1 - r0, r1, hs, scale, q + r0 * ld, ld, k, ld, 0.0f, s, T);
      for (int64_t i = r0; i < r1; ++i) {
        float* sr = s + (i - r0) * T;
        softmax_causal_row(sr, i + 1, r1);
        bf16* pr = p + i * T;
        for (int64_t j = 0; j < r1; ++j) pr[j] = bf16(sr[j]);
      }
      if (y) gemm_bf16(false, false, r1 - r0, hs, r1, 1.0f, p + r0 * T, T, v, ld, 0.0f, o + r0 * C, C);
    }
  }
}

// As the template's. A key block's dK or dV sums the group's
// heads in fp32 (the thread's scratch) and is rounded to bf16 once; a group of
// one writes bf16 directly.
template <>
void attention_backward<bf16>(const bf16* dy, const bf16* qkv, bf16* att, int64_t B, int64_t T,
                              int64_t C, int64_t nh, int64_t nkv, float* scratch, int slots, bf16* dqkv) {
  const Dims d(C, nh, nkv);
  const int64_t hs = d.hs, ld = d.ld, blocks = (T + kAttentionBlock - 1) / kAttentionBlock;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  const int threads = std::max(1, std::min(slots, omp_get_max_threads()));
  auto key_block = [&](int64_t b, int64_t g, int64_t blk, bool values) {
    const int64_t c0 = blk * kAttentionBlock, c1 = std::min(T, c0 + kAttentionBlock);
    bf16* out = dqkv + b * T * ld + C + (values ? d.ckv : 0) + g * hs + c0 * ld;
    float* sum = scratch + omp_get_thread_num() * attention_scratch_size(T, hs);  // (c1 - c0, hs)
    for (int64_t h = g * d.group; h < (g + 1) * d.group; ++h) {
      const bf16* m = att + (b * nh + h) * T * T + c0 * T + c0;
      const bf16* x = values ? dy + b * T * C + h * hs + c0 * C : qkv + b * T * ld + h * hs + c0 * ld;
      const float alpha = values ? 1.0f : scale;
      const int64_t ldx = values ? C : ld;
      if (d.group == 1)
        gemm_bf16(true, false, c1 - c0, hs, T - c0, alpha, m, T, x, ldx, 0.0f, out, ld);
      else
        gemm_bf16(true, false, c1 - c0, hs, T - c0, alpha, m, T, x, ldx, h == g * d.group ? 0.0f : 1.0f, sum, hs);
    }
    if (d.group > 1)
      for (int64_t r = 0; r < c1 - c0; ++r)
        for (int64_t e = 0; e < hs; ++e) out[r * ld + e] = bf16(sum[r * hs + e]);
  };
  auto rows = [&](int64_t b, int64_t h) {
    const bf16* k = qkv + b * T * ld + C + h / d.group * hs;
    const bf16* v = k + d.ckv;
    bf16* p = att + (b * nh + h) * T * T;  // P, then dS
    const bf16* go = dy + b * T * C + h * hs;
    bf16* dq = dqkv + b * T * ld + h * hs;
    float* dp = scratch + omp_get_thread_num() * attention_scratch_size(T, hs);  // (block, T)
    for (int64_t r0 = 0; r0 < T; r0 += kAttentionBlock) {
      const int64_t r1 = std::min(T, r0 + kAttentionBlock);
      gemm_bf16(false, true, r1 - r0, r1, hs, 1.0f, go + r0 * C, C, v, ld, 0.0f, dp, T);
      for (int64_t i = r0; i < r1; ++i) {
        bf16* pr = p + i * T;
        const float* dpr = dp + (i - r0) * T;
        const int64_t n = i + 1;
        float dsum = 0;  // in SIMD lanes, as the fp32 rows': the order is fixed at compile time
#pragma omp simd reduction(+ : dsum)
        for (int64_t j = 0; j < n; ++j) dsum += load_elem(pr[j]) * dpr[j];
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) store_elem(pr[j], load_elem(pr[j]) * (dpr[j] - dsum));
        std::fill(pr + n, pr + r1, bf16(0.0f));
      }
      gemm_bf16(false, false, r1 - r0, hs, r1, scale, p + r0 * T, T, k, ld, 0.0f, dq + r0 * ld, ld);
    }
  };
  run_backward(B, nh, nkv, blocks, threads, key_block, rows);
}

#define DTRAIN_INSTANTIATE(F)                                                                    \
  template void attention_forward<F>(const F*, int64_t, int64_t, int64_t, int64_t, int64_t, F*, F*, \
                                     compute_t<F>*, int);                                              \
  template void attention_backward<F>(const F*, const F*, F*, int64_t, int64_t, int64_t, int64_t,       \
                                      int64_t, compute_t<F>*, int, F*);
DTRAIN_INSTANTIATE(float)
DTRAIN_INSTANTIATE(double)
#undef DTRAIN_INSTANTIATE

}  // namespace dtrain::cpu
