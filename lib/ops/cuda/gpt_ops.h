// The CUDA side of the GPT's memory-bound ops (lib/ops/ops.h, optim.h): the
// same signatures, reached through DTRAIN_CUDA_OP at the top of each op. Each
// checks that its tensors are on the Exec's device with the dtypes the
// kernels take (activations f32 or bf16; statistics and parameter gradients
// f32; f64 is refused: it is the CPU's finite-difference path), then enqueues
// the launchers of lib/kernels/cuda on the Exec's stream. Built only with the
// CUDA backend.
#pragma once

#include <vector>

#include "core/exec.h"
#include "core/tensor.h"
#include "kernels/elementwise_math.h"
#include "ops/ops.h"
#include "ops/optim.h"

namespace dtrain::ops::cuda_ops {

void add(const Exec& ex, const Tensor& a, const Tensor& b, const Tensor& y);
void scale(const Exec& ex, const Tensor& x, double s);
void fill_columns(const Exec& ex, const Tensor& x, int64_t from, double value);
void convert(const Exec& ex, const Tensor& src, const Tensor& dst);
void broadcast_rows(const Exec& ex, const Tensor& b, const Tensor& y);
void add_rows(const Exec& ex, const Tensor& b, const Tensor& y);
void sum_rows_acc(const Exec& ex, const Tensor& x, const Tensor& acc);
void gelu_forward(const Exec& ex, const Tensor& x, const Tensor& y);
void gelu_backward(const Exec& ex, const Tensor& x, const Tensor& dy, const Tensor& dx);
void swiglu_forward(const Exec& ex, const Tensor& f, const Tensor& g);
void swiglu_backward(const Exec& ex, const Tensor& f, const Tensor& dg, const Tensor& df);
void dropout_forward(const Exec& ex, const Tensor& x, const Tensor& resid, double p, uint64_t key,
                     int64_t first_sample, int64_t first_element, const Tensor& mask, const Tensor& y);
void dropout_backward(const Exec& ex, const Tensor& dy, const Tensor& mask, double p, const Tensor& dx);

void layernorm_forward(const Exec& ex, const Tensor& x, const Tensor& w, const Tensor& b, double eps,
                       const Tensor& y, const Tensor& mean, const Tensor& rstd);
void layernorm_backward(const Exec& ex, const Tensor& dy, const Tensor& x, const Tensor& w,
                        const Tensor& mean, const Tensor& rstd, const Tensor& dres, const Tensor& dx,
                        const Tensor& dw, const Tensor& db, const Tensor& scratch);
void rmsnorm_forward(const Exec& ex, const Tensor& x, const Tensor& w, double eps, const Tensor& y,
                     const Tensor& rstd);
void rmsnorm_backward(const Exec& ex, const Tensor& dy, const Tensor& x, const Tensor& w,
                      const Tensor& rstd, const Tensor& dres, const Tensor& dx, const Tensor& dw,
                      const Tensor& scratch);

void rope(const Exec& ex, const Tensor& qkv, Heads heads, const math::Rope& rope, int64_t pos0, bool inverse);

void embedding_forward(const Exec& ex, const Tensor& tokens, const Tensor& wte, const Tensor& wpe,
                       const Tensor& y);
void token_embedding_shard_forward(const Exec& ex, const Tensor& tokens, const Tensor& wte,
                                   int64_t v0, const Tensor& y);
void position_embedding_add(const Exec& ex, const Tensor& wpe, const Tensor& y);
void embedding_backward(const Exec& ex, const Tensor& dy, const Tensor& tokens, int64_t v0,
                        const Tensor& dwte, const Tensor& dwpe);

LossTotals read_and_reset(const Exec& ex, LossAccum& acc);
void softmax_xent_forward(const Exec& ex, const Tensor& logits, const Tensor& targets,
                          const Tensor& row_max, const Tensor& row_sum, const Tensor& row_loss,
                          const Tensor& argmax, LossAccum& acc);
void softmax_xent_backward(const Exec& ex, const Tensor& logits, const Tensor& targets,
                           const Tensor& row_max, const Tensor& row_sum, double scale,
                           const Tensor& dx);
void vp_row_max(const Exec& ex, const Tensor& logits, const Tensor& row_max);
void vp_exp_sums(const Exec& ex, const Tensor& logits, const Tensor& targets, int64_t v0,
                 const Tensor& row_max, const Tensor& probs, const Tensor& sums, const Tensor& argmax);
void vp_finish(const Exec& ex, const Tensor& targets, const Tensor& row_max, const Tensor& sums,
               const Tensor& argmax, const Tensor& probs, const Tensor& row_loss, LossAccum& acc);
void vp_backward(const Exec& ex, const Tensor& targets, int64_t v0, double scale, const Tensor& probs);

// Synchronises the stream (the result is read on the host). Its partials use
// the Context's workspace, in stream order.
double sum_squares(const Exec& ex, const std::vector<Tensor>& xs);

// The coefficients come from optim.cpp (the CPU's own computation): `on` for
// spans with weight decay, `off` for the others.
void adamw_update(const Exec& ex, const math::AdamWCoeffs<float>& on,
                  const math::AdamWCoeffs<float>& off, const std::vector<UpdateSpan>& spans);
void sgd_update(const Exec& ex, const math::SgdCoeffs<float>& on, const math::SgdCoeffs<float>& off,
                const std::vector<UpdateSpan>& spans);

}  // namespace dtrain::ops::cuda_ops
