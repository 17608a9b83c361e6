// Softmax cross-entropy, fused and vocabulary-parallel: one block per row of
// logits (V = 50304 for GPT-2), reading the row twice in the forward (max,
// then exp sums and the first index of the max) and once in the backward.
// Maxima and first indices are exact; the exp sums are fixed-tree block sums,
// so results repeat bit for bit (and match the CPU within rounding).
#include "kernels/cuda/xent.h"

#include "kernels/cuda/gpt_common.cuh"

namespace dtrain::cuda::gpt {

namespace {

constexpr int kRowThreads = 512;

template <class T>
__device__ float row_max_of(const T* xr, int64_t v, float* sh) {
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < v; j += blockDim.x) m = fmaxf(m, float(xr[j]));
  return block_max(m, sh);
}

template <class T>
__global__ void xent_forward_k(const T* x, const int32_t* tgt, int64_t v, float* row_max,
                               float* row_sum, double* row_loss, int32_t* argmax) {
  __shared__ float shf[32];
  __shared__ int64_t shi[32];
  const int64_t r = blockIdx.x;
  const T* xr = x + r * v;  // (V)
  const float mx = row_max_of(xr, v, shf);
  float s = 0.0f;
  int64_t first = INT64_MAX;
  for (int64_t j = threadIdx.x; j < v; j += blockDim.x) {
    const float xj = xr[j];
    s += expf(xj - mx);
    if (xj == mx && j < first) first = j;
  }
  s = block_sum(s, shf);
  first = block_min(first, shi);
  if (threadIdx.x == 0) {
    row_max[r] = mx;
    row_sum[r] = s;
    // In double, as the CPU's: in float log(s) + mx rounds at ulp(mx) (2e-6 at 25), a confident row's whole loss.
    row_loss[r] = log(static_cast<double>(s)) + static_cast<double>(mx) - static_cast<double>(float(xr[tgt[r]]));
    argmax[r] = static_cast<int32_t>(first == INT64_MAX ? 0 : first);
  }
}

// One block: thread t sums the rows t, t + blockDim, ... in order, then a
// fixed tree; thread 0 adds the micro-batch into the five sums.
__global__ void loss_accumulate_k(const double* row_loss, const int32_t* argmax, const int32_t* tgt,
                                  int64_t rows, double* sums) {
  __shared__ double sh[32];
  double total = 0, correct = 0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
    total += row_loss[r];
    correct += argmax[r] == tgt[r] ? 1.0 : 0.0;
  }
  total = block_sum(total, sh);
  correct = block_sum(correct, sh);
  if (threadIdx.x == 0) {
    const double n = static_cast<double>(rows), mean = total / n;
    sums[0] += mean;
    sums[1] += mean * n;
    sums[2] += n;
    sums[3] += correct;
    sums[4] += 1;
  }
}

template <class T>
__global__ void xent_backward_k(const T* x, const int32_t* tgt, const float* row_max,
                                const float* row_sum, int64_t v, float scale, T* dx) {
  const int64_t r = blockIdx.x;
  const T* xr = x + r * v;
  T* dr = dx + r * v;
  const float mx = row_max[r], k = scale / row_sum[r];
  const int64_t y = tgt[r];
  for (int64_t j = threadIdx.x; j < v; j += blockDim.x) {
    const float p = k * expf(float(xr[j]) - mx);
    dr[j] = T(j == y ? p - scale : p);
  }
}

template <class T>
__global__ void vp_row_max_k(const T* x, int64_t v, float* row_max) {
  __shared__ float sh[32];
  const float m = row_max_of(x + static_cast<int64_t>(blockIdx.x) * v, v, sh);
  if (threadIdx.x == 0) row_max[blockIdx.x] = m;
}

template <class T>
__global__ void vp_exp_sums_k(const T* x, const int32_t* tgt, int64_t v0, int64_t rows, int64_t v,
                              const float* row_max, T* probs, float* sums, int32_t* argmax) {
  __shared__ float shf[32];
  __shared__ int64_t shi[32];
  __shared__ float target_logit;
  const int64_t r = blockIdx.x;
  const T* xr = x + r * v;  // (V/t)
  T* pr = probs + r * v;
  const float mr = row_max[r];
  const int64_t y = tgt[r] - v0;  // the target's column here, if in [0, v)
  if (threadIdx.x == 0) target_logit = 0.0f;
  __syncthreads();
  float s = 0.0f;
  int64_t first = INT64_MAX;
  for (int64_t j = threadIdx.x; j < v; j += blockDim.x) {
    const float xj = xr[j];
    if (xj == mr && j < first) first = j;
    if (j == y) target_logit = xj;  // read by its own thread before probs[j] is written
    const float e = expf(xj - mr);
    pr[j] = T(e);
    s += e;
  }
  s = block_sum(s, shf);  // (its barriers also publish target_logit)
  first = block_min(first, shi);
  if (threadIdx.x == 0) {
    argmax[r] = first == INT64_MAX ? INT32_MAX : static_cast<int32_t>(v0 + first);
    sums[r] = s;
    sums[rows + r] = target_logit;
  }
}

