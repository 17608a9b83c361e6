// Minimal helpers of the cuBLASLt and attention GPU tests: random host
// tensors, uploads in any dtype, downloads as double, and the normalised error
// max |got - want| / max |want| the tolerances are stated in.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "core/bf16.h"
#include "core/device.h"
#include "core/tensor.h"

namespace dtrain::test {

// Uniform in [-1, 1) from `seed`, stored in `dtype` on the host (bf16 rounded).
inline Tensor random_host(const Shape& s, DType dtype, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  Tensor t = Tensor::empty(s, dtype);
  for (int64_t i = 0; i < t.numel(); ++i) {
    const float v = u(rng);
    switch (dtype) {
      case DType::f32: t.data<float>()[i] = v; break;
      case DType::f64: t.data<double>()[i] = v; break;
      case DType::bf16: t.data<bf16>()[i] = bf16(v); break;
      default: break;
    }
  }
  return t;
}

// A device copy of a host tensor (complete when this returns).
inline Tensor upload(const Tensor& h, Device d) {
  Tensor t = Tensor::empty(h.shape(), h.dtype(), d);
  t.copy_from(h);
  gpu::device_sync();
  return t;
}

// Every element as double (device tensors are downloaded after the device is idle).
inline std::vector<double> values(const Tensor& t) {
  Tensor h = t.to_host();
  std::vector<double> v(static_cast<size_t>(h.numel()));
  for (int64_t i = 0; i < h.numel(); ++i) {
    switch (h.dtype()) {
      case DType::f32: v[i] = h.data<float>()[i]; break;
      case DType::f64: v[i] = h.data<double>()[i]; break;
      case DType::bf16: v[i] = static_cast<float>(h.data<bf16>()[i]); break;
      default: break;
    }
  }
  return v;
}

// max |got - want| / max |want| (NaN in got gives infinity).
inline double norm_err(const std::vector<double>& got, const std::vector<double>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::isnan(got[i])) return INFINITY;
    num = std::max(num, std::abs(got[i] - want[i]));
    den = std::max(den, std::abs(want[i]));
  }
  return num / std::max(den, 1e-30);
}

// The same bytes (for determinism: two runs bitwise equal).
inline bool same_bits(const Tensor& a, const Tensor& b) {
  Tensor x = a.to_host(), y = b.to_host();
  return x.bytes() == y.bytes() && std::memcmp(x.raw(), y.raw(), x.bytes()) == 0;
}

}  // namespace dtrain::test
