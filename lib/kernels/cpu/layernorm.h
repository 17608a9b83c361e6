// LayerNorm over the last dimension, as torch.nn.LayerNorm (biased variance,
// eps inside the square root). Forward keeps the per-row mean and 1/std so
// backward need not recompute them. Backward fuses the residual branch: it
// writes dx = dres + dLN/dx in the same pass, which is what a pre-norm block
// needs. The weight and bias gradients are summed over rows in a fixed number
// of chunks (kLayerNormChunks, independent of the thread count) and the chunks
// combined in order, so they are bit-identical for any number of threads.
#pragma once

#include <cstdint>

#include "core/bf16.h"

namespace dtrain::cpu {

inline constexpr int64_t kLayerNormChunks = 64;

// Scratch elements layernorm_backward needs for rows of width c.
inline int64_t layernorm_scratch_size(int64_t c) { return kLayerNormChunks * 2 * c; }

// x, y: (n, c); w, b: (c) (b may be null); mean, rstd: (n).
template <class T>
void layernorm_forward(const T* x, const T* w, const T* b, int64_t n, int64_t c, compute_t<T> eps,
                       T* y, compute_t<T>* mean, compute_t<T>* rstd);
template <class T>
void layernorm_backward(const T* dy, const T* x, const T* w, const compute_t<T>* mean,
                        const compute_t<T>* rstd, const T* dres, int64_t n, int64_t c, T* dx,
                        compute_t<T>* dw, compute_t<T>* db, compute_t<T>* scratch);

// RMSNorm (Zhang and Sennrich 2019; LLaMA's norm, as torch.nn.RMSNorm):
// y = x / sqrt(mean(x^2) + eps) * w, no mean removed and no bias. Forward
// keeps 1/rms per row; backward as layernorm_backward (dres fused, dw summed
// in the same fixed chunks; dx may alias dy), with scratch of
// rmsnorm_scratch_size(c).
inline int64_t rmsnorm_scratch_size(int64_t c) { return kLayerNormChunks * c; }
template <class T>
void rmsnorm_forward(const T* x, const T* w, int64_t n, int64_t c, compute_t<T> eps, T* y,
                     compute_t<T>* rstd);
template <class T>
void rmsnorm_backward(const T* dy, const T* x, const T* w, const compute_t<T>* rstd, const T* dres,
                      int64_t n, int64_t c, T* dx, compute_t<T>* dw, compute_t<T>* scratch);

}  // namespace dtrain::cpu
