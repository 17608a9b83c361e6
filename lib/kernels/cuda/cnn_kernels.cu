// The CNN's own CUDA kernels: batch norm (one block per channel: the
// statistics pass and the normalising pass in one kernel, moments in double
// as on the CPU), pooling, ReLU, and the convolution's bias helpers. Simple,
// clearly indexed kernels that mirror kernels/cpu line for line; every
// reduction is a fixed-order tree in shared memory, never an atomic, so
// results are the same bits run to run.
#include "kernels/cuda/cnn_kernels.h"

#include <cuda_runtime.h>

#include <cmath>

#include "core/device.h"

namespace dtrain::cuda {
namespace {

using cpu::BatchNormArgs;
using cpu::PoolGeom;

// Threads of every block. The per-channel reductions depend on it for their
// order, so it is a constant, not a tuning knob chosen at run time.
constexpr int kThreads = 256;
// Elementwise kernels loop over the grid; more blocks than this add nothing.
constexpr int64_t kMaxBlocks = 65536;

template <class T>
__device__ __forceinline__ float f32(T v) {
  return static_cast<float>(v);
}

int elementwise_blocks(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<int>(b < kMaxBlocks ? b : kMaxBlocks);
}

cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

#define DTRAIN_GRID_LOOP(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

// The sums of a and b over the block (blockDim.x == kThreads), in a fixed
// tree order; every thread gets them.
__device__ void block_sum2(double& a, double& b) {
  __shared__ double sa[kThreads], sb[kThreads];
  const int t = threadIdx.x;
  sa[t] = a;
  sb[t] = b;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (t < s) {
      sa[t] += sa[t + s];
      sb[t] += sb[t + s];
    }
    __syncthreads();
  }
  a = sa[0];
  b = sb[0];
  __syncthreads();  // the arrays may be reused after return
}

// ---------------------------------------------------------------- batch norm

// Block ci: channel ci. Statistics as cpu::batchnorm_forward_train: sums of
// (x - x0), x0 the channel's first value, so that the variance does not cancel.
template <class T>
__global__ void bn_train_kernel(BatchNormArgs a, const T* x, const T* w, const T* b, const T* res, T* y,
                                float* mean, float* rstd, float* running_mean, float* running_var) {
  const int64_t ci = blockIdx.x, C = a.c, hw = a.hw, total = a.n * hw;
  const float x0 = f32(x[ci * hw]);
  double s1 = 0, s2 = 0;
  for (int64_t i = threadIdx.x; i < total; i += kThreads) {
    const int64_t img = i / hw, p = i - img * hw;
    const float d = f32(x[(img * C + ci) * hw + p]) - x0;
    s1 += d;
    s2 += static_cast<double>(d) * d;
  }
  block_sum2(s1, s2);
  const double count = static_cast<double>(total);
  const double dm = s1 / count;
  const double m = static_cast<double>(x0) + dm;
  const double var = fmax(0.0, s2 / count - dm * dm);
  const double r = 1.0 / sqrt(var + a.eps);
  if (threadIdx.x == 0) {
    mean[ci] = static_cast<float>(m);
    rstd[ci] = static_cast<float>(r);
    running_mean[ci] = static_cast<float>((1 - a.momentum) * running_mean[ci] + a.momentum * m);
    running_var[ci] =
        static_cast<float>((1 - a.momentum) * running_var[ci] + a.momentum * var * count / (count - 1));
  }
  const double wd = f32(w[ci]);
  const float scale = static_cast<float>(wd * r);
  const float shift = static_cast<float>(static_cast<double>(f32(b[ci])) - m * wd * r);
  for (int64_t i = threadIdx.x; i < total; i += kThreads) {
    const int64_t img = i / hw, p = i - img * hw, off = (img * C + ci) * hw + p;
    float v = f32(x[off]) * scale + shift;
    if (res) v += f32(res[off]);
    if (a.relu) v = v > 0.f ? v : 0.f;
    y[off] = T(v);
  }
}

__global__ void bn_eval_stats_kernel(int64_t c, double eps, const float* running_mean,
                                     const float* running_var, float* mean, float* rstd) {
  DTRAIN_GRID_LOOP(ci, c) {
    mean[ci] = running_mean[ci];
    rstd[ci] = static_cast<float>(1.0 / sqrt(static_cast<double>(running_var[ci]) + eps));
  }
}

template <class T>
__global__ void bn_eval_kernel(BatchNormArgs a, const T* x, const T* w, const T* b, const T* res,
                               const float* mean, const float* rstd, T* y) {
  const int64_t total = a.n * a.c * a.hw;
  DTRAIN_GRID_LOOP(i, total) {
    const int64_t ci = (i / a.hw) % a.c;
    const float scale = f32(w[ci]) * rstd[ci];
    const float shift = f32(b[ci]) - mean[ci] * scale;
    float v = f32(x[i]) * scale + shift;
    if (res) v += f32(res[i]);
    if (a.relu) v = v > 0.f ? v : 0.f;
    y[i] = T(v);
  }
}

// Block ci: channel ci, as cpu::batchnorm_backward's backward_channel. Pass 2
// recomputes the masked gradient from dy and y rather than keeping it; each
// element is read and written by the same thread in both passes, so dx and
// dz may alias dy.
template <class T>
__global__ void bn_backward_kernel(BatchNormArgs a, bool batch_stats, const T* dy, const T* y, const T* x,
                                   const T* w, const float* mean, const float* rstd, T* dx, T* dz, float* dw,
                                   float* db) {
  const int64_t ci = blockIdx.x, C = a.c, hw = a.hw, total = a.n * hw;
  const float m = mean[ci];
  double s1 = 0, s2 = 0;
  for (int64_t i = threadIdx.x; i < total; i += kThreads) {
    const int64_t img = i / hw, p = i - img * hw, off = (img * C + ci) * hw + p;
    float g = f32(dy[off]);
    if (a.relu) g = f32(y[off]) > 0.f ? g : 0.f;
    if (dz) dz[off] = T(g);
    s1 += g;
    s2 += static_cast<double>(g) * (f32(x[off]) - m);
  }
  block_sum2(s1, s2);  // also orders every pass-1 read before any pass-2 write
  const double count = static_cast<double>(total);
  const double r = static_cast<double>(rstd[ci]);
  if (threadIdx.x == 0) {
    dw[ci] += static_cast<float>(s2 * r);
    db[ci] += static_cast<float>(s1);
  }
  const float k = static_cast<float>(f32(w[ci]) * r);
  const float c1 = batch_stats ? static_cast<float>(s1 / count) : 0.f;
  const float c2 = batch_stats ? static_cast<float>(r * r * s2 / count) : 0.f;
  for (int64_t i = threadIdx.x; i < total; i += kThreads) {
    const int64_t img = i / hw, p = i - img * hw, off = (img * C + ci) * hw + p;
    float g = f32(dz ? dz[off] : dy[off]);
    if (a.relu) g = f32(y[off]) > 0.f ? g : 0.f;
    dx[off] = T(k * (g - c1 - (f32(x[off]) - m) * c2));
  }
}

// ---------------------------------------------------------------- pooling

// One thread per output; the window is scanned in the CPU's order, so ties
// go to the first maximum and NaN propagates.
template <class T>
__global__ void maxpool_forward_kernel(PoolGeom g, int64_t Ho, int64_t Wo, int64_t planes, const T* x, T* y,
                                       int32_t* idx) {
  const int64_t total = planes * Ho * Wo;
  DTRAIN_GRID_LOOP(o, total) {
    const int64_t ow = o % Wo, t = o / Wo, oh = t % Ho, pl = t / Ho;
    const T* xp = x + pl * g.h * g.w;
    const int64_t h0 = oh * g.stride - g.pad, w0 = ow * g.stride - g.pad;
    const int64_t hs = h0 > 0 ? h0 : 0, ws = w0 > 0 ? w0 : 0;
    const int64_t he = h0 + g.k < g.h ? h0 + g.k : g.h, we = w0 + g.k < g.w ? w0 + g.k : g.w;
    float best = -INFINITY;
    int64_t arg = hs * g.w + ws;
    for (int64_t ih = hs; ih < he; ++ih)
      for (int64_t iw = ws; iw < we; ++iw) {
        const float v = f32(xp[ih * g.w + iw]);
        if (v > best || v != v) {
          best = v;
          arg = ih * g.w + iw;
        }
      }
    y[o] = T(best);
    idx[o] = static_cast<int32_t>(arg);
  }
}

// One thread per input element: the outputs whose window covers it, in
// increasing output order (the order the CPU's scatter adds them in).
template <class T>
__global__ void maxpool_backward_kernel(PoolGeom g, int64_t Ho, int64_t Wo, int64_t planes, const T* dy,
                                        const int32_t* idx, T* dx) {
  const int64_t total = planes * g.h * g.w;
  DTRAIN_GRID_LOOP(i, total) {
    const int64_t iw = i % g.w, t = i / g.w, ih = t % g.h, pl = t / g.h;
    const int32_t pos = static_cast<int32_t>(ih * g.w + iw);
    // Windows oh cover ih when oh*s - pad <= ih < oh*s - pad + k.
    const int64_t hl = ih + g.pad - g.k + 1, wl = iw + g.pad - g.k + 1;
    const int64_t oh0 = hl > 0 ? (hl + g.stride - 1) / g.stride : 0;
    const int64_t ow0 = wl > 0 ? (wl + g.stride - 1) / g.stride : 0;
    const int64_t oh1 = (ih + g.pad) / g.stride < Ho - 1 ? (ih + g.pad) / g.stride : Ho - 1;
    const int64_t ow1 = (iw + g.pad) / g.stride < Wo - 1 ? (iw + g.pad) / g.stride : Wo - 1;
    float acc = 0.f;
    for (int64_t oh = oh0; oh <= oh1; ++oh)
      for (int64_t ow = ow0; ow <= ow1; ++ow) {
        const int64_t o = (pl * Ho + oh) * Wo + ow;
        if (idx[o] == pos) acc += f32(dy[o]);
      }
    dx[i] = T(acc);
  }
}

template <class T>
__global__ void avgpool_forward_kernel(int64_t planes, int64_t hw, const T* x, T* y) {
  const float inv = 1.f / static_cast<float>(hw);
  DTRAIN_GRID_LOOP(pl, planes) {
    const T* xp = x + pl * hw;
    float s = 0.f;
    for (int64_t p = 0; p < hw; ++p) s += f32(xp[p]);
    y[pl] = T(s * inv);
  }
}

template <class T>
__global__ void avgpool_backward_kernel(int64_t planes, int64_t hw, const T* dy, T* dx) {
  const float inv = 1.f / static_cast<float>(hw);
  DTRAIN_GRID_LOOP(i, planes * hw) { dx[i] = T(f32(dy[i / hw]) * inv); }
}

// ---------------------------------------------------------------- elementwise

template <class T>
__global__ void relu_forward_kernel(const T* x, int64_t n, T* y) {
  DTRAIN_GRID_LOOP(i, n) {
    const T v = x[i];
    y[i] = f32(v) > 0.f ? v : T(0.f);
  }
}

template <class T>
__global__ void relu_backward_kernel(const T* y, const T* dy, int64_t n, T* dx) {
  DTRAIN_GRID_LOOP(i, n) { dx[i] = f32(y[i]) > 0.f ? dy[i] : T(0.f); }
}

template <class T>
__global__ void add_channel_bias_kernel(int64_t n, int64_t c, int64_t hw, const T* b, T* y) {
  DTRAIN_GRID_LOOP(i, n * c * hw) { y[i] = T(f32(y[i]) + f32(b[(i / hw) % c])); }
}

// Block ci: channel ci.
template <class T>
__global__ void channel_sum_kernel(int64_t n, int64_t c, int64_t hw, const T* dy, float* db) {
  const int64_t ci = blockIdx.x, total = n * hw;
  double s = 0, unused = 0;
  for (int64_t i = threadIdx.x; i < total; i += kThreads) {
    const int64_t img = i / hw, p = i - img * hw;
    s += f32(dy[(img * c + ci) * hw + p]);
  }
  block_sum2(s, unused);
  if (threadIdx.x == 0) db[ci] += static_cast<float>(s);
}

template <class Dst, class Src>
__global__ void add_into_kernel(int64_t n, const Src* src, Dst* dst) {
  DTRAIN_GRID_LOOP(i, n) { dst[i] = Dst(f32(dst[i]) + f32(src[i])); }
}

#undef DTRAIN_GRID_LOOP

}  // namespace

