// Softmax cross-entropy over the rows of a (rows, V) logits matrix, written to
// touch the matrix as few times as possible: with V = 50304 it is the largest
// activation of a GPT step (51 MB for 256 tokens) and the passes over it are
// memory-bound. Forward reads each row once from memory (the max pass brings
// it into L2, the sum-of-exponentials pass reads it there) and keeps only the
// row's max and sum; backward reads the logits again and writes dL/dlogits
// in the same pass. Parallel over rows; the order of every sum is fixed, so
// results do not depend on the thread count.
#pragma once

#include <cstdint>

#include "core/bf16.h"

namespace dtrain::cpu {

// x: (rows, v) logits; tgt: (rows) ids in [0, v). Writes per row the max m,
// the sum s of exp(x - m), the loss log(s) + m - x[tgt] (in double) and the
// first index of the max.
template <class T>
void softmax_xent_forward(const T* x, const int32_t* tgt, int64_t rows, int64_t v,
                          compute_t<T>* row_max, compute_t<T>* row_sum, double* row_loss,
                          int32_t* argmax);

// dx = scale * (softmax(x) - onehot(tgt)) from the forward's row_max and
// row_sum; dx may alias x.
template <class T>
void softmax_xent_backward(const T* x, const int32_t* tgt, const compute_t<T>* row_max,
                           const compute_t<T>* row_sum, int64_t rows, int64_t v,
                           compute_t<T> scale, T* dx);

// The vocabulary-parallel loss's pieces, on a rank's slice of the columns
// (x: (rows, v), its first column the vocabulary's id v0):
// the max of each row of the slice;
template <class T>
void row_max(const T* x, int64_t rows, int64_t v, compute_t<T>* m);

// given m, the max of each whole row (the group's): p = exp(x - m) (p may be
// x); sums[r] the sum of p's row (in double, as the forward's) and
// sums[rows + r] the target's logit (0 where the slice does not hold it);
// argmax[r] v0 + the first column holding m, INT32_MAX where none does.
template <class T>
void vp_exp_sums(const T* x, const int32_t* tgt, int64_t v0, int64_t rows, int64_t v,
                 const compute_t<T>* m, T* p, compute_t<T>* sums, int32_t* argmax);

}  // namespace dtrain::cpu
