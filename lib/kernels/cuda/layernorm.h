// Launchers of LayerNorm and RMSNorm (layernorm.cu), as cpu::layernorm_* and
// cpu::rmsnorm_*: statistics in fp32, mean (LayerNorm) and rstd (n) kept for
// the backward; dw/db (fp32) accumulate.
#pragma once

#include <cstdint>

#include "kernels/cuda/gpt_act.h"

namespace dtrain::cuda::gpt {

// x, y (n, c); w, b (c), b may be null.
void layernorm_forward(Act t, const void* x, const void* w, const void* b, int64_t n, int64_t c,
                       float eps, void* y, float* mean, float* rstd, void* stream);
// dx = dres + dLN (dres may be null; dx may alias dy or dres); dw, db (db may
// be null) += the weight and bias gradients, from `chunks` per-chunk partials
// (scratch: 2 * chunks * c floats) summed in chunk order.
void layernorm_backward(Act t, const void* dy, const void* x, const void* w, const float* mean,
                        const float* rstd, const void* dres, int64_t n, int64_t c, void* dx,
                        float* dw, float* db, float* scratch, int64_t chunks, void* stream);

// x, y (n, c); w (c); no mean removed, no bias.
void rmsnorm_forward(Act t, const void* x, const void* w, int64_t n, int64_t c, float eps, void* y,
                     float* rstd, void* stream);
// dx = dres + dRMS (dres may be null; dx may alias dy or dres); dw += the
// weight gradient from `chunks` per-chunk partials (scratch: chunks * c
// floats) summed in chunk order.
void rmsnorm_backward(Act t, const void* dy, const void* x, const void* w, const float* rstd,
                      const void* dres, int64_t n, int64_t c, void* dx, float* dw, float* scratch,
                      int64_t chunks, void* stream);

}  // namespace dtrain::cuda::gpt
