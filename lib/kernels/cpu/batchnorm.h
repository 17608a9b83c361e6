// Batch normalisation over NCHW activations, as torch.nn.BatchNorm2d: in
// training, statistics over (N, H, W) per channel (biased variance to
// normalise, unbiased variance into the running estimate, momentum weighting
// the new batch); in evaluation, the running statistics.
//
// Why fused: the normalisation is memory-bound, so the optional residual add
// and ReLU that follow it in a ResNet block ride along in the same pass:
//   y = relu(w * (x - mean) * rstd + b + res)
// and backward takes the ReLU mask from y. Work is split by channel: one
// thread reduces one channel in a fixed order (fp64 accumulators), so results
// are bit-identical for any number of threads, and a channel's N*H*W values
// stay in cache between the statistics pass and the normalising pass.
//
// T is float, double or bf16: x, y, res, dy, dx, dz and the parameters' compute
// copy (w, b) are T; the statistics (mean, rstd, the running estimates) and the
// parameter gradients are in compute_t<T> (float for bf16), as is all
// arithmetic, each bf16 output rounded once.
#pragma once

#include <cstdint>

#include "core/bf16.h"

namespace dtrain::cpu {

struct BatchNormArgs {
  int64_t n = 0, c = 0, hw = 0;  // x: (n, c, hw)
  double eps = 1e-5;
  double momentum = 0.1;  // running = (1 - momentum) * running + momentum * batch
  bool relu = false;      // apply ReLU after the (optional) residual add
};

// Training: batch statistics; mean and rstd (c) are kept for backward and
// running_mean / running_var (c) updated. res (n, c, hw) may be null.
// Needs n * hw > 1 (the unbiased variance).
template <class T>
void batchnorm_forward_train(const BatchNormArgs& a, const T* x, const T* w, const T* b,
                             const T* res, T* y, compute_t<T>* mean, compute_t<T>* rstd,
                             compute_t<T>* running_mean, compute_t<T>* running_var);

// Evaluation: normalises with the running statistics, writing the mean and
// rstd it used into mean / rstd (c) for backward.
template <class T>
void batchnorm_forward_eval(const BatchNormArgs& a, const T* x, const T* w, const T* b,
                            const T* res, const compute_t<T>* running_mean,
                            const compute_t<T>* running_var, T* y, compute_t<T>* mean,
                            compute_t<T>* rstd);

// Backward of the last forward, given dy and its output y (for the ReLU mask,
// ignored unless a.relu). batch_stats: the forward used batch statistics
// (training), so their gradient flows too. dx (n, c, hw) is written; dz (the
// gradient after the ReLU, i.e. of the residual input), if not null, too;
// dw and db (c) accumulate (+=).
template <class T>
void batchnorm_backward(const BatchNormArgs& a, bool batch_stats, const T* dy, const T* y,
                        const T* x, const T* w, const compute_t<T>* mean, const compute_t<T>* rstd,
                        T* dx, T* dz, compute_t<T>* dw, compute_t<T>* db);

}  // namespace dtrain::cpu
