// Pooling over NCHW planes: max-pool (torchvision's stem uses kernel 3,
// stride 2, padding 1; padding never wins the max, as in PyTorch) and global
// average pooling (the classifier head). Max-pool keeps the index of each
// window's maximum (the first one on ties, as PyTorch), so backward is a
// scatter within one plane; planes are independent, so it is parallel and
// deterministic. T is float, double or bf16 (compared and summed in float,
// each bf16 output rounded once; bf16's max-pool backward gathers per input
// instead of scattering, so that overlapping windows add in float).
#pragma once

#include <cstdint>

#include "core/bf16.h"

namespace dtrain::cpu {

struct PoolGeom {
  int64_t h = 0, w = 0;  // input plane
  int64_t k = 2, stride = 2, pad = 0;

  int64_t ho() const { return (h + 2 * pad - k) / stride + 1; }
  int64_t wo() const { return (w + 2 * pad - k) / stride + 1; }
};

// x (planes, H, W) -> y (planes, Ho, Wo); idx (planes, Ho, Wo): argmax in the plane.
template <class T>
void maxpool_forward(const PoolGeom& g, int64_t planes, const T* x, T* y, int32_t* idx);
// dx (planes, H, W) = scatter of dy (planes, Ho, Wo) through idx.
template <class T>
void maxpool_backward(const PoolGeom& g, int64_t planes, const T* dy, const int32_t* idx, T* dx);

// y (planes) = mean of each plane of x (planes, hw).
template <class T>
void avgpool_forward(int64_t planes, int64_t hw, const T* x, T* y);
// dx (planes, hw) = dy (planes) / hw.
template <class T>
void avgpool_backward(int64_t planes, int64_t hw, const T* dy, T* dx);

}  // namespace dtrain::cpu
