// Layers allocate their buffers in plan() for the largest input they will see
// and hand out views of them in each step; this is the one helper that takes
// such a view for a (possibly smaller) input.
#pragma once

#include "core/tensor.h"

namespace dtrain {

// The first shape.numel() elements of `buffer`, viewed as `shape`.
inline Tensor planned_view(const Tensor& buffer, const Shape& shape) {
  return buffer.flat_range(0, shape.numel()).view(shape);
}

}  // namespace dtrain
