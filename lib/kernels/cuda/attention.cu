// Attention kernels (see attention.h). Deliberately simple: one thread per
// element for the head moves, one block per row for the softmax with a fixed
// reduction order (warp shuffles, then the block's warps in order), so the
// results are the same bits on every run.
#include "kernels/cuda/attention.h"

#include <cuda_runtime.h>

#include "core/device.h"

namespace dtrain::cuda {
namespace {

constexpr int kThreads = 256;

__device__ inline float to_f(float x) { return x; }
__device__ inline float to_f(bf16 x) { return static_cast<float>(x); }
template <class T>
__device__ inline T from_f(float x);
template <>
__device__ inline float from_f<float>(float x) { return x; }
template <>
__device__ inline bf16 from_f<bf16>(float x) { return bf16(x); }

// Head-major index e = ((b*nh + h)*T + t)*hs + d  <-  row-major (b, t, (h/group)*hs + d).
template <class T>
__global__ void heads_from_rows_kernel(const T* __restrict__ src, T* __restrict__ dst, int64_t ld, int64_t Tn,
                                       int64_t nh, int64_t hs, int64_t group, int64_t total) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= total) return;
  const int64_t d = e % hs;
  const int64_t t = (e / hs) % Tn;
  const int64_t bh = e / (hs * Tn);
  const int64_t b = bh / nh, h = bh % nh;
  dst[e] = src[(b * Tn + t) * ld + h / group * hs + d];
}

// One thread per row element (b, t, h*hs + d).
template <class T>
__global__ void heads_to_rows_kernel(const T* __restrict__ src, T* __restrict__ dst, int64_t ld, int64_t Tn,
                                     int64_t nh, int64_t hs, int64_t total) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= total) return;
  const int64_t d = e % hs;
  const int64_t h = (e / hs) % nh;
  const int64_t bt = e / (hs * nh);
  const int64_t b = bt / Tn, t = bt % Tn;
  dst[bt * ld + h * hs + d] = src[((b * nh + h) * Tn + t) * hs + d];
}

// Sum (kMax false) or maximum of v over the block; every thread gets it.
template <bool kMax>
__device__ float block_reduce(float v, float* shared) {
  for (int o = 16; o > 0; o >>= 1) {
    const float w = __shfl_xor_sync(0xffffffffu, v, o);
    v = kMax ? fmaxf(v, w) : v + w;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // shared may still be read from a previous reduction
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float r = shared[0];
  for (int i = 1; i < kThreads / 32; ++i) r = kMax ? fmaxf(r, shared[i]) : r + shared[i];
  return r;
}

template <class T>
__global__ void softmax_forward_kernel(const float* __restrict__ s, int64_t Tn, T* __restrict__ p) {
  __shared__ float shared[kThreads / 32];
  const int64_t row = blockIdx.x;
  const int64_t n = row % Tn + 1;  // keys 0..i
  const float* sr = s + row * Tn;
  T* pr = p + row * Tn;
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < n; j += kThreads) mx = fmaxf(mx, sr[j]);
  mx = block_reduce<true>(mx, shared);
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < n; j += kThreads) sum += expf(sr[j] - mx);
  sum = block_reduce<false>(sum, shared);
  const float inv = 1.0f / sum;
  for (int64_t j = threadIdx.x; j < Tn; j += kThreads)
    pr[j] = from_f<T>(j < n ? expf(sr[j] - mx) * inv : 0.0f);
}

template <class T>
__global__ void softmax_backward_kernel(T* __restrict__ p, const float* __restrict__ dp, int64_t Tn) {
  __shared__ float shared[kThreads / 32];
  const int64_t row = blockIdx.x;
  const int64_t n = row % Tn + 1;
  T* pr = p + row * Tn;
  const float* dr = dp + row * Tn;
  float d = 0.0f;
  for (int64_t j = threadIdx.x; j < n; j += kThreads) d += to_f(pr[j]) * dr[j];
  d = block_reduce<false>(d, shared);  // every read of pr above happens before the writes below
  for (int64_t j = threadIdx.x; j < Tn; j += kThreads)
    pr[j] = from_f<T>(j < n ? to_f(pr[j]) * (dr[j] - d) : 0.0f);
}

unsigned blocks_for(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

}  // namespace

template <class T>
void attn_heads_from_rows(const T* src, int64_t ld, int64_t B, int64_t Tn, int64_t nh, int64_t hs, int64_t group,
                          T* dst, void* stream) {
  const int64_t total = B * Tn * nh * hs;
  if (total == 0) return;
  heads_from_rows_kernel<T><<<blocks_for(total), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      src, dst, ld, Tn, nh, hs, group, total);
  gpu::check_launch("attention: heads from rows");
}

template <class T>
void attn_heads_to_rows(const T* src, int64_t B, int64_t Tn, int64_t nh, int64_t hs, T* dst, int64_t ld,
                        void* stream) {
  const int64_t total = B * Tn * nh * hs;
  if (total == 0) return;
  heads_to_rows_kernel<T><<<blocks_for(total), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      src, dst, ld, Tn, nh, hs, total);
  gpu::check_launch("attention: heads to rows");
}

template <class T>
void attn_softmax_forward(const float* s, int64_t rows, int64_t Tn, T* p, void* stream) {
  if (rows == 0) return;
  softmax_forward_kernel<T><<<static_cast<unsigned>(rows), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      s, Tn, p);
  gpu::check_launch("attention: softmax");
}

template <class T>
void attn_softmax_backward(T* p, const float* dp, int64_t rows, int64_t Tn, void* stream) {
  if (rows == 0) return;
  softmax_backward_kernel<T><<<static_cast<unsigned>(rows), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      p, dp, Tn);
  gpu::check_launch("attention: softmax backward");
}

#define DTRAIN_INSTANTIATE(T)                                                                              \
  template void attn_heads_from_rows<T>(const T*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, T*,   \
                                        void*);                                                           \
  template void attn_heads_to_rows<T>(const T*, int64_t, int64_t, int64_t, int64_t, T*, int64_t, void*);      \
  template void attn_softmax_forward<T>(const float*, int64_t, int64_t, T*, void*);                        \
  template void attn_softmax_backward<T>(T*, const float*, int64_t, int64_t, void*);
DTRAIN_INSTANTIATE(float)
DTRAIN_INSTANTIATE(bf16)
#undef DTRAIN_INSTANTIATE

}  // namespace dtrain::cuda