// ---------------------------------------------------------------- launchers

template <class T>
void batchnorm_forward_train(const BatchNormArgs& a, const T* x, const T* w, const T* b, const T* res, T* y,
                             float* mean, float* rstd, float* running_mean, float* running_var, void* stream) {
  if (a.c == 0 || a.n * a.hw == 0) return;
  bn_train_kernel<T><<<static_cast<unsigned>(a.c), kThreads, 0, as_stream(stream)>>>(
      a, x, w, b, res, y, mean, rstd, running_mean, running_var);
  gpu::check_launch("cuda batchnorm_forward_train");
}

template <class T>
void batchnorm_forward_eval(const BatchNormArgs& a, const T* x, const T* w, const T* b, const T* res,
                           const float* running_mean, const float* running_var, T* y, float* mean, float* rstd,
                           void* stream) {
  if (a.c == 0) return;
  bn_eval_stats_kernel<<<elementwise_blocks(a.c), kThreads, 0, as_stream(stream)>>>(
      a.c, a.eps, running_mean, running_var, mean, rstd);
  gpu::check_launch("cuda batchnorm_forward_eval (statistics)");
  const int64_t total = a.n * a.c * a.hw;
  if (total == 0) return;
  bn_eval_kernel<T><<<elementwise_blocks(total), kThreads, 0, as_stream(stream)>>>(a, x, w, b, res, mean,
                                                                                   rstd, y);
  gpu::check_launch("cuda batchnorm_forward_eval");
}