template <class T>
__global__ void vp_finish_k(int64_t rows, int64_t v, const float* row_max, const float* sums,
                            T* probs, double* row_loss) {
  const int64_t r = blockIdx.x;
  T* pr = probs + r * v;
  const float inv = 1.0f / sums[r];
  for (int64_t j = threadIdx.x; j < v; j += blockDim.x) pr[j] = T(float(pr[j]) * inv);
  if (threadIdx.x == 0)
    row_loss[r] = static_cast<double>(logf(sums[r]) + row_max[r] - sums[rows + r]);
}

template <class T>
__global__ void vp_backward_k(const int32_t* tgt, int64_t v0, int64_t v, float scale, T* probs) {
  const int64_t r = blockIdx.x;
  T* gr = probs + r * v;
  const int64_t y = tgt[r] - v0;
  for (int64_t j = threadIdx.x; j < v; j += blockDim.x) {
    const float p = gr[j];
    gr[j] = T(j == y ? p * scale - scale : p * scale);
  }
}

}  // namespace

void xent_forward(Act t, const void* x, const int32_t* tgt, int64_t rows, int64_t v, float* row_max,
                  float* row_sum, double* row_loss, int32_t* argmax, void* stream) {
  if (rows <= 0) return;
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    xent_forward_k<T><<<static_cast<unsigned>(rows), kRowThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(x), tgt, v, row_max, row_sum, row_loss, argmax);
  });
  gpu::check_launch("cross_entropy");
}

void loss_accumulate(const double* row_loss, const int32_t* argmax, const int32_t* tgt, int64_t rows,
                     double* sums, void* stream) {
  if (rows <= 0) return;
  loss_accumulate_k<<<1, kThreads, 0, as_stream(stream)>>>(row_loss, argmax, tgt, rows, sums);
  gpu::check_launch("cross_entropy (loss statistics)");
}

void xent_backward(Act t, const void* x, const int32_t* tgt, const float* row_max,
                   const float* row_sum, int64_t rows, int64_t v, float scale, void* dx,
                   void* stream) {
  if (rows <= 0) return;
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    xent_backward_k<T><<<static_cast<unsigned>(rows), kRowThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(x), tgt, row_max, row_sum, v, scale, static_cast<T*>(dx));
  });
  gpu::check_launch("cross_entropy_backward");
}

void vp_row_max(Act t, const void* x, int64_t rows, int64_t v, float* row_max, void* stream) {
  if (rows <= 0) return;
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    vp_row_max_k<T><<<static_cast<unsigned>(rows), kRowThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(x), v, row_max);
  });
  gpu::check_launch("cross_entropy (row max)");
}

void vp_exp_sums(Act t, const void* x, const int32_t* tgt, int64_t v0, int64_t rows, int64_t v,
                 const float* row_max, void* probs, float* sums, int32_t* argmax, void* stream) {
  if (rows <= 0) return;
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    vp_exp_sums_k<T><<<static_cast<unsigned>(rows), kRowThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(x), tgt, v0, rows, v, row_max, static_cast<T*>(probs), sums, argmax);
  });
  gpu::check_launch("cross_entropy (exp sums)");
}

void vp_finish(Act t, int64_t rows, int64_t v, const float* row_max, const float* sums, void* probs,
               double* row_loss, void* stream) {
  if (rows <= 0) return;
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    vp_finish_k<T><<<static_cast<unsigned>(rows), kRowThreads, 0, as_stream(stream)>>>(
        rows, v, row_max, sums, static_cast<T*>(probs), row_loss);
  });
  gpu::check_launch("cross_entropy (finish)");
}

void vp_backward(Act t, const int32_t* tgt, int64_t v0, int64_t rows, int64_t v, float scale,
                 void* probs, void* stream) {
  if (rows <= 0) return;
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    vp_backward_k<T><<<static_cast<unsigned>(rows), kRowThreads, 0, as_stream(stream)>>>(
        tgt, v0, v, scale, static_cast<T*>(probs));
  });
  gpu::check_launch("cross_entropy_backward");
}

}  // namespace dtrain::cuda::gpt
