// GELU with the tanh approximation, as PyTorch's gelu(approximate="tanh") and
// GPT-2: y = x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))). Elementwise and
// vectorised (tanh_fast in fp32); backward recomputes tanh from x instead of
// keeping a second (N, 4C) tensor.
#pragma once

#include <cstdint>

#include "core/bf16.h"

namespace dtrain::cpu {

// x, y: (n).
template <class T> void gelu_forward(const T* x, int64_t n, T* y);
// dx = dy * gelu'(x); dx may alias dy.
template <class T> void gelu_backward(const T* x, const T* dy, int64_t n, T* dx);

// SwiGLU (elementwise_math.h's swiglu): f (n, 2h) holds each row's gate a
// then its up-projection u; g (n, h) = silu(a) * u.
template <class T> void swiglu_forward(const T* f, int64_t n, int64_t h, T* g);
// df (n, 2h) = the gradients of a and u for dg (n, h); df may not alias dg.
template <class T> void swiglu_backward(const T* f, const T* dg, int64_t n, int64_t h, T* df);

}  // namespace dtrain::cpu
