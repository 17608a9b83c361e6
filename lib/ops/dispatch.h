// Helpers of the ops layer's CPU side: device and dtype checks, and the dtype
// dispatch (f32, f64, bf16 for ops that have bf16 kernels).
#pragma once

#include <initializer_list>
#include <vector>

#include "core/bf16.h"
#include "core/exec.h"
#include "core/tensor.h"

namespace dtrain::ops {

// An op on a CUDA Exec runs its CUDA implementation (lib/ops/cuda/*.cpp, over
// lib/kernels/cuda; built with the backend only) and returns:
//   DTRAIN_CUDA_OP(ex, cuda_ops::gelu_forward(ex, x, y));
// In a build without the backend no Exec is on a GPU (its Storage cannot be
// made), and check_on's refusal below is what remains.
#if DTRAIN_HAVE_CUDA
#define DTRAIN_CUDA_OP(ex, ...) \
  do {                          \
    if ((ex).on_cuda()) {       \
      __VA_ARGS__;              \
      return;                   \
    }                           \
  } while (0)
#else
#define DTRAIN_CUDA_OP(ex, ...) \
  do {                          \
  } while (0)
#endif

inline void check_on(const Exec& ex, const char* op, std::initializer_list<Tensor> ts) {
  for (const Tensor& t : ts) ex.check(t, op);
  if (!ex.device.is_cpu()) throw InternalError(fmt::format("{}: no kernel for {}", op, ex.device.str()));
}
inline void check_on(const Exec& ex, const char* op, const std::vector<Tensor>& ts) {
  for (const Tensor& t : ts) ex.check(t, op);
  if (!ex.device.is_cpu()) throw InternalError(fmt::format("{}: no kernel for {}", op, ex.device.str()));
}

// Every tensor in `others` has y's dtype.
inline void check_same(const Tensor& y, const char* op, std::initializer_list<Tensor> others) {
  for (const Tensor& t : others)
    if (t.defined() && t.dtype() != y.dtype())
      throw InternalError(fmt::format("{}: {} operand with a {} output", op, dtype_name(t.dtype()),
                                      dtype_name(y.dtype())));
}

// f32, f64 and bf16.
template <class F>
decltype(auto) dispatch_act(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    case DType::bf16: return f(bf16{});
    default: throw InternalError(fmt::format("{}: no {} kernel", op, dtype_name(t)));
  }
}

// f32 and f64 (ops without bf16 kernels yet).
template <class F>
decltype(auto) dispatch_full(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    default: throw InternalError(fmt::format("{}: no {} kernel", op, dtype_name(t)));
  }
}

}  // namespace dtrain::ops
