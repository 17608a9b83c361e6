// Token + position embedding lookup (GPT-2's wte[tok] + wpe[t]) and its
// scatter-add backward. The backward owns columns, not tokens: each thread
// adds every token's row into its own column block in token order, so
// repeated tokens accumulate in a fixed order without atomics and the result
// does not depend on the thread count.
#pragma once

#include <cstdint>

namespace dtrain::cpu {

// tok: (B, T) ids in [0, V); wte: (V, C); wpe: (>= T, C); y: (B, T, C).
template <class F>
void embedding_forward(const int32_t* tok, const F* wte, const F* wpe, int64_t B, int64_t T,
                       int64_t C, F* y);

// dy: (B, T, C); dwte (V, C) and dwpe (>= T, C) are accumulated (+=).
template <class F>
void embedding_backward(const F* dy, const int32_t* tok, int64_t B, int64_t T, int64_t C, F* dwte,
                        F* dwpe);

}  // namespace dtrain::cpu
