// Elementwise kernels of the GPT: grid-stride loops over elements, fp32
// arithmetic on f32 or bf16 storage, each the CPU kernel's expression
// (kernels/cpu/*). GELU uses the shared formula of kernels/elementwise_math.h
// with the device's tanhf; dropout draws its mask with the shared
// math::dropout_keep, so the masks are the CPU's bit for bit.
#include "kernels/cuda/elementwise.h"

#include "kernels/cuda/gpt_common.cuh"
#include "kernels/elementwise_math.h"

namespace dtrain::cuda::gpt {

namespace {

template <class T>
__global__ void add_k(const T* a, const T* b, int64_t n, T* y) {
  DTRAIN_GRID_STRIDE(i, n) y[i] = T(float(a[i]) + float(b[i]));
}

template <class T>
__global__ void scale_k(T* x, int64_t n, float s) {
  DTRAIN_GRID_STRIDE(i, n) x[i] = T(float(x[i]) * s);
}

__global__ void f32_to_bf16_k(const float* x, int64_t n, bf16* y) {
  DTRAIN_GRID_STRIDE(i, n) y[i] = bf16(x[i]);
}

__global__ void bf16_to_f32_k(const bf16* x, int64_t n, float* y) {
  DTRAIN_GRID_STRIDE(i, n) y[i] = float(x[i]);
}

template <class T>
__global__ void broadcast_rows_k(const T* b, int64_t n, int64_t m, T* y) {
  DTRAIN_GRID_STRIDE(i, n) y[i] = b[i % m];
}

template <class T>
__global__ void add_rows_k(const T* b, int64_t n, int64_t m, T* y) {
  DTRAIN_GRID_STRIDE(i, n) y[i] = T(float(y[i]) + float(b[i % m]));
}

template <class T>
__global__ void gelu_forward_k(const T* x, int64_t n, T* y) {
  DTRAIN_GRID_STRIDE(i, n) {
    const float v = x[i];
    y[i] = T(math::gelu_tanh(v, tanhf(math::gelu_tanh_arg(v))));
  }
}

template <class T>
__global__ void gelu_backward_k(const T* x, const T* dy, int64_t n, T* dx) {
  DTRAIN_GRID_STRIDE(i, n) {
    const float v = x[i];
    dx[i] = T(float(dy[i]) * math::gelu_tanh_grad(v, tanhf(math::gelu_tanh_arg(v))));
  }
}

template <class T>
__global__ void dropout_forward_k(const T* x, const T* resid, int64_t sample_numel, int64_t n,
                                  uint64_t threshold, float scale, uint64_t key,
                                  int64_t first_sample, int64_t first_element, uint8_t* mask, T* y) {
  DTRAIN_GRID_STRIDE(i, n) {
    const int64_t s = i / sample_numel, e = i - s * sample_numel;
    const bool keep = math::dropout_keep(math::dropout_sample_key(key, first_sample + s), first_element + e, threshold);
    mask[i] = keep ? 1 : 0;
    const float v = keep ? float(x[i]) * scale : 0.0f;
    y[i] = T(resid ? float(resid[i]) + v : v);
  }
}

template <class T>
__global__ void dropout_backward_k(const T* dy, const uint8_t* mask, int64_t n, float scale, T* dx) {
  DTRAIN_GRID_STRIDE(i, n) dx[i] = T(mask[i] ? float(dy[i]) * scale : 0.0f);
}

}  // namespace

void add(Act t, const void* a, const void* b, int64_t n, void* y, void* stream) {
  if (n <= 0) return;
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    add_k<T><<<grid_for(n), kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(a), static_cast<const T*>(b), n, static_cast<T*>(y));
  });
  gpu::check_launch("add");
}

void scale(Act t, void* x, int64_t n, float s, void* stream) {
  if (n <= 0) return;
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    scale_k<T><<<grid_for(n), kThreads, 0, as_stream(stream)>>>(static_cast<T*>(x), n, s);
  });
  gpu::check_launch("scale");
}

void f32_to_bf16(const float* x, int64_t n, bf16* y, void* stream) {
  if (n <= 0) return;
  f32_to_bf16_k<<<grid_for(n), kThreads, 0, as_stream(stream)>>>(x, n, y);
  gpu::check_launch("convert f32 -> bf16");
}

void bf16_to_f32(const bf16* x, int64_t n, float* y, void* stream) {
  if (n <= 0) return;
  bf16_to_f32_k<<<grid_for(n), kThreads, 0, as_stream(stream)>>>(x, n, y);
  gpu::check_launch("convert bf16 -> f32");
}

void broadcast_rows(Act t, const void* b, int64_t n, int64_t m, void* y, void* stream) {
  if (n <= 0) return;
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    broadcast_rows_k<T><<<grid_for(n), kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(b), n, m, static_cast<T*>(y));
  });
  gpu::check_launch("broadcast_rows");
}

void add_rows(Act t, const void* b, int64_t n, int64_t m, void* y, void* stream) {
  if (n <= 0) return;
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    add_rows_k<T><<<grid_for(n), kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(b), n, m, static_cast<T*>(y));
  });
  gpu::check_launch("add_rows");
}

void gelu_forward(Act t, const void* x, int64_t n, void* y, void* stream) {
  if (n <= 0) return;
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    gelu_forward_k<T><<<grid_for(n), kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(x), n, static_cast<T*>(y));
  });
  gpu::check_launch("gelu");
}

void gelu_backward(Act t, const void* x, const void* dy, int64_t n, void* dx, void* stream) {
  if (n <= 0) return;
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    gelu_backward_k<T><<<grid_for(n), kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(x), static_cast<const T*>(dy), n, static_cast<T*>(dx));
  });
  gpu::check_launch("gelu_backward");
}

void dropout_forward(Act t, const void* x, const void* resid, int64_t samples, int64_t sample_numel,
                     uint64_t threshold, float scale, uint64_t key, int64_t first_sample,
                     int64_t first_element, uint8_t* mask, void* y, void* stream) {
  const int64_t n = samples * sample_numel;
  if (n <= 0) return;
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    dropout_forward_k<T><<<grid_for(n), kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(x), static_cast<const T*>(resid), sample_numel, n, threshold, scale,
        key, first_sample, first_element, mask, static_cast<T*>(y));
  });
  gpu::check_launch("dropout");
}

void dropout_backward(Act t, const void* dy, const uint8_t* mask, int64_t n, float scale, void* dx,
                      void* stream) {
  if (n <= 0) return;
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    dropout_backward_k<T><<<grid_for(n), kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(dy), mask, n, scale, static_cast<T*>(dx));
  });
  gpu::check_launch("dropout_backward");
}

}  // namespace dtrain::cuda::gpt
