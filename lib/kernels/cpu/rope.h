// Rotary position embedding on a fused qkv tensor (elementwise_math.h's
// rope_*): the queries and keys of every head turn in place by their
// positions' angles; the values are untouched. Backward is the inverse turn
// applied to their gradients (a rotation's transpose is its inverse).
#pragma once

#include <cstdint>

#include "core/bf16.h"

namespace dtrain::cpu {

// qkv: (b, t, 3c), each row q (c) | k (c) | v (c), c = n_head * d with d even;
// row s of each sequence is at position pos0 + s. inverse: turn back.
template <class T>
void rope(T* qkv, int64_t b, int64_t t, int64_t c, int64_t n_head, double theta, int64_t pos0, bool inverse);

}  // namespace dtrain::cpu
