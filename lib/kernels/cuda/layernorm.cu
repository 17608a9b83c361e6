// LayerNorm and RMSNorm forward and backward: one warp per row for the row
// statistics (butterfly sums; LayerNorm's variance in a second pass over the
// row, after its mean), and the weight/bias gradients as
// per-chunk column partials (one thread per column walking the chunk's rows
// in order) added in chunk order: no atomics, the same bits on every run.
#include "kernels/cuda/layernorm.h"

#include "kernels/cuda/gpt_common.cuh"

namespace dtrain::cuda::gpt {

namespace {

constexpr int kRowsPerBlock = kThreads / 32;  // one warp per row

template <class T>
__global__ void layernorm_forward_k(const T* x, const T* w, const T* b, int64_t n, int64_t c,
                                    float eps, T* y, float* mean, float* rstd) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= n) return;  // the whole warp
  const T* xr = x + row * c;  // (C)
  T* yr = y + row * c;
  float s = 0.0f;
  for (int64_t j = lane; j < c; j += 32) s += float(xr[j]);
  const float m = warp_sum(s) / static_cast<float>(c);
  float v = 0.0f;
  for (int64_t j = lane; j < c; j += 32) {
    const float d = float(xr[j]) - m;
    v += d * d;
  }
  const float r = 1.0f / sqrtf(warp_sum(v) / static_cast<float>(c) + eps);
  for (int64_t j = lane; j < c; j += 32) {
    const float o = (float(xr[j]) - m) * r * float(w[j]);
    yr[j] = T(b ? o + float(b[j]) : o);
  }
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = r;
  }
}

// Chunk k (blockIdx.y) of the rows, columns blockIdx.x * kThreads + tid:
// scratch[k][0][j] = sum of dy * xhat, scratch[k][1][j] = sum of dy.
template <class T>
__global__ void layernorm_partials_k(const T* dy, const T* x, const float* mean, const float* rstd,
                                     int64_t n, int64_t c, int64_t chunks, float* scratch) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (j >= c) return;
  const int64_t k = blockIdx.y, i0 = k * n / chunks, i1 = (k + 1) * n / chunks;
  float pw = 0.0f, pb = 0.0f;
  for (int64_t i = i0; i < i1; ++i) {
    const float g = float(dy[i * c + j]);
    pw += g * ((float(x[i * c + j]) - mean[i]) * rstd[i]);
    pb += g;
  }
  scratch[k * 2 * c + j] = pw;
  scratch[k * 2 * c + c + j] = pb;
}

// dx = dres + r * (g*w - mean(g*w) - xhat * mean(g*w*xhat)), one warp per row.
template <class T>
__global__ void layernorm_dx_k(const T* dy, const T* x, const T* w, const float* mean,
                               const float* rstd, const T* dres, int64_t n, int64_t c, T* dx) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= n) return;
  const T* xr = x + row * c;
  const T* g = dy + row * c;
  const float m = mean[row], r = rstd[row];
  float s1 = 0.0f, s2 = 0.0f;
  for (int64_t j = lane; j < c; j += 32) {
    const float gw = float(g[j]) * float(w[j]);
    s1 += gw;
    s2 += gw * ((float(xr[j]) - m) * r);
  }
  s1 = warp_sum(s1) / static_cast<float>(c);
  s2 = warp_sum(s2) / static_cast<float>(c);
  T* dxr = dx + row * c;
  const T* dr = dres ? dres + row * c : nullptr;
  for (int64_t j = lane; j < c; j += 32) {
    const float xhat = (float(xr[j]) - m) * r;
    const float d = r * (float(g[j]) * float(w[j]) - s1 - xhat * s2);
    dxr[j] = T(dr ? float(dr[j]) + d : d);
  }
}

__global__ void layernorm_finish_k(const float* scratch, int64_t c, int64_t chunks, float* dw,
                                   float* db) {
  DTRAIN_GRID_STRIDE(j, c) {
    float sw = 0.0f, sb = 0.0f;
    for (int64_t k = 0; k < chunks; ++k) {
      sw += scratch[k * 2 * c + j];
      sb += scratch[k * 2 * c + c + j];
    }
    dw[j] += sw;
    if (db) db[j] += sb;
  }
}

template <class T>
__global__ void rmsnorm_forward_k(const T* x, const T* w, int64_t n, int64_t c, float eps, T* y,
                                  float* rstd) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= n) return;  // the whole warp
  const T* xr = x + row * c;  // (C)
  T* yr = y + row * c;
  float v = 0.0f;
  for (int64_t j = lane; j < c; j += 32) {
    const float a = xr[j];
    v += a * a;
  }
  const float r = 1.0f / sqrtf(warp_sum(v) / static_cast<float>(c) + eps);
  for (int64_t j = lane; j < c; j += 32) yr[j] = T(float(xr[j]) * r * float(w[j]));
  if (lane == 0) rstd[row] = r;
}

// Chunk k (blockIdx.y) of the rows, columns blockIdx.x * kThreads + tid:
// scratch[k][j] = sum of dy * xhat.
template <class T>
__global__ void rmsnorm_partials_k(const T* dy, const T* x, const float* rstd, int64_t n, int64_t c,
                                   int64_t chunks, float* scratch) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (j >= c) return;
  const int64_t k = blockIdx.y, i0 = k * n / chunks, i1 = (k + 1) * n / chunks;
  float pw = 0.0f;
  for (int64_t i = i0; i < i1; ++i) pw += float(dy[i * c + j]) * (float(x[i * c + j]) * rstd[i]);
  scratch[k * c + j] = pw;
}

