// Rotary position embedding on a fused qkv tensor (elementwise_math.h's
// rope_*): the queries and keys of every head turn in place by their
// positions' angles; the values are untouched. Backward is the inverse turn
// applied to their gradients (a rotation's transpose is its inverse).
#pragma once

#include <cstdint>

#include "core/bf16.h"
#include "kernels/elementwise_math.h"

namespace dtrain::cpu {

// qkv: (b, t, c + 2 c_kv), each row q (c) | k (c_kv) | v (c_kv), c = n_head * d
// with d even and c_kv = n_kv_head * d (n_kv_head < n_head: grouped-query
// attention); row s of each sequence is at position pos0 + s. inverse: turn back.
template <class T>
void rope(T* qkv, int64_t b, int64_t t, int64_t c, int64_t n_head, int64_t n_kv_head, const math::Rope& rope, int64_t pos0,
          bool inverse);

}  // namespace dtrain::cpu
