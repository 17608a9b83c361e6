#include "ops/optim.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "kernels/cpu/adamw_avx512.h"
#include "kernels/elementwise_math.h"
#include "ops/dispatch.h"
#include "ops/ops.h"
#if DTRAIN_HAVE_CUDA
#include "ops/cuda/gpt_ops.h"
#endif

namespace dtrain::ops {

namespace {

void check_spans(const Exec& ex, const char* op, const std::vector<UpdateSpan>& spans) {
  for (const UpdateSpan& s : spans) {
    check_on(ex, op, {s.w, s.g, s.s1, s.s2, s.wc});
    DTRAIN_CHECK(s.g.numel() == s.w.numel() && s.s1.numel() == s.w.numel() &&
                     (!s.s2.defined() || s.s2.numel() == s.w.numel()) &&
                     (!s.wc.defined() || s.wc.numel() == s.w.numel()),
                 "{}: span tensors of different lengths", op);
    check_same(s.w, op, {s.g, s.s1, s.s2});
  }
}

// wc[i] = w[i] rounded, when the span has a compute copy in another dtype.
template <class T>
inline void write_copy(const UpdateSpan& s, const T* w, int64_t b, int64_t e) {
  if (!s.wc.defined()) return;
  if constexpr (std::is_same_v<T, float>) {
    if (s.wc.dtype() == DType::bf16) {
      bf16* c = s.wc.data<bf16>();
#pragma omp simd
      for (int64_t i = b; i < e; ++i) c[i] = bf16(w[i]);
    }
  }
}

// The per-step coefficients, folded once (CPU and GPU use these same values).
template <class T>
math::AdamWCoeffs<T> adamw_coeffs(const AdamWArgs& a, bool decay) {
  const double bc1 = 1.0 - std::pow(a.beta1, static_cast<double>(a.t));
  const double bc2 = 1.0 - std::pow(a.beta2, static_cast<double>(a.t));
  math::AdamWCoeffs<T> c{};
  c.b1 = static_cast<T>(a.beta1);
  c.b2 = static_cast<T>(a.beta2);
  c.step_size = static_cast<T>(a.lr / bc1);
  c.inv_sqrt_bc2 = static_cast<T>(1.0 / std::sqrt(bc2));
  c.eps = static_cast<T>(a.eps);
  c.grad_scale = static_cast<T>(a.grad_scale);
  c.decay = decay ? static_cast<T>(1.0 - a.lr * a.weight_decay) : T(1);
  return c;
}

template <class T>
math::SgdCoeffs<T> sgd_coeffs(const SgdArgs& a, bool decay) {
  math::SgdCoeffs<T> c{};
  c.momentum = static_cast<T>(a.momentum);
  c.lr = static_cast<T>(a.lr);
  c.grad_scale = static_cast<T>(a.grad_scale);
  c.weight_decay = static_cast<T>(decay ? a.weight_decay : 0.0);
  c.nesterov = a.nesterov;
  c.first = a.first;
  return c;
}

#if DTRAIN_HAVE_CUDA
// The device's updates do not fuse zeroing yet: a pass of their own.
void zero_grads_after(const Exec& ex, bool on, const std::vector<UpdateSpan>& spans) {
  if (on)
    for (const UpdateSpan& s : spans) zero(ex, s.g);
}
#endif

// The AVX-512 AdamW loop gives the scalar loop's bits only where the scalar
// loop's multiply-adds are fused as the kernel's are: in a build for a CPU
// with FMA (-march=native on one, the default). Elsewhere the scalar loop runs.
bool adamw_vector_ok() {
#if defined(__FMA__) && defined(__x86_64__)
  static const bool ok = cpu::x86::adamw_avx512_supported();
  return ok;
#else
  return false;
#endif
}

}  // namespace

void adamw_update(const Exec& ex, const AdamWArgs& a, const std::vector<UpdateSpan>& spans) {
  if (spans.empty()) return;
  DTRAIN_CUDA_OP(ex, cuda_ops::adamw_update(ex, adamw_coeffs<float>(a, true),
                                            adamw_coeffs<float>(a, false), spans);
                 zero_grads_after(ex, a.zero_grads, spans));
  check_spans(ex, "adamw", spans);
  dispatch_full(spans[0].w.dtype(), "adamw", [&](auto tag) {
    using T = decltype(tag);
    const math::AdamWCoeffs<T> on = adamw_coeffs<T>(a, true), off = adamw_coeffs<T>(a, false);
    const bool vec = std::is_same_v<T, float> && a.vector && adamw_vector_ok();
    int64_t total = 0;
    for (const UpdateSpan& s : spans) total += s.w.numel();
#pragma omp parallel
    {
      const int64_t nt = omp_get_num_threads(), id = omp_get_thread_num();
      const int64_t lo = total * id / nt, hi = total * (id + 1) / nt;
      int64_t seen = 0;  // elements in the spans before this one
      for (const UpdateSpan& s : spans) {
        const int64_t n = s.w.numel();
        const int64_t b = std::max(lo, seen) - seen, e = std::min(hi, seen + n) - seen;
        seen += n;
        if (b >= e) continue;
        T* w = s.w.data<T>();
        T* g = s.g.data<T>();
        T* m = s.s1.data<T>();
        T* v = s.s2.data<T>();
        const math::AdamWCoeffs<T> c = s.decay ? on : off;
        if constexpr (std::is_same_v<T, float>) {
          if (vec) {  // one pass: masters, moments, gradient and the bf16 copy
            const cpu::x86::AdamWStepF32 k{c.b1,        1.f - c.b1,     c.b2, 1.f - c.b2,   c.step_size,
                                           c.inv_sqrt_bc2, c.eps, c.grad_scale, c.decay};
            uint16_t* wc = s.wc.defined() && s.wc.dtype() == DType::bf16
                               ? reinterpret_cast<uint16_t*>(s.wc.data<bf16>()) + b
                               : nullptr;
            cpu::x86::adamw_f32_avx512(k, w + b, g + b, m + b, v + b, wc, e - b, a.zero_grads);
            continue;
          }
        }
        // In blocks that stay in L1, so the compute copy is written from the
        // updated masters while they are still in cache (one pass over memory).
        constexpr int64_t kBlock = 2048;
        for (int64_t b0 = b; b0 < e; b0 += kBlock) {
          const int64_t e0 = std::min(e, b0 + kBlock);
#pragma omp simd
          for (int64_t i = b0; i < e0; ++i) math::adamw_element(c, g[i], w[i], m[i], v[i]);
          write_copy(s, w, b0, e0);
          if (a.zero_grads) std::fill(g + b0, g + e0, T(0));
        }
      }
    }
  });
}

void sgd_update(const Exec& ex, const SgdArgs& a, const std::vector<UpdateSpan>& spans) {
  DTRAIN_CUDA_OP(ex, cuda_ops::sgd_update(ex, sgd_coeffs<float>(a, true), sgd_coeffs<float>(a, false),
                                          spans);
                 zero_grads_after(ex, a.zero_grads, spans));
  check_spans(ex, "sgd", spans);
  for (const UpdateSpan& s : spans) {
    dispatch_full(s.w.dtype(), "sgd", [&](auto tag) {
      using T = decltype(tag);
      const math::SgdCoeffs<T> c = sgd_coeffs<T>(a, s.decay);
      T* w = s.w.data<T>();
      const T* g = s.g.data<T>();
      T* buf = s.s1.data<T>();
      const int64_t n = s.w.numel();
#pragma omp parallel for simd schedule(static)
      for (int64_t i = 0; i < n; ++i) math::sgd_element(c, g[i], w[i], buf[i]);
      write_copy(s, w, 0, n);
      if (a.zero_grads) {
        T* gz = s.g.data<T>();
#pragma omp parallel for simd schedule(static)
        for (int64_t i = 0; i < n; ++i) gz[i] = T(0);
      }
    });
  }
}

}  // namespace dtrain::ops
