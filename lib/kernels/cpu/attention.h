// Causal multi-head self-attention on the CPU, the core of a GPT block between
// its qkv and output projections. One (batch, head) pair per OpenMP iteration;
// inside it the matrix products go to cblas (single-threaded inside a parallel
// region with the OpenMP build of OpenBLAS that CMake links; the pthread build
// would start its own threads there and run about 10x slower), on row blocks of kAttentionBlock queries that only reach the keys
// at or before the block's end, so the masked upper triangle is (almost) never
// computed. Softmax is in the compute precision (fp32 for bf16) with max-subtraction. The
// probabilities (B, nh, T, T) are kept for backward, which overwrites them
// with the score gradients: a thread then needs only one row block of scratch
// instead of a (T, T) matrix of its own.
//
// Layouts: qkv (B, T, C + 2 Ckv) as the qkv projection writes it: q, k, v in
// columns [0, C), [C, C + Ckv), [C + Ckv, C + 2 Ckv), head h in columns
// [h*hs, (h+1)*hs) of each, with hs = C / nh and Ckv = nkv * hs. With nkv ==
// nh this is multi-head attention (qkv (B, T, 3C)); with nkv < nh grouped-query
// attention (GQA): query head h reads key/value head h / (nh / nkv), and the
// backward sums dK and dV over each group's query heads in head order, each
// key block of a (batch, group) one OpenMP iteration. The output y (B, T, C) has head h in
// columns [h*hs, (h+1)*hs), which is the layout the output projection reads:
// no transposes anywhere.
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/bf16.h"

namespace dtrain::cpu {

inline constexpr int64_t kAttentionBlock = 64;

// Scratch elements (compute type) one thread needs in attention_forward (bf16
// only: the fp32 scores of a row block) and attention_backward (the score
// gradients of a row block; in bf16 under GQA also, in another pass, the fp32
// sum of a key block's dK or dV over the group, (block, hs)).
inline int64_t attention_scratch_size(int64_t T, int64_t hs = 0) { return kAttentionBlock * std::max(T, hs); }

// qkv: (B, T, C + 2 Ckv), Ckv = C / nh * nkv (nkv divides nh); att: (B, nh, T, T) probabilities, written (entries above
// the diagonal are zero within each row block and unspecified beyond it);
// y: (B, T, C). scratch: `slots` * attention_scratch_size(T, hs); at most `slots`
// threads run. In bf16 the scores and the softmax are fp32 (in scratch), the
// probabilities are stored in bf16 and every product accumulates in fp32.
template <class F>
void attention_forward(const F* qkv, int64_t B, int64_t T, int64_t C, int64_t nh, int64_t nkv, F* att, F* y,
                       compute_t<F>* scratch, int slots);

// dy: (B, T, C); qkv and att as left by forward; att is overwritten (with
// dL/dscores), so backward runs once per forward. dqkv: like qkv, written.
// scratch: `slots` * attention_scratch_size(T, hs); at most `slots` threads run.
template <class F>
void attention_backward(const F* dy, const F* qkv, F* att, int64_t B, int64_t T, int64_t C,
                        int64_t nh, int64_t nkv, compute_t<F>* scratch, int slots, F* dqkv);

}  // namespace dtrain::cpu
