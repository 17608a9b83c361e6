// Embedding lookups and their deterministic backward. The backward gives each
// vocabulary row to the block of the row's first token: that block walks the
// later tokens in order and adds each matching token's gradient row, so every
// dwte element gets the CPU's additions in the CPU's order (no atomics, the
// same bits as cpu::embedding_shard_backward). dwpe: one thread per (t, j)
// adding the batch in order, as the CPU.
#include "kernels/cuda/embedding.h"

#include "kernels/cuda/gpt_common.cuh"

namespace dtrain::cuda::gpt {

namespace {

template <class T>
__global__ void embedding_forward_k(const int32_t* tok, const T* wte, const T* wpe, int64_t T_,
                                    int64_t C, int64_t n, T* y) {
  DTRAIN_GRID_STRIDE(i, n) {
    const int64_t r = i / C, j = i - r * C;
    y[i] = T(float(wte[static_cast<int64_t>(tok[r]) * C + j]) + float(wpe[(r % T_) * C + j]));
  }
}

template <class T>
__global__ void token_shard_k(const int32_t* tok, const T* wte, int64_t v0, int64_t vn, int64_t C,
                              int64_t n, T* y) {
  DTRAIN_GRID_STRIDE(i, n) {
    const int64_t r = i / C, j = i - r * C;
    const int64_t v = static_cast<int64_t>(tok[r]) - v0;
    y[i] = (v < 0 || v >= vn) ? T(0.0f) : wte[v * C + j];
  }
}

template <class T>
__global__ void position_add_k(const T* wpe, int64_t T_, int64_t C, int64_t n, T* y) {
  DTRAIN_GRID_STRIDE(i, n) {
    const int64_t r = i / C, j = i - r * C;
    y[i] = T(float(y[i]) + float(wpe[(r % T_) * C + j]));
  }
}

// Block (blockIdx.x = token position r, blockIdx.y = column tile): returns
// unless r is the first position holding its id; else adds, for its column,
// dy of every position holding the id, in position order. Positions are read
// a tile at a time (one id per thread); a tile without the id is skipped.
template <class T>
__global__ void wte_backward_k(const T* dy, const int32_t* tok, int64_t rows, int64_t C, int64_t v0,
                               int64_t vn, float* dwte) {
  __shared__ uint8_t hit[kThreads];
  const int64_t r = blockIdx.x;
  const int32_t id = tok[r];
  const int64_t v = static_cast<int64_t>(id) - v0;
  if (v < 0 || v >= vn) return;  // another rank's row (uniform over the block)
  for (int64_t base = 0; base < r; base += kThreads) {
    const int64_t q = base + threadIdx.x;
    if (__syncthreads_or(q < r && tok[q] == id)) return;  // an earlier position owns the row
  }
  const int64_t j = static_cast<int64_t>(blockIdx.y) * kThreads + threadIdx.x;
  float* d = dwte + v * C + j;
  float acc = j < C ? *d : 0.0f;
  for (int64_t base = r; base < rows; base += kThreads) {
    const int64_t q = base + threadIdx.x;
    const bool h = q < rows && tok[q] == id;
    __syncthreads();  // every thread is done with the previous tile's flags
    hit[threadIdx.x] = h ? 1 : 0;
    if (!__syncthreads_or(h)) continue;  // (also publishes the flags)
    if (j < C)
      for (int t = 0; t < kThreads; ++t)
        if (hit[t]) acc += float(dy[(base + t) * C + j]);
  }
  if (j < C) *d = acc;
}

template <class T>
__global__ void wpe_backward_k(const T* dy, int64_t B, int64_t T_, int64_t C, float* dwpe) {
  DTRAIN_GRID_STRIDE(i, T_ * C) {
    float acc = dwpe[i];
    for (int64_t b = 0; b < B; ++b) acc += float(dy[b * T_ * C + i]);
    dwpe[i] = acc;
  }
}

}  // namespace

void embedding_forward(Act t, const int32_t* tok, const void* wte, const void* wpe, int64_t B,
                       int64_t T, int64_t C, void* y, void* stream) {
  const int64_t n = B * T * C;
  if (n <= 0) return;
  dispatch(t, [&](auto tag) {
    using F = decltype(tag);
    embedding_forward_k<F><<<grid_for(n), kThreads, 0, as_stream(stream)>>>(
        tok, static_cast<const F*>(wte), static_cast<const F*>(wpe), T, C, n, static_cast<F*>(y));
  });
  gpu::check_launch("embedding");
}

void token_embedding_shard_forward(Act t, const int32_t* tok, const void* wte, int64_t v0,
                                   int64_t vn, int64_t n, int64_t C, void* y, void* stream) {
  const int64_t total = n * C;
  if (total <= 0) return;
  dispatch(t, [&](auto tag) {
    using F = decltype(tag);
    token_shard_k<F><<<grid_for(total), kThreads, 0, as_stream(stream)>>>(
        tok, static_cast<const F*>(wte), v0, vn, C, total, static_cast<F*>(y));
  });
  gpu::check_launch("token embedding (shard)");
}

void position_embedding_add(Act t, const void* wpe, int64_t B, int64_t T, int64_t C, void* y,
                            void* stream) {
  const int64_t n = B * T * C;
  if (n <= 0) return;
  dispatch(t, [&](auto tag) {
    using F = decltype(tag);
    position_add_k<F><<<grid_for(n), kThreads, 0, as_stream(stream)>>>(
        static_cast<const F*>(wpe), T, C, n, static_cast<F*>(y));
  });
  gpu::check_launch("position embedding");
}

void embedding_backward(Act t, const void* dy, const int32_t* tok, int64_t B, int64_t T, int64_t C,
                        int64_t v0, int64_t vn, float* dwte, float* dwpe, void* stream) {
  const int64_t rows = B * T;
  if (rows <= 0 || C <= 0) return;
  const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>((C + kThreads - 1) / kThreads));
  dispatch(t, [&](auto tag) {
    using F = decltype(tag);
    wte_backward_k<F><<<grid, kThreads, 0, as_stream(stream)>>>(static_cast<const F*>(dy), tok, rows,
                                                               C, v0, vn, dwte);
    gpu::check_launch("embedding_backward (wte)");
    if (dwpe) {
      wpe_backward_k<F><<<grid_for(T * C), kThreads, 0, as_stream(stream)>>>(
          static_cast<const F*>(dy), B, T, C, dwpe);
      gpu::check_launch("embedding_backward (wpe)");
    }
  });
}

}  // namespace dtrain::cuda::gpt
