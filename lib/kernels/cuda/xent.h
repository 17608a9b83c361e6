// Launchers of the softmax cross-entropy kernels (xent.cu), as
// cpu::softmax_xent_* and the vocabulary-parallel pieces of ops.cpp: one
// block per row, fp32 statistics, fixed-order block sums. The loss
// statistics (LossAccum, five doubles) stay on the device.
#pragma once

#include <cstdint>

#include "kernels/cuda/gpt_act.h"

namespace dtrain::cuda::gpt {

// x (rows, v); tgt (rows). row_max, row_sum (rows) fp32; row_loss (rows)
// double; argmax (rows): the first column holding the row's maximum.
void xent_forward(Act t, const void* x, const int32_t* tgt, int64_t rows, int64_t v, float* row_max,
                  float* row_sum, double* row_loss, int32_t* argmax, void* stream);
// sums (5) += the micro-batch's mean loss, mean * rows, rows, correct, 1.
void loss_accumulate(const double* row_loss, const int32_t* argmax, const int32_t* tgt, int64_t rows,
                     double* sums, void* stream);
// dx = scale * (softmax(x) - onehot(tgt)); dx may alias x.
void xent_backward(Act t, const void* x, const int32_t* tgt, const float* row_max,
                   const float* row_sum, int64_t rows, int64_t v, float scale, void* dx,
                   void* stream);

// Vocabulary-parallel pieces: x holds columns [v0, v0 + v) of each row.
void vp_row_max(Act t, const void* x, int64_t rows, int64_t v, float* row_max, void* stream);
// probs = exp(x - max); sums (2, rows): local exp sums, target logit here (else
// 0); argmax: first global column holding the max, INT32_MAX where none here.
void vp_exp_sums(Act t, const void* x, const int32_t* tgt, int64_t v0, int64_t rows, int64_t v,
                 const float* row_max, void* probs, float* sums, int32_t* argmax, void* stream);
// probs /= sums[0]; row_loss = log(sum) + max - target logit.
void vp_finish(Act t, int64_t rows, int64_t v, const float* row_max, const float* sums, void* probs,
               double* row_loss, void* stream);
// probs -> scale * (probs - onehot) for the columns held here.
void vp_backward(Act t, const int32_t* tgt, int64_t v0, int64_t rows, int64_t v, float scale,
                 void* probs, void* stream);

}  // namespace dtrain::cuda::gpt
