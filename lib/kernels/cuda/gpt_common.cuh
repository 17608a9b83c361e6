// Device helpers of the memory-bound kernels (.cu files only): grid sizes,
// the f32/bf16 dispatch, and warp/block reductions in a fixed order. The
// reductions are butterflies (xor shuffles) and a fixed tree over warps, so a
// sum has the same bits on every run (and on every lane of the warp).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/bf16.h"
#include "core/device.h"
#include "kernels/cuda/gpt_act.h"

namespace dtrain::cuda::gpt {

inline constexpr int kThreads = 256;

inline cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

// Blocks for a grid-stride loop over n elements (at least 1).
inline unsigned grid_for(int64_t n, int threads = kThreads) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > 8192) b = 8192;
  return static_cast<unsigned>(b);
}

// Calls f(float{}) or f(bf16{}): the element type of the activations.
template <class F>
void dispatch(Act t, F&& f) {
  if (t == Act::f32)
    f(float{});
  else
    f(bf16{});
}

#define DTRAIN_GRID_STRIDE(i, n)                                                       \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

template <class T>
__device__ inline T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ inline float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ inline int64_t warp_min(int64_t v) {
  for (int o = 16; o > 0; o >>= 1) {
    const int64_t u = __shfl_xor_sync(0xffffffffu, v, o);
    v = u < v ? u : v;
  }
  return v;
}

// Block-wide reductions (blockDim.x a multiple of 32, at most 1024); every
// thread of the block gets the result. `sh` holds 32 values of T.
template <class T, class W>
__device__ inline T block_reduce(T v, T* sh, T identity, W warp_op) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_op(v);
  __syncthreads();  // sh may still be read by a previous reduction
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  v = lane < warps ? sh[lane] : identity;
  v = warp_op(v);
  return v;
}
template <class T>
__device__ inline T block_sum(T v, T* sh) {
  return block_reduce(v, sh, T(0), [](T x) { return warp_sum(x); });
}
__device__ inline float block_max(float v, float* sh) {
  return block_reduce(v, sh, -INFINITY, [](float x) { return warp_max(x); });
}
__device__ inline int64_t block_min(int64_t v, int64_t* sh) {
  return block_reduce(v, sh, INT64_MAX, [](int64_t x) { return warp_min(x); });
}

}  // namespace dtrain::cuda::gpt