template <class T>
void batchnorm_backward(const BatchNormArgs& a, bool batch_stats, const T* dy, const T* y, const T* x,
                        const T* w, const float* mean, const float* rstd, T* dx, T* dz, float* dw, float* db,
                        void* stream) {
  if (a.c == 0 || a.n * a.hw == 0) return;
  bn_backward_kernel<T><<<static_cast<unsigned>(a.c), kThreads, 0, as_stream(stream)>>>(
      a, batch_stats, dy, y, x, w, mean, rstd, dx, dz, dw, db);
  gpu::check_launch("cuda batchnorm_backward");
}

template <class T>
void maxpool_forward(const PoolGeom& g, int64_t planes, const T* x, T* y, int32_t* idx, void* stream) {
  const int64_t total = planes * g.ho() * g.wo();
  if (total <= 0) return;
  maxpool_forward_kernel<T><<<elementwise_blocks(total), kThreads, 0, as_stream(stream)>>>(g, g.ho(), g.wo(), planes,
                                                                                           x, y, idx);
  gpu::check_launch("cuda maxpool_forward");
}

template <class T>
void maxpool_backward(const PoolGeom& g, int64_t planes, const T* dy, const int32_t* idx, T* dx, void* stream) {
  const int64_t total = planes * g.h * g.w;
  if (total <= 0) return;
  maxpool_backward_kernel<T><<<elementwise_blocks(total), kThreads, 0, as_stream(stream)>>>(
      g, g.ho(), g.wo(), planes, dy, idx, dx);
  gpu::check_launch("cuda maxpool_backward");
}

