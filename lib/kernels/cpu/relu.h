// ReLU, y = max(x, 0). Backward takes its mask from the output (y > 0), so
// only y is kept; the gradient at x = 0 is 0, as in PyTorch.
#pragma once

#include <cstdint>

#include "core/bf16.h"

namespace dtrain::cpu {

template <class T> void relu_forward(const T* x, int64_t n, T* y);
// dx = dy where y > 0, else 0 (dx may alias dy).
template <class T> void relu_backward(const T* y, const T* dy, int64_t n, T* dx);

}  // namespace dtrain::cpu
