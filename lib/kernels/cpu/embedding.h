// Token + position embedding lookup (GPT-2's wte[tok] + wpe[t]) and its
// scatter-add backward. The backward owns columns, not tokens: each thread
// adds every token's row into its own column block in token order, so
// repeated tokens accumulate in a fixed order without atomics and the result
// does not depend on the thread count.
//
// The vocabulary-parallel variants (tensor parallelism) see only the rows
// [v0, v0 + vn) of wte: a token outside them looks up zeros, so the partial
// embeddings of the ranks sum to the full lookup, and the backward scatters
// only into the rows held.
#pragma once

#include <cstdint>

#include "core/bf16.h"

namespace dtrain::cpu {

// tok: (B, T) ids in [0, V); wte: (V, C); wpe: (>= T, C); y: (B, T, C).
template <class F>
void embedding_forward(const int32_t* tok, const F* wte, const F* wpe, int64_t B, int64_t T,
                       int64_t C, F* y);

// dy: (B, T, C); dwte (V, C) and dwpe (>= T, C) are accumulated (+=).
template <class F>
void embedding_backward(const F* dy, const int32_t* tok, int64_t B, int64_t T, int64_t C,
                        compute_t<F>* dwte, compute_t<F>* dwpe);

// tok: (n) ids; wte: (vn, C), rows [v0, v0 + vn) of the full table; y: (n, C),
// row r = wte[tok[r] - v0] for ids in the range, zeros for the others.
template <class F>
void token_embedding_shard_forward(const int32_t* tok, const F* wte, int64_t v0, int64_t vn,
                                   int64_t n, int64_t C, F* y);

// y (B, T, C) += wpe[t] at every position t; wpe: (>= T, C).
template <class F>
void position_embedding_add(const F* wpe, int64_t B, int64_t T, int64_t C, F* y);

// As embedding_backward for the rows [v0, v0 + vn) of wte (dwte: (vn, C));
// tokens outside the range add nothing to dwte. dwpe (null: no learned positions) gets every position.
template <class F>
void embedding_shard_backward(const F* dy, const int32_t* tok, int64_t B, int64_t T, int64_t C,
                              int64_t v0, int64_t vn, compute_t<F>* dwte, compute_t<F>* dwpe);

}  // namespace dtrain::cpu
