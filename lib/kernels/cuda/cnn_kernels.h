// Launchers of the CNN's own CUDA kernels (cnn_kernels.cu): batch norm, max
// and average pooling, ReLU, and the convolution's bias and accumulation
// helpers around cuDNN. Plain header (raw pointers, sizes, `void* stream`) so
// that g++ code calls them without a CUDA header.
//
// Semantics are the CPU kernels' (kernels/cpu/batchnorm.h, pool.h, relu.h,
// conv.h), element for element; T is float or bf16 (storage), arithmetic in
// float, batch-norm moments in double as on the CPU. Per-channel statistics
// and bias gradients are reduced by one block per channel in a fixed order
// (no atomics), so every result is the same bits run to run. Each launcher
// throws RuntimeError naming the kernel when the launch fails.
#pragma once

#include <cstdint>

#include "core/bf16.h"
#include "kernels/cpu/batchnorm.h"
#include "kernels/cpu/pool.h"

namespace dtrain::cuda {

// Batch norm over x (n, c, hw); w, b in T (the parameters' compute copy);
// mean, rstd, running_mean, running_var, dw, db in float (fp32 statistics).
template <class T>
void batchnorm_forward_train(const cpu::BatchNormArgs& a, const T* x, const T* w, const T* b,
                             const T* res, T* y, float* mean, float* rstd, float* running_mean,
                             float* running_var, void* stream);
template <class T>
void batchnorm_forward_eval(const cpu::BatchNormArgs& a, const T* x, const T* w, const T* b,
                            const T* res, const float* running_mean, const float* running_var, T* y,
                            float* mean, float* rstd, void* stream);
// dz may be null; dw, db accumulate (+=).
template <class T>
void batchnorm_backward(const cpu::BatchNormArgs& a, bool batch_stats, const T* dy, const T* y,
                        const T* x, const T* w, const float* mean, const float* rstd, T* dx, T* dz,
                        float* dw, float* db, void* stream);

// Max pooling over `planes` planes; idx int32 (the first maximum of each window).
template <class T>
void maxpool_forward(const cpu::PoolGeom& g, int64_t planes, const T* x, T* y, int32_t* idx, void* stream);
// Gathers, per input element, the dy of the windows that chose it, in output
// order (the CPU's scatter order): no atomics.
template <class T>
void maxpool_backward(const cpu::PoolGeom& g, int64_t planes, const T* dy, const int32_t* idx, T* dx,
                      void* stream);
template <class T>
void avgpool_forward(int64_t planes, int64_t hw, const T* x, T* y, void* stream);
template <class T>
void avgpool_backward(int64_t planes, int64_t hw, const T* dy, T* dx, void* stream);

template <class T>
void relu_forward(const T* x, int64_t n, T* y, void* stream);
// dx = dy where y > 0, else 0 (dx may alias dy).
template <class T>
void relu_backward(const T* y, const T* dy, int64_t n, T* dx, void* stream);

// y (n, c, hw) += b (c) broadcast over (n, hw).
template <class T>
void add_channel_bias(int64_t n, int64_t c, int64_t hw, const T* b, T* y, void* stream);
// db (c) += sums of dy (n, c, hw) over (n, hw); db in float.
template <class T>
void channel_sum_acc(int64_t n, int64_t c, int64_t hw, const T* dy, float* db, void* stream);
// dst[i] += src[i] for i < count (Dst float or T): adds a cuDNN result that
// could not accumulate in place into its destination.
template <class Dst, class Src>
void add_into(int64_t count, const Src* src, Dst* dst, void* stream);

}  // namespace dtrain::cuda
