// Small elementwise and reduction kernels shared by several layers.
// All are deterministic for a given thread count; reductions over rows
// accumulate in a fixed order.
#pragma once

#include <cstdint>

#include "core/bf16.h"

namespace dtrain::cpu {

// The `bytes` bytes at x set to 0, the threads each clearing one contiguous
// part (a single memset leaves half the memory bandwidth of two cores unused).
void zero_bytes(void* x, int64_t bytes);
// src as (a, b) blocks of `block` bytes -> dst as (b, a): dst[j][i] = src[i][j].
void transpose_blocks(const void* src, int64_t a, int64_t b, size_t block, void* dst);
// y[i, :] = b for every row i of an (n, m) matrix.
template <class T> void broadcast_rows(const T* b, int64_t n, int64_t m, T* y);
// y[i, :] += b for every row i of an (n, m) matrix.
template <class T> void add_rows(const T* b, int64_t n, int64_t m, T* y);
// acc[j] += sum_i x[i, j] over an (n, m) matrix.
template <class T> void sum_rows_acc(const T* x, int64_t n, int64_t m, compute_t<T>* acc);
// y = a + b (n elements).
template <class T> void add(const T* a, const T* b, int64_t n, T* y);
// Sum of squares in double, deterministic (fixed chunking, sequential combine).
template <class T> double sum_squares(const T* x, int64_t n);
// sum over k in order of sum_squares(xs[k], ns[k]), the same bits, but in one
// parallel region for all the arrays (a model's ~150 gradients would
// otherwise start and join ~150 regions, most on a few hundred elements).
template <class T> double sum_squares_many(const T* const* xs, const int64_t* ns, int64_t count);

}  // namespace dtrain::cpu
