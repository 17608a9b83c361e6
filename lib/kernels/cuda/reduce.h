// Launchers of the deterministic reductions (reduce.cu): column sums (bias
// gradients) and the multi-tensor sum of squares (gradient norm). No atomics:
// each partial is summed in a fixed order and the partials are combined in a
// fixed order, so results have the same bits on every run.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/gpt_act.h"

namespace dtrain::cuda::gpt {

// acc (m) += column sums of x (n, m), fp32.
void sum_rows_acc(Act t, const void* x, int64_t n, int64_t m, float* acc, void* stream);

// Doubles of device scratch sum_squares needs for `count` tensors.
size_t sum_squares_scratch(int64_t count);
// Sum over tensors k (in order) of the sum of squares of xs[k] (ns[k]
// elements), in double: fixed chunks per tensor, each a fixed-tree block sum,
// combined in order. scratch: sum_squares_scratch(count) doubles on the
// device. Synchronises the stream (one 8-byte device-to-host copy).
double sum_squares(Act t, const void* const* xs, const int64_t* ns, int64_t count, double* scratch,
                   void* stream);

}  // namespace dtrain::cuda::gpt