template <class T>
void avgpool_forward(int64_t planes, int64_t hw, const T* x, T* y, void* stream) {
  if (planes <= 0) return;
  avgpool_forward_kernel<T><<<elementwise_blocks(planes), kThreads, 0, as_stream(stream)>>>(planes, hw, x, y);
  gpu::check_launch("cuda avgpool_forward");
}

template <class T>
void avgpool_backward(int64_t planes, int64_t hw, const T* dy, T* dx, void* stream) {
  if (planes * hw <= 0) return;
  avgpool_backward_kernel<T><<<elementwise_blocks(planes * hw), kThreads, 0, as_stream(stream)>>>(planes, hw,
                                                                                                 dy, dx);
  gpu::check_launch("cuda avgpool_backward");
}

template <class T>
void relu_forward(const T* x, int64_t n, T* y, void* stream) {
  if (n <= 0) return;
  relu_forward_kernel<T><<<elementwise_blocks(n), kThreads, 0, as_stream(stream)>>>(x, n, y);
  gpu::check_launch("cuda relu_forward");
}

template <class T>
void relu_backward(const T* y, const T* dy, int64_t n, T* dx, void* stream) {
  if (n <= 0) return;
  relu_backward_kernel<T><<<elementwise_blocks(n), kThreads, 0, as_stream(stream)>>>(y, dy, n, dx);
  gpu::check_launch("cuda relu_backward");
}