// dx = dres + r * (g*w - xhat * mean(g*w*xhat)), one warp per row.
template <class T>
__global__ void rmsnorm_dx_k(const T* dy, const T* x, const T* w, const float* rstd, const T* dres,
                             int64_t n, int64_t c, T* dx) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= n) return;
  const T* xr = x + row * c;
  const T* g = dy + row * c;
  const float r = rstd[row];
  float s2 = 0.0f;
  for (int64_t j = lane; j < c; j += 32) s2 += float(g[j]) * float(w[j]) * (float(xr[j]) * r);
  s2 = warp_sum(s2) / static_cast<float>(c);
  T* dxr = dx + row * c;
  const T* dr = dres ? dres + row * c : nullptr;
  for (int64_t j = lane; j < c; j += 32) {
    const float xhat = float(xr[j]) * r;
    const float d = r * (float(g[j]) * float(w[j]) - xhat * s2);
    dxr[j] = T(dr ? float(dr[j]) + d : d);
  }
}

__global__ void rmsnorm_finish_k(const float* scratch, int64_t c, int64_t chunks, float* dw) {
  DTRAIN_GRID_STRIDE(j, c) {
    float sw = 0.0f;
    for (int64_t k = 0; k < chunks; ++k) sw += scratch[k * c + j];
    dw[j] += sw;
  }
}

}  // namespace

void layernorm_forward(Act t, const void* x, const void* w, const void* b, int64_t n, int64_t c,
                       float eps, void* y, float* mean, float* rstd, void* stream) {
  if (n <= 0) return;
  const unsigned grid = static_cast<unsigned>((n + kRowsPerBlock - 1) / kRowsPerBlock);
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    layernorm_forward_k<T><<<grid, kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(b), n, c, eps,
        static_cast<T*>(y), mean, rstd);
  });
  gpu::check_launch("layernorm");
}

void layernorm_backward(Act t, const void* dy, const void* x, const void* w, const float* mean,
                        const float* rstd, const void* dres, int64_t n, int64_t c, void* dx,
                        float* dw, float* db, float* scratch, int64_t chunks, void* stream) {
  if (n <= 0) return;
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    // The partials read dy before the dx pass may overwrite it (dx == dy).
    const dim3 pgrid(static_cast<unsigned>((c + kThreads - 1) / kThreads), static_cast<unsigned>(chunks));
    layernorm_partials_k<T><<<pgrid, kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(dy), static_cast<const T*>(x), mean, rstd, n, c, chunks, scratch);
    gpu::check_launch("layernorm_backward (partials)");
    const unsigned grid = static_cast<unsigned>((n + kRowsPerBlock - 1) / kRowsPerBlock);
    layernorm_dx_k<T><<<grid, kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<const T*>(w), mean, rstd,
        static_cast<const T*>(dres), n, c, static_cast<T*>(dx));
    gpu::check_launch("layernorm_backward (dx)");
  });
  layernorm_finish_k<<<grid_for(c), kThreads, 0, as_stream(stream)>>>(scratch, c, chunks, dw, db);
  gpu::check_launch("layernorm_backward (dw, db)");
}

void rmsnorm_forward(Act t, const void* x, const void* w, int64_t n, int64_t c, float eps, void* y,
                     float* rstd, void* stream) {
  if (n <= 0) return;
  const unsigned grid = static_cast<unsigned>((n + kRowsPerBlock - 1) / kRowsPerBlock);
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    rmsnorm_forward_k<T><<<grid, kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(x), static_cast<const T*>(w), n, c, eps, static_cast<T*>(y), rstd);
  });
  gpu::check_launch("rmsnorm");
}

void rmsnorm_backward(Act t, const void* dy, const void* x, const void* w, const float* rstd,
                      const void* dres, int64_t n, int64_t c, void* dx, float* dw, float* scratch,
                      int64_t chunks, void* stream) {
  if (n <= 0) return;
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    // The partials read dy before the dx pass may overwrite it (dx == dy).
    const dim3 pgrid(static_cast<unsigned>((c + kThreads - 1) / kThreads), static_cast<unsigned>(chunks));
    rmsnorm_partials_k<T><<<pgrid, kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(dy), static_cast<const T*>(x), rstd, n, c, chunks, scratch);
    gpu::check_launch("rmsnorm_backward (partials)");
    const unsigned grid = static_cast<unsigned>((n + kRowsPerBlock - 1) / kRowsPerBlock);
    rmsnorm_dx_k<T><<<grid, kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<const T*>(w), rstd,
        static_cast<const T*>(dres), n, c, static_cast<T*>(dx));
    gpu::check_launch("rmsnorm_backward (dx)");
  });
  rmsnorm_finish_k<<<grid_for(c), kThreads, 0, as_stream(stream)>>>(scratch, c, chunks, dw);
  gpu::check_launch("rmsnorm_backward (dw)");
}

}  // namespace dtrain::cuda::gpt
