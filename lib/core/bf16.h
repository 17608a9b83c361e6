// bfloat16: the upper 16 bits of an IEEE float (8 exponent bits, 7 mantissa
// bits). It is the storage type of bf16 mixed precision: weights' compute
// copy, activations and their gradients; arithmetic is always done in float.
//
// Written once for host and device code (the CUDA kernels include this header
// too), so that the CPU and the GPU round every value the same way: to nearest,
// ties to even, NaN kept a (quiet) NaN. That is what PyTorch, oneDNN, AMX's
// VCVTNE2PS2BF16 and CUDA's __float2bfloat16_rn do, so the CPU path is a
// bit-exact reference for the GPU's conversions.
#pragma once

#include <cstdint>
#include <cstring>

#include "core/host_device.h"

namespace dtrain {

DTRAIN_HOST_DEVICE inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

DTRAIN_HOST_DEVICE inline float float_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// float -> bf16 bits, rounded to nearest even; NaN stays NaN (quiet bit set).
// Branch-free (both results, then a select), so that loops converting with it
// vectorise: with an early return for NaN, GCC left every bf16 elementwise
// kernel (GELU, softmax, layer norm, ...) scalar.
DTRAIN_HOST_DEVICE inline uint16_t bf16_bits_from_float(float f) {
  const uint32_t u = float_bits(f);
  const uint32_t nan = (u >> 16) | 0x0040u;
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  return static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

DTRAIN_HOST_DEVICE inline float float_from_bf16_bits(uint16_t b) {
  return float_from_bits(static_cast<uint32_t>(b) << 16);
}

// A bf16 value. Converts from float by rounding (explicitly) and to float
// exactly (implicitly), so templates written for float compute in float when
// instantiated for bf16 storage: `float v = x[i]; ... y[i] = bf16(v);`.
struct bf16 {
  uint16_t bits = 0;

  bf16() = default;
  DTRAIN_HOST_DEVICE explicit bf16(float f) : bits(bf16_bits_from_float(f)) {}
  DTRAIN_HOST_DEVICE explicit bf16(int i) : bits(bf16_bits_from_float(static_cast<float>(i))) {}
  DTRAIN_HOST_DEVICE explicit bf16(double d) : bits(bf16_bits_from_float(static_cast<float>(d))) {}
  DTRAIN_HOST_DEVICE operator float() const { return float_from_bf16_bits(bits); }

  DTRAIN_HOST_DEVICE static bf16 from_bits(uint16_t b) {
    bf16 r;
    r.bits = b;
    return r;
  }
};
static_assert(sizeof(bf16) == 2, "bf16 must be two bytes");

// The type arithmetic on T is carried out in: float for bf16 and float,
// double for double (the finite-difference checks).
template <class T> struct compute_type { using type = T; };
template <> struct compute_type<bf16> { using type = float; };
template <class T> using compute_t = typename compute_type<T>::type;

}  // namespace dtrain