template <class T>
void add_channel_bias(int64_t n, int64_t c, int64_t hw, const T* b, T* y, void* stream) {
  if (n * c * hw <= 0) return;
  add_channel_bias_kernel<T><<<elementwise_blocks(n * c * hw), kThreads, 0, as_stream(stream)>>>(n, c, hw, b, y);
  gpu::check_launch("cuda conv2d bias");
}

template <class T>
void channel_sum_acc(int64_t n, int64_t c, int64_t hw, const T* dy, float* db, void* stream) {
  if (c <= 0) return;
  channel_sum_kernel<T><<<static_cast<unsigned>(c), kThreads, 0, as_stream(stream)>>>(n, c, hw, dy, db);
  gpu::check_launch("cuda conv2d bias gradient");
}

template <class Dst, class Src>
void add_into(int64_t count, const Src* src, Dst* dst, void* stream) {
  if (count <= 0) return;
  add_into_kernel<Dst, Src><<<elementwise_blocks(count), kThreads, 0, as_stream(stream)>>>(count, src, dst);
  gpu::check_launch("cuda add_into");
}

#define DTRAIN_INSTANTIATE(T)                                                                                 \
  template void batchnorm_forward_train<T>(const BatchNormArgs&, const T*, const T*, const T*, const T*, T*, \
                                           float*, float*, float*, float*, void*);                          \
  template void batchnorm_forward_eval<T>(const BatchNormArgs&, const T*, const T*, const T*, const T*,      \
                                          const float*, const float*, T*, float*, float*, void*);           \
  template void batchnorm_backward<T>(const BatchNormArgs&, bool, const T*, const T*, const T*, const T*,    \
                                      const float*, const float*, T*, T*, float*, float*, void*);           \
  template void maxpool_forward<T>(const PoolGeom&, int64_t, const T*, T*, int32_t*, void*);                \
  template void maxpool_backward<T>(const PoolGeom&, int64_t, const T*, const int32_t*, T*, void*);         \
  template void avgpool_forward<T>(int64_t, int64_t, const T*, T*, void*);                                  \
  template void avgpool_backward<T>(int64_t, int64_t, const T*, T*, void*);                                 \
  template void relu_forward<T>(const T*, int64_t, T*, void*);                                              \
  template void relu_backward<T>(const T*, const T*, int64_t, T*, void*);                                   \
  template void add_channel_bias<T>(int64_t, int64_t, int64_t, const T*, T*, void*);                        \
  template void channel_sum_acc<T>(int64_t, int64_t, int64_t, const T*, float*, void*);                     \
  template void add_into<T, T>(int64_t, const T*, T*, void*);
DTRAIN_INSTANTIATE(float)
DTRAIN_INSTANTIATE(bf16)
#undef DTRAIN_INSTANTIATE
template void add_into<float, bf16>(int64_t, const bf16*, float*, void*);

}  // namespace dtrain::cuda
