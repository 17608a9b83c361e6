// Deterministic reductions: column sums for bias gradients and the
// multi-tensor sum of squares for the gradient norm. Fixed-order partials, no
// atomics (see reduce.h).
#include "kernels/cuda/reduce.h"

#include "kernels/cuda/gpt_common.cuh"

namespace dtrain::cuda::gpt {

namespace {

// Column sums: a block owns 32 columns; its 32 row groups each sum the rows
// i = g, g + 32, ... in order, then the 32 partials are added in group order.
constexpr int kColTile = 32, kRowGroups = 32;

template <class T>
__global__ void sum_rows_acc_k(const T* x, int64_t n, int64_t m, float* acc) {
  __shared__ float part[kRowGroups][kColTile];
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kColTile + threadIdx.x;
  float s = 0.0f;
  if (j < m)
    for (int64_t i = threadIdx.y; i < n; i += kRowGroups) s += float(x[i * m + j]);
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && j < m) {
    float t = part[0][threadIdx.x];
    for (int g = 1; g < kRowGroups; ++g) t += part[g][threadIdx.x];
    acc[j] += t;
  }
}

// Sum of squares: each tensor in kChunks fixed chunks (as the CPU's
// sum_squares_many), one block per chunk.
constexpr int kChunks = 64, kMaxTensors = 64;

struct SumSqBatch {
  const void* x[kMaxTensors];
  int64_t n[kMaxTensors];
};

template <class T>
__global__ void sum_squares_k(const __grid_constant__ SumSqBatch b, double* partials) {
  __shared__ double sh[32];
  const T* x = static_cast<const T*>(b.x[blockIdx.y]);
  const int64_t n = b.n[blockIdx.y], len = (n + kChunks - 1) / kChunks;
  const int64_t lo = min(n, static_cast<int64_t>(blockIdx.x) * len), hi = min(n, lo + len);
  double s = 0;
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
    const double v = static_cast<double>(float(x[i]));
    s += v * v;
  }
  s = block_sum(s, sh);
  if (threadIdx.x == 0) partials[static_cast<int64_t>(blockIdx.y) * kChunks + blockIdx.x] = s;
}

// One thread: per tensor the chunks in order, then the tensors in order.
__global__ void sum_squares_finish_k(const double* partials, int64_t count, double* out) {
  double sum = 0;
  for (int64_t k = 0; k < count; ++k) {
    double total = 0;
    for (int c = 0; c < kChunks; ++c) total += partials[k * kChunks + c];
    sum += total;
  }
  *out = sum;
}

}  // namespace

void sum_rows_acc(Act t, const void* x, int64_t n, int64_t m, float* acc, void* stream) {
  if (m <= 0) return;
  const dim3 block(kColTile, kRowGroups);
  const unsigned grid = static_cast<unsigned>((m + kColTile - 1) / kColTile);
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    sum_rows_acc_k<T><<<grid, block, 0, as_stream(stream)>>>(static_cast<const T*>(x), n, m, acc);
  });
  gpu::check_launch("sum_rows_acc");
}

size_t sum_squares_scratch(int64_t count) { return static_cast<size_t>(count) * kChunks + 1; }

double sum_squares(Act t, const void* const* xs, const int64_t* ns, int64_t count, double* scratch,
                   void* stream) {
  if (count <= 0) return 0.0;
  for (int64_t k0 = 0; k0 < count; k0 += kMaxTensors) {
    const int64_t kn = count - k0 < kMaxTensors ? count - k0 : kMaxTensors;
    SumSqBatch b{};
    for (int64_t k = 0; k < kn; ++k) {
      b.x[k] = xs[k0 + k];
      b.n[k] = ns[k0 + k];
    }
    const dim3 grid(kChunks, static_cast<unsigned>(kn));
    dispatch(t, [&](auto tag) {
      using T = decltype(tag);
      sum_squares_k<T><<<grid, kThreads, 0, as_stream(stream)>>>(b, scratch + k0 * kChunks);
    });
    gpu::check_launch("sum_squares");
  }
  double* out = scratch + count * kChunks;
  sum_squares_finish_k<<<1, 1, 0, as_stream(stream)>>>(scratch, count, out);
  gpu::check_launch("sum_squares (combine)");
  double host = 0;
  gpu::memcpy(&host, out, sizeof host, stream);
  gpu::stream_sync(stream);
  return host;
}

}  // namespace dtrain::cuda::gpt
