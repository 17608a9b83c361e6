// Fused AdamW and SGD over span tables: up to kMaxSpans spans per launch,
// passed by value as a __grid_constant__ kernel parameter (no device table to
// allocate or upload); blockIdx.y picks the span, a grid-stride loop its
// elements. The element math is kernels/elementwise_math.h, as on the CPU.
#include "kernels/cuda/optim.h"

#include "kernels/cuda/gpt_common.cuh"

namespace dtrain::cuda::gpt {

namespace {

constexpr int kMaxSpans = 32;

struct SpanBatch {
  OptSpan s[kMaxSpans];
};

__global__ void adamw_k(const __grid_constant__ SpanBatch b, const __grid_constant__ math::AdamWCoeffs<float> on,
                        const __grid_constant__ math::AdamWCoeffs<float> off) {
  const OptSpan& s = b.s[blockIdx.y];
  const math::AdamWCoeffs<float>& c = s.decay ? on : off;
  DTRAIN_GRID_STRIDE(i, s.n) {
    float w = s.w[i], m = s.s1[i], v = s.s2[i];
    math::adamw_element(c, s.g[i], w, m, v);
    s.w[i] = w;
    s.s1[i] = m;
    s.s2[i] = v;
    if (s.wc) s.wc[i] = bf16(w);
  }
}

__global__ void sgd_k(const __grid_constant__ SpanBatch b, const __grid_constant__ math::SgdCoeffs<float> on,
                      const __grid_constant__ math::SgdCoeffs<float> off) {
  const OptSpan& s = b.s[blockIdx.y];
  const math::SgdCoeffs<float>& c = s.decay ? on : off;
  DTRAIN_GRID_STRIDE(i, s.n) {
    float w = s.w[i], buf = s.s1[i];
    math::sgd_element(c, s.g[i], w, buf);
    s.w[i] = w;
    s.s1[i] = buf;
    if (s.wc) s.wc[i] = bf16(w);
  }
}

template <class Launch>
void for_batches(const OptSpan* spans, int64_t count, Launch&& launch) {
  for (int64_t k0 = 0; k0 < count; k0 += kMaxSpans) {
    const int64_t kn = count - k0 < kMaxSpans ? count - k0 : kMaxSpans;
    SpanBatch b{};
    int64_t most = 1;
    for (int64_t k = 0; k < kn; ++k) {
      b.s[k] = spans[k0 + k];
      if (b.s[k].n > most) most = b.s[k].n;
    }
    launch(b, dim3(grid_for(most), static_cast<unsigned>(kn)));
  }
}

}  // namespace

void adamw_update(const math::AdamWCoeffs<float>& on, const math::AdamWCoeffs<float>& off,
                  const OptSpan* spans, int64_t count, void* stream) {
  for_batches(spans, count, [&](const SpanBatch& b, dim3 grid) {
    adamw_k<<<grid, kThreads, 0, as_stream(stream)>>>(b, on, off);
    gpu::check_launch("adamw");
  });
}

void sgd_update(const math::SgdCoeffs<float>& on, const math::SgdCoeffs<float>& off,
                const OptSpan* spans, int64_t count, void* stream) {
  for_batches(spans, count, [&](const SpanBatch& b, dim3 grid) {
    sgd_k<<<grid, kThreads, 0, as_stream(stream)>>>(b, on, off);
    gpu::check_launch("sgd");
  });
}

}  // namespace dtrain::cuda::gpt
