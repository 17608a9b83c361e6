// Helpers for tests that run an op on the GPU and on the CPU and compare:
// seeded random host tensors, uploads and downloads (synchronous: they wait
// for the whole device), outputs poisoned with NaN before a GPU run, the
// normalised error ||got - want|| / ||want|| (ggml's test-backend-ops
// measure; a NaN or inf where the reference is finite makes it infinite), and
// bitwise equality. Self-contained: only core headers.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>

#include "core/device.h"
#include "core/exec.h"
#include "core/rng.h"
#include "core/tensor.h"

namespace dtrain::cudatest {

// Element i of a host tensor of any numeric dtype, as a double.
inline double at(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DType::f32: return t.data<float>()[i];
    case DType::f64: return t.data<double>()[i];
    case DType::bf16: return float(t.data<bf16>()[i]);
    case DType::i32: return t.data<int32_t>()[i];
    case DType::u8: return t.data<uint8_t>()[i];
    default: throw InternalError("cudatest::at: unsupported dtype");
  }
}

inline void set(const Tensor& t, int64_t i, double v) {
  switch (t.dtype()) {
    case DType::f32: t.data<float>()[i] = static_cast<float>(v); return;
    case DType::f64: t.data<double>()[i] = v; return;
    case DType::bf16: t.data<bf16>()[i] = bf16(static_cast<float>(v)); return;
    case DType::i32: t.data<int32_t>()[i] = static_cast<int32_t>(v); return;
    case DType::u8: t.data<uint8_t>()[i] = static_cast<uint8_t>(v); return;
    default: throw InternalError("cudatest::set: unsupported dtype");
  }
}

// A host tensor of normal(offset, scale) values drawn from `seed`.
inline Tensor random(const Shape& s, DType dt, uint64_t seed, double scale = 1.0, double offset = 0.0) {
  Tensor t = Tensor::empty(s, dt);
  CounterRng rng(seed);
  for (int64_t i = 0; i < t.numel(); ++i) set(t, i, offset + scale * rng.normal());
  return t;
}

// A host int32 tensor of ids in [0, n).
inline Tensor random_ids(const Shape& s, int64_t n, uint64_t seed) {
  Tensor t = Tensor::empty(s, DType::i32);
  CounterRng rng(seed);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<int32_t>()[i] = static_cast<int32_t>(rng.below(static_cast<uint64_t>(n)));
  return t;
}

// A device copy of a host tensor (or a host copy of a host tensor when ex is the CPU's).
inline Tensor upload(const Exec& ex, const Tensor& host) {
  Tensor d = Tensor::empty(host.shape(), host.dtype(), ex.device);
  d.copy_from(host);  // waits for the device first
  return d;
}

inline Tensor download(const Tensor& dev) {
  Tensor h = Tensor::empty(dev.shape(), dev.dtype());
  h.copy_from(dev);  // waits for all queued work
  return h;
}

// A device tensor whose every byte is 0xff (NaN for f32, f64 and bf16).
inline Tensor poisoned(const Exec& ex, const Shape& s, DType dt) {
  Tensor d = Tensor::empty(s, dt, ex.device);
  gpu::memset(d.raw(), 0xff, d.bytes(), nullptr);
  return d;
}

// An independent copy of a tensor on the same device.
inline Tensor clone(const Tensor& t) {
  Tensor c = Tensor::empty(t.shape(), t.dtype(), t.device());
  c.copy_from(t);
  return c;
}

// ||got - want|| / ||want|| over the first n elements (all when n < 0); 0
// for two zero tensors; infinite where got is not finite and want is.
inline double nerr(const Tensor& got, const Tensor& want, int64_t n = -1) {
  const Tensor g = got.device().is_cpu() ? got : download(got);
  const Tensor w = want.device().is_cpu() ? want : download(want);
  if (n < 0) n = std::min(g.numel(), w.numel());
  double d2 = 0, w2 = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double a = at(g, i), b = at(w, i);
    if (!std::isfinite(a) && std::isfinite(b)) return std::numeric_limits<double>::infinity();
    d2 += (a - b) * (a - b);
    w2 += b * b;
  }
  if (w2 == 0) return d2 == 0 ? 0.0 : std::numeric_limits<double>::infinity();
  return std::sqrt(d2 / w2);
}

// Where got and want differ most, for a failing check's log:
// "element i (row r of `cols`): got a, want b".
inline std::string worst(const Tensor& got, const Tensor& want, int64_t cols = 1) {
  const Tensor g = got.device().is_cpu() ? got : download(got);
  const Tensor w = want.device().is_cpu() ? want : download(want);
  const int64_t n = std::min(g.numel(), w.numel());
  int64_t at_i = 0;
  double most = -1;
  for (int64_t i = 0; i < n; ++i) {
    const double d = std::fabs(at(g, i) - at(w, i));
    if (!(d <= most)) most = d, at_i = i;  // NaN counts as the worst
  }
  std::ostringstream o;
  o.precision(9);
  o << "element " << at_i << " (row " << at_i / cols << "): got " << at(g, at_i) << ", want " << at(w, at_i);
  return o.str();
}

// How many of the first n elements differ in their bits (any devices).
inline int64_t bit_diffs(const Tensor& a, const Tensor& b, int64_t n = -1) {
  const Tensor x = a.device().is_cpu() ? a : download(a);
  const Tensor y = b.device().is_cpu() ? b : download(b);
  if (x.dtype() != y.dtype()) return std::max(x.numel(), y.numel());
  const bool whole = n < 0;  // then a difference in length counts too
  if (whole) n = std::min(x.numel(), y.numel());
  const size_t es = dtype_size(x.dtype());
  const char* p = static_cast<const char*>(x.raw());
  const char* q = static_cast<const char*>(y.raw());
  int64_t d = 0;
  for (int64_t i = 0; i < n; ++i) d += std::memcmp(p + i * es, q + i * es, es) != 0;
  if (whole) d += std::abs(x.numel() - y.numel());
  return d;
}

}  // namespace dtrain::cudatest
