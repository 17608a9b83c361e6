// Per-element math that the CPU and the CUDA kernels share, written once and
// callable from host and device code, so that both backends compute the same
// expression in the same order: the optimizer updates, GELU's formula and
// dropout's keep rule (bf16 rounding is in core/bf16.h, the counter RNG's
// mixing in core/rng.h).
#pragma once

#include <cmath>
#include <cstdint>

#include "core/bf16.h"
#include "core/rng.h"

namespace dtrain::math {

// GELU, tanh approximation (GPT-2's "gelu_new"): 0.5 v (1 + tanh(a (v + b v^3))),
// with a = sqrt(2/pi), b = 0.044715. `t` is tanh of gelu_tanh_arg(v): each
// backend supplies its own tanh (a vectorisable polynomial on the CPU).
template <class A>
DTRAIN_HOST_DEVICE inline A gelu_tanh_arg(A v) {
  const A a = static_cast<A>(0.79788456080286535588), b = static_cast<A>(0.044715);
  return a * (v + b * v * v * v);
}
template <class A>
DTRAIN_HOST_DEVICE inline A gelu_tanh(A v, A t) {
  return A(0.5) * v * (A(1) + t);
}
// d gelu / dv, given t = tanh(gelu_tanh_arg(v)).
template <class A>
DTRAIN_HOST_DEVICE inline A gelu_tanh_grad(A v, A t) {
  const A a = static_cast<A>(0.79788456080286535588), b = static_cast<A>(0.044715);
  const A du = a * (A(1) + A(3) * b * v * v);  // d/dv of tanh's argument
  return A(0.5) * (A(1) + t) + A(0.5) * v * (A(1) - t * t) * du;
}

// Dropout masks: element e of global sample s at a site keyed by `key` is
// kept iff the top 24 bits of hash_combine(hash_combine(key, s), e), read as
// a fraction of 2^24, are >= p. Integer math only, so every device draws the
// same mask. The threshold is llround(p * 2^24), computed once on the host.
DTRAIN_HOST_DEVICE inline uint64_t dropout_sample_key(uint64_t key, int64_t sample) {
  return hash_combine(key, static_cast<uint64_t>(sample));
}
DTRAIN_HOST_DEVICE inline bool dropout_keep(uint64_t sample_key, int64_t element, uint64_t threshold) {
  return (hash_combine(sample_key, static_cast<uint64_t>(element)) >> 40) >= threshold;
}
inline uint64_t dropout_threshold(double p) {
  return static_cast<uint64_t>(std::llround(p * 16777216.0));
}

// AdamW (torch.optim.AdamW: decoupled weight decay, bias-corrected moments),
// one element; the hyperparameters are folded once per step.
template <class T>
struct AdamWCoeffs {
  T b1, b2;          // betas
  T step_size;       // lr / (1 - beta1^t)
  T inv_sqrt_bc2;    // 1 / sqrt(1 - beta2^t)
  T eps;
  T grad_scale;      // gradient clipping, folded into the update
  T decay;           // 1 - lr * weight_decay, or 1 where no decay applies
};
template <class T>
DTRAIN_HOST_DEVICE inline void adamw_element(const AdamWCoeffs<T>& c, T g, T& w, T& m, T& v) {
  const T gi = g * c.grad_scale;
  m = c.b1 * m + (T(1) - c.b1) * gi;
  v = c.b2 * v + (T(1) - c.b2) * gi * gi;
  w = w * c.decay - c.step_size * m / (std::sqrt(v) * c.inv_sqrt_bc2 + c.eps);
}

// SGD with momentum as torch.optim.SGD, one element.
template <class T>
struct SgdCoeffs {
  T momentum, lr, grad_scale, weight_decay;
  bool nesterov, first;  // first: the momentum buffer starts as the gradient
};
template <class T>
DTRAIN_HOST_DEVICE inline void sgd_element(const SgdCoeffs<T>& c, T g, T& w, T& buf) {
  T d = g * c.grad_scale + c.weight_decay * w;
  if (c.momentum != T(0)) {
    buf = c.first ? d : c.momentum * buf + d;
    d = c.nesterov ? d + c.momentum * buf : buf;
  }
  w -= c.lr * d;
}

// SwiGLU (Shazeer 2020, LLaMA's MLP): silu(a) * u with silu(a) = a sigmoid(a);
// `s` is sigmoid(a): each backend supplies its own exp.
template <class A>
DTRAIN_HOST_DEVICE inline A swiglu(A a, A u, A s) {
  return a * s * u;
}
// The gradients of swiglu(a, u) for its output's gradient dy.
template <class A>
DTRAIN_HOST_DEVICE inline void swiglu_grad(A a, A u, A s, A dy, A& da, A& du) {
  du = dy * a * s;
  da = dy * u * s * (A(1) + a * (A(1) - s));
}

// Rotary position embedding (RoFormer, Su et al. 2021; the "rotate half"
// layout of GPT-NeoX and Hugging Face's LLaMA): within a head of width d,
// element i < d/2 and element i + d/2 turn by the angle p * f_i at position p,
// with f_i = theta^(-2i/d). The frequency is rounded once to A, and the angle
// is A's product of the position and f_i (as PyTorch's fp32 tables are made),
// so both backends turn by the same angles.
//
// LLaMA 3.1's frequency scaling (transformers' "llama3" rope_type,
// _compute_llama3_parameters) stretches the long wavelengths for a longer
// context: with L = original_context, a frequency whose wavelength 2 pi / f
// exceeds L / low_freq_factor is divided by `factor`, one shorter than
// L / high_freq_factor is kept, and between the two it is interpolated,
// f ((1 - s) / factor + s) with s = (L / wavelength - low) / (high - low).
// factor 1: no scaling.
struct Rope {
  double theta = 10000;
  double factor = 1, low_freq_factor = 1, high_freq_factor = 4, original_context = 8192;
  constexpr Rope() = default;
  // An unscaled rope of base theta (implicit: a number is its base).
  DTRAIN_HOST_DEVICE constexpr Rope(double base) : theta(base) {}  // NOLINT(google-explicit-constructor)
  constexpr Rope(double base, double f, double low, double high, double original)
      : theta(base), factor(f), low_freq_factor(low), high_freq_factor(high), original_context(original) {}
  constexpr bool scaled() const { return factor != 1; }
};

template <class A>
DTRAIN_HOST_DEVICE inline A rope_frequency(const Rope& r, int64_t i, int64_t d) {
  double f = 1.0 / pow(r.theta, static_cast<double>(2 * i) / static_cast<double>(d));
  if (r.factor != 1) {
    const double wavelength = 2 * 3.14159265358979323846 / f;
    if (wavelength > r.original_context / r.low_freq_factor) {
      f /= r.factor;
    } else if (wavelength >= r.original_context / r.high_freq_factor) {
      const double s = (r.original_context / wavelength - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
      f = (1 - s) * f / r.factor + s * f;
    }
  }
  return static_cast<A>(f);
}
template <class A>
DTRAIN_HOST_DEVICE inline A rope_angle(int64_t position, A frequency) {
  return static_cast<A>(position) * frequency;
}
// (x0, x1) turned by the angle whose cosine and sine are c and s (sign -1: back).
template <class A>
DTRAIN_HOST_DEVICE inline void rope_turn(A& x0, A& x1, A c, A s) {
  const A y0 = x0 * c - x1 * s, y1 = x1 * c + x0 * s;
  x0 = y0;
  x1 = y1;
}

}  // namespace dtrain::math
