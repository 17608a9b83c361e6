// Launchers of the elementwise kernels (elementwise.cu): grid-stride loops,
// one element per thread per step, arithmetic in fp32 whatever the storage.
// Shapes as in lib/ops/ops.h; n counts elements.
#pragma once

#include <cstdint>

#include "core/bf16.h"
#include "kernels/cuda/gpt_act.h"
#include "kernels/elementwise_math.h"

namespace dtrain::cuda::gpt {

void add(Act t, const void* a, const void* b, int64_t n, void* y, void* stream);
void scale(Act t, void* x, int64_t n, float s, void* stream);
// x (rows, v): columns [from, v) of every row = value.
void fill_columns(Act t, void* x, int64_t rows, int64_t v, int64_t from, float value, void* stream);
void f32_to_bf16(const float* x, int64_t n, bf16* y, void* stream);
void bf16_to_f32(const bf16* x, int64_t n, float* y, void* stream);
// y (n / m, m): every row = b (m), or += b.
void broadcast_rows(Act t, const void* b, int64_t n, int64_t m, void* y, void* stream);
void add_rows(Act t, const void* b, int64_t n, int64_t m, void* y, void* stream);
void gelu_forward(Act t, const void* x, int64_t n, void* y, void* stream);
void gelu_backward(Act t, const void* x, const void* dy, int64_t n, void* dx, void* stream);
// SwiGLU: f (n, 2h), each row the gate a (h) then the up-projection u (h);
// g (n, h) = silu(a) * u. Backward: df (n, 2h) = [da | du] for dg (n, h).
void swiglu_forward(Act t, const void* f, int64_t n, int64_t h, void* g, void* stream);
void swiglu_backward(Act t, const void* f, const void* dg, int64_t n, int64_t h, void* df,
                     void* stream);
// Rotary embedding in place on qkv (b, t, c + 2 c_kv): the queries' heads
// (c = n_head * d, d even) and the keys' (c_kv = n_kv_head * d) of row s turn
// by position pos0 + s's angles.
void rope(Act t, void* qkv, int64_t b, int64_t tlen, int64_t c, int64_t n_head, int64_t n_kv_head,
          const math::Rope& rope, int64_t pos0, bool inverse, void* stream);
// x, y, mask: (samples, sample_numel); resid null or like x. threshold:
// math::dropout_threshold(p); scale: float(1 / (1 - p)); first_element: the
// offset of x's samples inside the whole samples (a sequence slice).
void dropout_forward(Act t, const void* x, const void* resid, int64_t samples, int64_t sample_numel,
                     uint64_t threshold, float scale, uint64_t key, int64_t first_sample,
                     int64_t first_element, uint8_t* mask, void* y, void* stream);
void dropout_backward(Act t, const void* dy, const uint8_t* mask, int64_t n, float scale, void* dx,
                      void* stream);

}  // namespace dtrain::cuda::gpt
