// The attention's own CUDA kernels (materialised scores): moving heads between
// the row layout of the projections and a head-major layout the batched
// cuBLASLt products read, and the causal softmax forward and backward. The
// products themselves are cuBLASLt's (ops/cuda/attention.cpp). Launchers take
// raw device pointers and a cudaStream_t as void*; they throw RuntimeError
// when a launch fails. Element types: float and bf16 (fp32 math for both).
#pragma once

#include <cstdint>

#include "core/bf16.h"

namespace dtrain::cuda {

// dst (B*nh, T, hs), head-major: head h = src (B, T, *) columns
// [g*hs, (g+1)*hs), g = h / group, of rows with stride ld (C for y/dy; the
// qkv row for its queries, keys or values, src pre-offset). group 1: each head
// its own columns; group nh/nkv: a key or value head copied for each query
// head of its group (grouped-query attention), so the batched products run
// over B*nh heads either way.
template <class T>
void attn_heads_from_rows(const T* src, int64_t ld, int64_t B, int64_t Tn, int64_t nh, int64_t hs, int64_t group,
                          T* dst, void* stream);
// The reverse, a copy: dst (B, T, *) rows with stride ld, columns [h*hs, (h+1)*hs) = src
// (B*nh, T, hs)'s head h. (A grouped-query key/value gradient arrives already summed over its
// group: the backward's products run per key/value head.)
template <class T>
void attn_heads_to_rows(const T* src, int64_t B, int64_t Tn, int64_t nh, int64_t hs, T* dst, int64_t ld,
                        void* stream);

// rows of length Tn, `rows` of them (a multiple of Tn: whole (Tn, Tn) matrices);
// row r is query i = r % Tn. p[r, j] = softmax over j <= i of s[r, :] (the
// scores, already scaled), 0 for j > i. Softmax in fp32 with max subtraction.
template <class T>
void attn_softmax_forward(const float* s, int64_t rows, int64_t Tn, T* p, void* stream);
// In place over p: p[r, j] = p * (dp - sum_{j' <= i} p * dp) for j <= i, 0 beyond.
template <class T>
void attn_softmax_backward(T* p, const float* dp, int64_t rows, int64_t Tn, void* stream);

}  // namespace dtrain::cuda
