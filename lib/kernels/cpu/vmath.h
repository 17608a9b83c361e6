// Vectorisable exp and tanh for the elementwise kernels. glibc's expf/tanhf
// are scalar calls unless the whole build uses -ffast-math, which would make
// every loop that calls them (softmax rows, GELU) run one element at a time.
// These are branch-free inline versions that GCC vectorises under
// `#pragma omp simd`: exp to about 2 ulp (Cephes' polynomial), and tanh with
// an absolute error of about 1e-7, which is what GELU needs (it adds tanh to 1).
// The double overloads call the C library: fp64 is for gradient checks and
// PyTorch fixtures, where exactness matters more than speed.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/bf16.h"

namespace dtrain::cpu {

inline float exp_fast(float x) {
  // exp(x) = 2^n * exp(r), n = round(x / ln2), |r| <= ln2 / 2.
  x = std::min(std::max(x, -87.0f), 88.0f);  // 2^n stays a normal float (not fmin:
                                            // its NaN rules do not vectorise)
  // Adding 1.5 * 2^23 rounds to the nearest integer (floorf does not vectorise
  // without -fno-trapping-math), and leaves that integer in the low bits of
  // `shifted`: the exponent below is read from those bits, not converted from
  // n, because a NaN x (a diverging run) passes the clamp and converting NaN to
  // int is undefined (UBSan stopped such runs; the bits give a NaN result).
  const float shifted = x * 1.44269504088896341f + 12582912.0f;
  float n = shifted - 12582912.0f;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // 0x4B400000 is 1.5 * 2^23's bits; unsigned arithmetic: no overflow for any bits.
  const uint32_t e = (std::bit_cast<uint32_t>(shifted) - 0x4B400000u + 127u) << 23;
  return p * std::bit_cast<float>(e);
}

inline double exp_fast(double x) { return std::exp(x); }

inline float tanh_fast(float x) { return 1.0f - 2.0f / (exp_fast(2.0f * x) + 1.0f); }

inline double tanh_fast(double x) { return std::tanh(x); }

// Element loads and rounded stores that GCC vectorises for bf16 storage too:
// `y[i] = bf16(v)` copies a bf16 object (an aggregate), which the vectoriser
// refuses ("more than one data ref"), so a loop written that way runs one
// element at a time; these move the 16 bits themselves. Same values as the
// conversions of core/bf16.h.
template <class T>
inline compute_t<T> load_elem(const T& x) {
  return x;
}
inline float load_elem(const bf16& x) { return float_from_bf16_bits(x.bits); }
template <class T>
inline void store_elem(T& y, compute_t<T> v) {
  y = v;
}
inline void store_elem(bf16& y, float v) { y.bits = bf16_bits_from_float(v); }

// max(x[0], ..., x[n-1]) for n >= 1, vectorised: GCC leaves a max reduction
// scalar (std::max's NaN rule is not vmaxps's), so this keeps 64 bytes of
// lanes in a GCC vector. The result does not depend on the lane order (max
// is exact).
template <class T>
inline T max_of(const T* x, int64_t n) {
  typedef T Vec __attribute__((vector_size(64)));
  constexpr int64_t kLanes = 64 / sizeof(T);
  T m = x[0];
  int64_t j = 0;
  if (n >= kLanes) {
    Vec acc, v;
    std::memcpy(&acc, x, sizeof acc);
    for (j = kLanes; j + kLanes <= n; j += kLanes) {
      std::memcpy(&v, x + j, sizeof v);
      acc = acc > v ? acc : v;
    }
    for (int64_t l = 0; l < kLanes; ++l) m = m > acc[l] ? m : acc[l];
  }
  for (; j < n; ++j) m = m > x[j] ? m : x[j];
  return m;
}

// The maximum of n >= 1 bf16 values, as a float: 16 lanes at a time, each
// widened to fp32 by a shift (exact), as above.
inline float max_of(const bf16* x, int64_t n) {
  typedef float Vec __attribute__((vector_size(64)));
  typedef uint32_t Wide __attribute__((vector_size(64)));
  typedef uint16_t Half __attribute__((vector_size(32)));
  constexpr int64_t kLanes = 16;
  auto load = [x](int64_t at) {
    Half h;
    std::memcpy(&h, x + at, sizeof h);
    const Wide w = __builtin_convertvector(h, Wide) << 16;
    Vec f;
    std::memcpy(&f, &w, sizeof f);
    return f;
  };
  float m = x[0];
  int64_t j = 0;
  if (n >= kLanes) {
    Vec acc = load(0);
    for (j = kLanes; j + kLanes <= n; j += kLanes) {
      const Vec v = load(j);
      acc = acc > v ? acc : v;
    }
    for (int64_t l = 0; l < kLanes; ++l) m = m > acc[l] ? m : acc[l];
  }
  for (; j < n; ++j) {
    const float v = x[j];
    m = m > v ? m : v;
  }
  return m;
}

}  // namespace dtrain::cpu
