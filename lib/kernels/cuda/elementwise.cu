// Elementwise kernels of the GPT: grid-stride loops over elements, fp32
// arithmetic on f32 or bf16 storage, each the CPU kernel's expression
// (kernels/cpu/*). GELU uses the shared formula of kernels/elementwise_math.h
// with the device's tanhf, SwiGLU its sigmoid from expf; RoPE rounds each
// angle's cosine and sine once from double, as the CPU's tables are made, so
// both turn by the same values (but for a rare last-bit rounding); dropout
// draws its mask with the shared math::dropout_keep, so the masks are the
// CPU's bit for bit.
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

// One thread per element of the (rows, w) block of filled columns, w = v - from.
template <class T>
__global__ void fill_columns_k(T* x, int64_t rows, int64_t v, int64_t from, float value) {
  const int64_t w = v - from;
  DTRAIN_GRID_STRIDE(i, rows * w) x[i / w * v + from + i % w] = T(value);
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

__device__ inline float sigmoid(float a) { return 1.0f / (1.0f + expf(-a)); }

// Element i of g (n, h): row r's gate a and up u at column j.
template <class T>
__global__ void swiglu_forward_k(const T* f, int64_t n, int64_t h, T* g) {
  DTRAIN_GRID_STRIDE(i, n * h) {
    const int64_t r = i / h, j = i - r * h;
    const float a = f[r * 2 * h + j], u = f[r * 2 * h + h + j];
    g[i] = T(math::swiglu(a, u, sigmoid(a)));
  }
}

template <class T>
__global__ void swiglu_backward_k(const T* f, const T* dg, int64_t n, int64_t h, T* df) {
  DTRAIN_GRID_STRIDE(i, n * h) {
    const int64_t r = i / h, j = i - r * h;
    const float a = f[r * 2 * h + j], u = f[r * 2 * h + h + j];
    float da, du;
    math::swiglu_grad(a, u, sigmoid(a), float(dg[i]), da, du);
    df[r * 2 * h + j] = T(da);
    df[r * 2 * h + h + j] = T(du);
  }
}

// The cosine and sine of the float angle a in double, each rounded once to
// float (the CPU's std::cos and std::sin). The device's double cos and sin
// keep a large-argument reduction in local memory (which fails the build), so
// through sincospi of r = a / pi reduced mod 2: a / pi to about 100 bits
// (1/pi as two doubles), the multiple of 2 taken off exactly.
__device__ inline void rope_cos_sin(float a, float& c, float& s) {
  constexpr double kInvPiHi = 0x1.45f306dc9c883p-2, kInvPiLo = -1.9678676675182486e-17;
  const double x = a;
  const double p = x * kInvPiHi;
  const double e = fma(x, kInvPiHi, -p) + x * kInvPiLo;  // a / pi = p + e
  const double r = (p - 2.0 * rint(0.5 * p)) + e;         // |r| <= 1: exact but for the last add
  double sd, cd;
  sincospi(r, &sd, &cd);
  c = static_cast<float>(cd);
  s = static_cast<float>(sd);
}

// One thread per (row, pair i < d/2): the pair's cosine and sine once, then
// the pair (i, i + d/2) of each of the n_head query and n_kv_head key heads.
template <class T>
__global__ void rope_k(T* qkv, int64_t rows, int64_t tlen, int64_t c, int64_t n_head, int64_t n_kv_head,
                       math::Rope rope, int64_t pos0, bool inverse) {
  const int64_t d = c / n_head, half = d / 2, ld = c + 2 * n_kv_head * d;
  DTRAIN_GRID_STRIDE(k, rows * half) {
    const int64_t row = k / half, i = k - row * half;
    float cs, sn;
    rope_cos_sin(math::rope_angle(pos0 + row % tlen, math::rope_frequency<float>(rope, i, d)), cs, sn);
    if (inverse) sn = -sn;
    T* x0 = qkv + row * ld + i;  // q | k | v
    for (int64_t hd = 0; hd < n_head + n_kv_head; ++hd) {
      float a0 = x0[hd * d], a1 = x0[hd * d + half];
      math::rope_turn(a0, a1, cs, sn);
      x0[hd * d] = T(a0);
      x0[hd * d + half] = T(a1);
    }
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

void fill_columns(Act t, void* x, int64_t rows, int64_t v, int64_t from, float value, void* stream) {
  const int64_t n = rows * (v - from);
  if (n <= 0) return;
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    fill_columns_k<T><<<grid_for(n), kThreads, 0, as_stream(stream)>>>(static_cast<T*>(x), rows, v, from, value);
  });
  gpu::check_launch("fill_columns");
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

void swiglu_forward(Act t, const void* f, int64_t n, int64_t h, void* g, void* stream) {
  if (n * h <= 0) return;
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    swiglu_forward_k<T><<<grid_for(n * h), kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(f), n, h, static_cast<T*>(g));
  });
  gpu::check_launch("swiglu");
}

void swiglu_backward(Act t, const void* f, const void* dg, int64_t n, int64_t h, void* df,
                     void* stream) {
  if (n * h <= 0) return;
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    swiglu_backward_k<T><<<grid_for(n * h), kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(f), static_cast<const T*>(dg), n, h, static_cast<T*>(df));
  });
  gpu::check_launch("swiglu_backward");
}

void rope(Act t, void* qkv, int64_t b, int64_t tlen, int64_t c, int64_t n_head, int64_t n_kv_head,
          const math::Rope& rope, int64_t pos0, bool inverse, void* stream) {
  const int64_t pairs = b * tlen * (c / n_head / 2);
  if (pairs <= 0) return;
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    rope_k<T><<<grid_for(pairs), kThreads, 0, as_stream(stream)>>>(
        static_cast<T*>(qkv), b * tlen, tlen, c, n_head, n_kv_head, rope, pos0, inverse);
  });
  gpu::check_launch("rope");
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
