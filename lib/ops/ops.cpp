// The CPU side of the ops layer: checks, then a dtype dispatch to the kernels
// of lib/kernels/cpu. Each op names itself in its errors.
#include "ops/ops.h"


#include <algorithm>
#include <cmath>

#include "core/device.h"

#include "kernels/cpu/attention.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/dropout.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/gelu.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/gemm_bf16.h"
#include "kernels/cpu/layernorm.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/relu.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/vmath.h"
#include "ops/dispatch.h"
#if DTRAIN_HAVE_CUDA
#include "ops/cuda/blas.h"
#include "ops/cuda/cnn_ops.h"
#include "ops/cuda/gpt_ops.h"
#endif

namespace dtrain::ops {

DType compute_dtype(DType act) { return act == DType::f64 ? DType::f64 : DType::f32; }

// ---------------------------------------------------------------- products

bool fused_epilogue(const Exec& ex, Epilogue e, DType act, int64_t n) {
  if (e == Epilogue::none || !ex.on_cuda()) return false;
  if (e == Epilogue::bias || e == Epilogue::bias_grad) return act == DType::f32 || act == DType::bf16;
  return act == DType::bf16 && n % 8 == 0;
}

MatmulPlan::MatmulPlan(const Exec& ex, const Gemm& max, DType ab, DType c, Epilogue e)
    : max_(max), ab_(ab), c_(c), ep_(e), planned_(true) {
  const bool ok = (ab == c && (ab == DType::f32 || ab == DType::f64 || ab == DType::bf16)) ||
                  (ab == DType::bf16 && c == DType::f32 && (e == Epilogue::none || e == Epilogue::bias_grad));
  if (!ok)
    throw InternalError(fmt::format("matmul: no {} x {} -> {} product{}", dtype_name(ab),
                                    dtype_name(ab), dtype_name(c), e == Epilogue::none ? "" : " with an epilogue"));
  if (e == Epilogue::bias_grad && (!max.trans_a || max.trans_b))
    throw InternalError("matmul: the bias gradient epilogue on a product other than op(A) = A^T, op(B) = B");
  fused_ = fused_epilogue(ex, e, c, max.n);
#if DTRAIN_HAVE_CUDA
  if (ex.on_cuda()) {
    try {
      lt_ = cuda_ops::plan_matmul(ex, max, ab, c, fused_ ? e : Epilogue::none);
    } catch (const RuntimeError&) {
      // No cuBLASLt algorithm for BGRADB here (its support varies by types
      // and version): the unfused ops instead, the same sum.
      if (!fused_ || e != Epilogue::bias_grad) throw;
      fused_ = false;
      lt_ = cuda_ops::plan_matmul(ex, max, ab, c, Epilogue::none);
    }
    return;
  }
#endif
  if (!ex.device.is_cpu()) throw InternalError(fmt::format("matmul: no kernel for {}", ex.device.str()));
}

namespace {

// The first n elements of t (t itself when it has exactly n).
Tensor head(const Tensor& t, int64_t n) { return t.numel() == n ? t : t.flat_range(0, n); }

}  // namespace

void MatmulPlan::run(const Exec& ex, const Gemm& g, const Tensor& a, const Tensor& b,
                     const Tensor& c, double alpha, double beta, const Tensor& bias, const Tensor& aux) const {
  DTRAIN_CHECK(planned_, "matmul: run before plan");
  DTRAIN_CHECK(g.trans_a == max_.trans_a && g.trans_b == max_.trans_b && g.m <= max_.m &&
                   g.n <= max_.n && g.k <= max_.k,
               "matmul: ({}, {}, {}) beyond the planned ({}, {}, {})", g.m, g.n, g.k, max_.m,
               max_.n, max_.k);
  DTRAIN_CHECK(a.numel() >= g.m * g.k && b.numel() >= g.k * g.n && c.numel() >= g.m * g.n,
               "matmul: operands of {}, {}, {} elements for ({}, {}, {})", a.numel(), b.numel(),
               c.numel(), g.m, g.n, g.k);
  if (ep_ == Epilogue::none) return product(ex, g, a, b, c, alpha, beta, {}, {});
  if (ep_ == Epilogue::bias_grad) {
    DTRAIN_CHECK(bias.defined() && bias.numel() == g.m && bias.dtype() == c_,
                 "matmul: the bias gradient is {} for {} rows", bias.defined() ? bias.shape().str() : "missing", g.m);
    if (fused_) return product(ex, g, a, b, c, alpha, beta, bias, {});
    product(ex, g, a, b, c, alpha, beta, {}, {});
    zero(ex, bias);
    sum_rows_acc(ex, head(a, g.k * g.m).view(Shape{g.k, g.m}), bias);  // A stored (k, m)
    return;
  }
  const bool wants_bias = ep_ == Epilogue::bias || ep_ == Epilogue::bias_gelu;
  const bool wants_aux = ep_ != Epilogue::bias;
  DTRAIN_CHECK(alpha == 1.0 && beta == 0.0, "matmul: an epilogue with alpha {} and beta {}", alpha, beta);
  DTRAIN_CHECK(!wants_bias || (bias.defined() && bias.numel() == g.n && bias.dtype() == c_),
               "matmul: the epilogue's bias is {} for {} outputs", bias.defined() ? bias.shape().str() : "missing",
               g.n);
  DTRAIN_CHECK(!wants_aux || (aux.defined() && aux.numel() >= g.m * g.n && aux.dtype() == c_),
               "matmul: the epilogue's aux is {} for ({}, {})", aux.defined() ? aux.shape().str() : "missing", g.m,
               g.n);
  if (fused_) return product(ex, g, a, b, c, 1.0, 0.0, bias, aux);
  // The same result from the unfused ops (the CPU's path, and the GPU's where not fused).
  const int64_t mn = g.m * g.n;
  switch (ep_) {
    case Epilogue::bias:
      broadcast_rows(ex, bias, head(c, mn));
      product(ex, g, a, b, c, 1.0, 1.0, {}, {});
      return;
    case Epilogue::gelu:
    case Epilogue::bias_gelu:
      if (wants_bias) broadcast_rows(ex, bias, head(aux, mn));
      product(ex, g, a, b, aux, 1.0, wants_bias ? 1.0 : 0.0, {}, {});
      gelu_forward(ex, head(aux, mn), head(c, mn));
      return;
    case Epilogue::dgelu:
      product(ex, g, a, b, c, 1.0, 0.0, {}, {});
      gelu_backward(ex, head(aux, mn), head(c, mn), head(c, mn));
      return;
    case Epilogue::none:
    case Epilogue::bias_grad: break;
  }
}

void MatmulPlan::product(const Exec& ex, const Gemm& g, const Tensor& a, const Tensor& b, const Tensor& c,
                         double alpha, double beta, const Tensor& bias, const Tensor& aux) const {
  DTRAIN_CUDA_OP(ex, DTRAIN_CHECK(lt_, "matmul: planned for the CPU, run on {}", ex.device.str());
                 cuda_ops::matmul(ex, *lt_, g, a, b, c, alpha, beta, bias, aux));
  check_on(ex, "matmul", {a, b, c});
  const int64_t lda = g.trans_a ? g.m : g.k, ldb = g.trans_b ? g.k : g.n, ldc = g.n;
  if (ab_ == DType::bf16) {
    if (c_ == DType::f32)
      cpu::gemm_bf16(g.trans_a, g.trans_b, g.m, g.n, g.k, static_cast<float>(alpha),
                     a.data<bf16>(), lda, b.data<bf16>(), ldb, static_cast<float>(beta),
                     c.data<float>(), ldc);
    else
      cpu::gemm_bf16(g.trans_a, g.trans_b, g.m, g.n, g.k, static_cast<float>(alpha),
                     a.data<bf16>(), lda, b.data<bf16>(), ldb, static_cast<float>(beta),
                     c.data<bf16>(), ldc);
    return;
  }
  dispatch_full(ab_, "matmul", [&](auto t) {
    using T = decltype(t);
    cpu::gemm<T>(g.trans_a, g.trans_b, g.m, g.n, g.k, static_cast<T>(alpha), a.data<T>(), lda,
                 b.data<T>(), ldb, static_cast<T>(beta), c.data<T>(), ldc);
  });
}

std::string matmul_path(const Exec& ex, DType act) {
#if DTRAIN_HAVE_CUDA
  if (ex.on_cuda()) return cuda_ops::matmul_path(ex, act);
#endif
  if (!ex.device.is_cpu()) return ex.device.str();
  if (act == DType::bf16) return fmt::format("{} matmul", cpu::gemm_bf16_path_name());
  return fmt::format("{} sgemm", cpu::gemm_backend_name());
}

// ---------------------------------------------------------------- elementwise

void zero(const Exec& ex, const Tensor& x) {
  if (ex.on_cuda()) {
    ex.check(x, "zero");
    gpu::memset(x.raw(), 0, x.bytes(), ex.stream);
    return;
  }
  check_on(ex, "zero", {x});
  cpu::zero_bytes(x.raw(), static_cast<int64_t>(x.bytes()));
}

void copy(const Exec& ex, const Tensor& src, const Tensor& dst) {
  DTRAIN_CHECK(src.numel() == dst.numel() && src.dtype() == dst.dtype(), "copy {} {} into {} {}",
               dtype_name(src.dtype()), src.shape().str(), dtype_name(dst.dtype()), dst.shape().str());
  if (ex.on_cuda()) {
    gpu::memcpy(dst.raw(), src.raw(), dst.bytes(), ex.stream);
    return;
  }
  check_on(ex, "copy", {src, dst});
  Tensor d = dst;  // a handle: the copy writes dst's storage
  d.copy_from(src);
}

void transpose_blocks(const Exec& ex, const Tensor& src, int64_t a, int64_t b, const Tensor& dst) {
  DTRAIN_CHECK(a > 0 && b > 0 && src.numel() == dst.numel() && src.dtype() == dst.dtype() &&
                   src.numel() % (a * b) == 0,
               "transpose_blocks: {} {} as ({}, {}, n) into {} {}", dtype_name(src.dtype()),
               src.shape().str(), a, b, dtype_name(dst.dtype()), dst.shape().str());
  const size_t row = dst.bytes() / static_cast<size_t>(a * b);  // one block of n elements
  const auto* s = static_cast<const char*>(src.raw());
  auto* d = static_cast<char*>(dst.raw());
  if (ex.on_cuda()) {
    // a * b copies on the stream: a handful per collective (a = tp ranks, b =
    // the micro-batch), each a whole sequence slice, so no kernel of its own.
    ex.check(src, "transpose_blocks");
    ex.check(dst, "transpose_blocks");
    for (int64_t i = 0; i < a; ++i)
      for (int64_t j = 0; j < b; ++j)
        gpu::memcpy(d + static_cast<size_t>(j * a + i) * row, s + static_cast<size_t>(i * b + j) * row, row,
                    ex.stream);
    return;
  }
  check_on(ex, "transpose_blocks", {src, dst});
  cpu::transpose_blocks(s, a, b, row, d);
}

void add(const Exec& ex, const Tensor& a, const Tensor& b, const Tensor& y) {
  DTRAIN_CUDA_OP(ex, cuda_ops::add(ex, a, b, y));
  check_on(ex, "add", {a, b, y});
  check_same(y, "add", {a, b});
  dispatch_act(y.dtype(), "add", [&](auto t) {
    using T = decltype(t);
    cpu::add<T>(a.data<T>(), b.data<T>(), y.numel(), y.data<T>());
  });
}

void scale(const Exec& ex, const Tensor& x, double s) {
  DTRAIN_CUDA_OP(ex, cuda_ops::scale(ex, x, s));
  check_on(ex, "scale", {x});
  dispatch_act(x.dtype(), "scale", [&](auto t) {
    using T = decltype(t);
    using A = compute_t<T>;
    T* p = x.data<T>();
    const A k = static_cast<A>(s);
    const int64_t n = x.numel();
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) p[i] = T(A(p[i]) * k);
  });
}

void fill_columns(const Exec& ex, const Tensor& x, int64_t from, double value) {
  const int64_t v = x.rank() > 0 ? x.shape()[-1] : 0;
  DTRAIN_CHECK(x.rank() > 0 && from >= 0 && from <= v, "fill_columns: columns from {} of {}", from, x.shape().str());
  if (from == v || x.numel() == 0) return;
  DTRAIN_CUDA_OP(ex, cuda_ops::fill_columns(ex, x, from, value));
  check_on(ex, "fill_columns", {x});
  dispatch_act(x.dtype(), "fill_columns", [&](auto t) {
    using T = decltype(t);
    T* p = x.data<T>();
    const T k = T(static_cast<compute_t<T>>(value));
    const int64_t rows = x.numel() / v;
#pragma omp parallel for schedule(static) if (rows * (v - from) > 65536)
    for (int64_t r = 0; r < rows; ++r) std::fill(p + r * v + from, p + (r + 1) * v, k);
  });
}

void convert(const Exec& ex, const Tensor& src, const Tensor& dst) {
  DTRAIN_CUDA_OP(ex, cuda_ops::convert(ex, src, dst));
  check_on(ex, "convert", {src, dst});
  DTRAIN_CHECK(src.numel() == dst.numel(), "convert: {} elements into {}", src.numel(), dst.numel());
  if (src.dtype() == dst.dtype()) {
    if (src.raw() != dst.raw()) Tensor(dst).copy_from(src);
    return;
  }
  if (src.dtype() == DType::f32 && dst.dtype() == DType::bf16)
    return cpu::convert(src.data<float>(), src.numel(), dst.data<bf16>());
  if (src.dtype() == DType::bf16 && dst.dtype() == DType::f32)
    return cpu::convert(src.data<bf16>(), src.numel(), dst.data<float>());
  throw InternalError(fmt::format("convert: no {} -> {} conversion", dtype_name(src.dtype()),
                                  dtype_name(dst.dtype())));
}

void broadcast_rows(const Exec& ex, const Tensor& b, const Tensor& y) {
  DTRAIN_CUDA_OP(ex, cuda_ops::broadcast_rows(ex, b, y));
  check_on(ex, "broadcast_rows", {b, y});
  const int64_t m = b.numel();
  DTRAIN_CHECK(m > 0 && y.numel() % m == 0, "broadcast_rows: {} into {}", b.shape().str(), y.shape().str());
  dispatch_act(y.dtype(), "broadcast_rows", [&](auto t) {
    using T = decltype(t);
    cpu::broadcast_rows<T>(b.data<T>(), y.numel() / m, m, y.data<T>());
  });
}

void add_rows(const Exec& ex, const Tensor& b, const Tensor& y) {
  DTRAIN_CUDA_OP(ex, cuda_ops::add_rows(ex, b, y));
  check_on(ex, "add_rows", {b, y});
  const int64_t m = b.numel();
  DTRAIN_CHECK(m > 0 && y.numel() % m == 0, "add_rows: {} into {}", b.shape().str(), y.shape().str());
  dispatch_act(y.dtype(), "add_rows", [&](auto t) {
    using T = decltype(t);
    cpu::add_rows<T>(b.data<T>(), y.numel() / m, m, y.data<T>());
  });
}

void sum_rows_acc(const Exec& ex, const Tensor& x, const Tensor& acc) {
  DTRAIN_CUDA_OP(ex, cuda_ops::sum_rows_acc(ex, x, acc));
  check_on(ex, "sum_rows_acc", {x, acc});
  const int64_t m = acc.numel();
  DTRAIN_CHECK(m > 0 && x.numel() % m == 0, "sum_rows_acc: {} into {}", x.shape().str(), acc.shape().str());
  dispatch_act(x.dtype(), "sum_rows_acc", [&](auto t) {
    using T = decltype(t);
    cpu::sum_rows_acc<T>(x.data<T>(), x.numel() / m, m, acc.data<compute_t<T>>());
  });
}

void gelu_forward(const Exec& ex, const Tensor& x, const Tensor& y) {
  DTRAIN_CUDA_OP(ex, cuda_ops::gelu_forward(ex, x, y));
  check_on(ex, "gelu", {x, y});
  check_same(y, "gelu", {x});
  dispatch_act(x.dtype(), "gelu", [&](auto t) {
    using T = decltype(t);
    cpu::gelu_forward<T>(x.data<T>(), x.numel(), y.data<T>());
  });
}

void gelu_backward(const Exec& ex, const Tensor& x, const Tensor& dy, const Tensor& dx) {
  DTRAIN_CUDA_OP(ex, cuda_ops::gelu_backward(ex, x, dy, dx));
  check_on(ex, "gelu_backward", {x, dy, dx});
  check_same(dx, "gelu_backward", {x, dy});
  dispatch_act(x.dtype(), "gelu_backward", [&](auto t) {
    using T = decltype(t);
    cpu::gelu_backward<T>(x.data<T>(), dy.data<T>(), x.numel(), dx.data<T>());
  });
}

void swiglu_forward(const Exec& ex, const Tensor& f, const Tensor& g) {
  DTRAIN_CUDA_OP(ex, cuda_ops::swiglu_forward(ex, f, g));
  check_on(ex, "swiglu", {f, g});
  check_same(g, "swiglu", {f});
  const int64_t h = g.shape()[-1], n = g.numel() / h;
  DTRAIN_CHECK(f.numel() == 2 * g.numel() && f.shape()[-1] == 2 * h, "swiglu: {} into {}", f.shape().str(),
               g.shape().str());
  dispatch_act(f.dtype(), "swiglu", [&](auto t) {
    using T = decltype(t);
    cpu::swiglu_forward<T>(f.data<T>(), n, h, g.data<T>());
  });
}

void swiglu_backward(const Exec& ex, const Tensor& f, const Tensor& dg, const Tensor& df) {
  DTRAIN_CUDA_OP(ex, cuda_ops::swiglu_backward(ex, f, dg, df));
  check_on(ex, "swiglu_backward", {f, dg, df});
  check_same(df, "swiglu_backward", {f, dg});
  const int64_t h = dg.shape()[-1], n = dg.numel() / h;
  DTRAIN_CHECK(f.numel() == 2 * dg.numel() && df.numel() == f.numel() && f.shape()[-1] == 2 * h,
               "swiglu_backward: {} and {} into {}", f.shape().str(), dg.shape().str(), df.shape().str());
  dispatch_act(f.dtype(), "swiglu_backward", [&](auto t) {
    using T = decltype(t);
    cpu::swiglu_backward<T>(f.data<T>(), dg.data<T>(), n, h, df.data<T>());
  });
}

void relu_forward(const Exec& ex, const Tensor& x, const Tensor& y) {
  DTRAIN_CUDA_OP(ex, cuda_ops::relu_forward(ex, x, y));
  check_on(ex, "relu", {x, y});
  check_same(y, "relu", {x});
  dispatch_act(x.dtype(), "relu", [&](auto t) {
    using T = decltype(t);
    cpu::relu_forward<T>(x.data<T>(), x.numel(), y.data<T>());
  });
}

void relu_backward(const Exec& ex, const Tensor& y, const Tensor& dy, const Tensor& dx) {
  DTRAIN_CUDA_OP(ex, cuda_ops::relu_backward(ex, y, dy, dx));
  check_on(ex, "relu_backward", {y, dy, dx});
  check_same(dx, "relu_backward", {y, dy});
  dispatch_act(y.dtype(), "relu_backward", [&](auto t) {
    using T = decltype(t);
    cpu::relu_backward<T>(y.data<T>(), dy.data<T>(), y.numel(), dx.data<T>());
  });
}

uint64_t dropout_key(uint64_t seed, int64_t step, uint64_t name_hash) {
  return cpu::dropout_key(seed, step, name_hash);
}

void dropout_forward(const Exec& ex, const Tensor& x, const Tensor& resid, double p, uint64_t key,
                     int64_t first_sample, const Tensor& mask, const Tensor& y, int64_t first_element) {
  DTRAIN_CUDA_OP(ex, cuda_ops::dropout_forward(ex, x, resid, p, key, first_sample, first_element, mask, y));
  check_on(ex, "dropout", {x, resid, mask, y});
  check_same(y, "dropout", {x});
  if (resid.defined()) check_same(y, "dropout", {resid});
  DTRAIN_CHECK(mask.dtype() == DType::u8 && mask.numel() >= x.numel(), "dropout: mask {} {}",
               dtype_name(mask.dtype()), mask.numel());
  const int64_t samples = x.size(0);
  dispatch_act(x.dtype(), "dropout", [&](auto t) {
    using T = decltype(t);
    cpu::dropout_forward<T>(x.data<T>(), resid.defined() ? resid.data<T>() : nullptr, samples,
                            x.numel() / samples, p, key, first_sample, first_element, mask.data<uint8_t>(),
                            y.data<T>());
  });
}

void dropout_backward(const Exec& ex, const Tensor& dy, const Tensor& mask, double p,
                      const Tensor& dx) {
  DTRAIN_CUDA_OP(ex, cuda_ops::dropout_backward(ex, dy, mask, p, dx));
  check_on(ex, "dropout_backward", {dy, mask, dx});
  check_same(dx, "dropout_backward", {dy});
  dispatch_act(dy.dtype(), "dropout_backward", [&](auto t) {
    using T = decltype(t);
    cpu::dropout_backward<T>(dy.data<T>(), mask.data<uint8_t>(), dy.numel(), p, dx.data<T>());
  });
}

// ---------------------------------------------------------------- normalisation

int64_t layernorm_scratch(int64_t c) { return cpu::layernorm_scratch_size(c); }

void layernorm_forward(const Exec& ex, const Tensor& x, const Tensor& w, const Tensor& b,
                       double eps, const Tensor& y, const Tensor& mean, const Tensor& rstd) {
  DTRAIN_CUDA_OP(ex, cuda_ops::layernorm_forward(ex, x, w, b, eps, y, mean, rstd));
  check_on(ex, "layernorm", {x, w, b, y, mean, rstd});
  check_same(y, "layernorm", {x});
  const int64_t c = w.numel(), rows = x.numel() / c;
  DTRAIN_CHECK(x.shape()[-1] == c && mean.numel() >= rows && rstd.numel() >= rows,
               "layernorm: input {} for width {}", x.shape().str(), c);
  dispatch_act(x.dtype(), "layernorm", [&](auto t) {
    using T = decltype(t);
    using A = compute_t<T>;
    cpu::layernorm_forward<T>(x.data<T>(), w.data<T>(), b.defined() ? b.data<T>() : nullptr, rows,
                              c, static_cast<A>(eps), y.data<T>(), mean.data<A>(), rstd.data<A>());
  });
}

void layernorm_backward(const Exec& ex, const Tensor& dy, const Tensor& x, const Tensor& w,
                        const Tensor& mean, const Tensor& rstd, const Tensor& dres,
                        const Tensor& dx, const Tensor& dw, const Tensor& db,
                        const Tensor& scratch) {
  DTRAIN_CUDA_OP(ex, cuda_ops::layernorm_backward(ex, dy, x, w, mean, rstd, dres, dx, dw, db, scratch));
  check_on(ex, "layernorm_backward", {dy, x, w, mean, rstd, dres, dx, dw, db, scratch});
  check_same(dx, "layernorm_backward", {dy, x});
  const int64_t c = w.numel(), rows = dy.numel() / c;
  DTRAIN_CHECK(scratch.numel() >= layernorm_scratch(c), "layernorm_backward: scratch of {} for width {}",
               scratch.numel(), c);
  dispatch_act(dy.dtype(), "layernorm_backward", [&](auto t) {
    using T = decltype(t);
    using A = compute_t<T>;
    cpu::layernorm_backward<T>(dy.data<T>(), x.data<T>(), w.data<T>(), mean.data<A>(), rstd.data<A>(),
                               dres.defined() ? dres.data<T>() : nullptr, rows, c, dx.data<T>(),
                               dw.data<A>(), db.defined() ? db.data<A>() : nullptr, scratch.data<A>());
  });
}

int64_t rmsnorm_scratch(int64_t c) { return cpu::rmsnorm_scratch_size(c); }

void rmsnorm_forward(const Exec& ex, const Tensor& x, const Tensor& w, double eps, const Tensor& y,
                     const Tensor& rstd) {
  DTRAIN_CUDA_OP(ex, cuda_ops::rmsnorm_forward(ex, x, w, eps, y, rstd));
  check_on(ex, "rmsnorm", {x, w, y, rstd});
  check_same(y, "rmsnorm", {x});
  const int64_t c = w.numel(), rows = x.numel() / c;
  DTRAIN_CHECK(x.shape()[-1] == c && rstd.numel() >= rows, "rmsnorm: input {} for width {}", x.shape().str(), c);
  dispatch_act(x.dtype(), "rmsnorm", [&](auto t) {
    using T = decltype(t);
    using A = compute_t<T>;
    cpu::rmsnorm_forward<T>(x.data<T>(), w.data<T>(), rows, c, static_cast<A>(eps), y.data<T>(), rstd.data<A>());
  });
}

void rmsnorm_backward(const Exec& ex, const Tensor& dy, const Tensor& x, const Tensor& w,
                      const Tensor& rstd, const Tensor& dres, const Tensor& dx, const Tensor& dw,
                      const Tensor& scratch) {
  DTRAIN_CUDA_OP(ex, cuda_ops::rmsnorm_backward(ex, dy, x, w, rstd, dres, dx, dw, scratch));
  check_on(ex, "rmsnorm_backward", {dy, x, w, rstd, dres, dx, dw, scratch});
  check_same(dx, "rmsnorm_backward", {dy, x});
  const int64_t c = w.numel(), rows = dy.numel() / c;
  DTRAIN_CHECK(scratch.numel() >= rmsnorm_scratch(c), "rmsnorm_backward: scratch of {} for width {}",
               scratch.numel(), c);
  dispatch_act(dy.dtype(), "rmsnorm_backward", [&](auto t) {
    using T = decltype(t);
    using A = compute_t<T>;
    cpu::rmsnorm_backward<T>(dy.data<T>(), x.data<T>(), w.data<T>(), rstd.data<A>(),
                             dres.defined() ? dres.data<T>() : nullptr, rows, c, dx.data<T>(), dw.data<A>(),
                             scratch.data<A>());
  });
}

// ---------------------------------------------------------------- attention

std::string Heads::str() const {
  if (q == kv) return fmt::format("{} heads", q);
  return fmt::format("{} query heads, {} key/value heads", q, kv);
}

namespace {

// The CPU's dimensions of a qkv tensor: the query width C and head width hs.
struct QkvDims {
  int64_t B, T, C, hs;
};

QkvDims qkv_dims(const Shape& qkv, Heads heads, const char* op, bool even = false) {
  DTRAIN_CHECK(qkv.rank() == 3 && heads.fits(qkv[2], even), "{}: qkv {} with {}{}", op, qkv.str(), heads.str(),
               even ? " (each of even width)" : "");
  const int64_t hs = qkv[2] / heads.row_heads();
  return {qkv[0], qkv[1], heads.q * hs, hs};
}

}  // namespace

void rope(const Exec& ex, const Tensor& qkv, Heads heads, const math::Rope& rope, int64_t pos0, bool inverse) {
  DTRAIN_CUDA_OP(ex, cuda_ops::rope(ex, qkv, heads, rope, pos0, inverse));
  check_on(ex, "rope", {qkv});
  const QkvDims d = qkv_dims(qkv.shape(), heads, "rope", /*even=*/true);
  dispatch_act(qkv.dtype(), "rope", [&](auto t) {
    using F = decltype(t);
    cpu::rope<F>(qkv.data<F>(), d.B, d.T, d.C, heads.q, heads.kv, rope, pos0, inverse);
  });
}

int64_t attention_scratch(const Exec& ex, const Shape& qkv, Heads heads, DType act) {
  const QkvDims d = qkv_dims(qkv, heads, "attention");
#if DTRAIN_HAVE_CUDA
  if (ex.on_cuda()) return cuda_ops::attention_scratch(qkv, heads, act);
#endif
  return static_cast<int64_t>(cpu::num_threads()) * cpu::attention_scratch_size(d.T, d.hs);
}

AttentionPlan::AttentionPlan(const Exec& ex, const Shape& qkv, Heads heads, DType act) : planned_(true) {
#if DTRAIN_HAVE_CUDA
  if (ex.on_cuda()) gpu_ = cuda_ops::plan_attention(ex, qkv, heads, act);
#endif
}

void attention_forward(const Exec& ex, const AttentionPlan& plan, const Tensor& qkv, Heads heads,
                       const Tensor& att, const Tensor& y, const Tensor& scratch) {
  DTRAIN_CUDA_OP(ex, DTRAIN_CHECK(plan.gpu(), "attention: not planned for {}", ex.device.str());
                 cuda_ops::attention_forward(ex, *plan.gpu(), qkv, heads, att, y, scratch));
  check_on(ex, "attention", {qkv, att, y, scratch});
  check_same(att, "attention", {qkv, y});
  const QkvDims d = qkv_dims(qkv.shape(), heads, "attention");
  // y's width is the queries': a qkv width that fits other heads too is caught here.
  DTRAIN_CHECK(att.numel() >= d.B * heads.q * d.T * d.T &&
                   (!y.defined() || (y.numel() == d.B * d.T * d.C && y.size(-1) == d.C)),
               "attention: att {} / y {} for qkv {} with {}", att.shape().str(), y.defined() ? y.shape().str() : "-",
               qkv.shape().str(), heads.str());
  const int slots = static_cast<int>(scratch.numel() / cpu::attention_scratch_size(d.T, d.hs));
  DTRAIN_CHECK(slots >= 1, "attention: scratch of {} for T = {}", scratch.numel(), d.T);
  dispatch_act(qkv.dtype(), "attention", [&](auto t) {
    using F = decltype(t);
    cpu::attention_forward<F>(qkv.data<F>(), d.B, d.T, d.C, heads.q, heads.kv, att.data<F>(),
                              y.defined() ? y.data<F>() : nullptr, scratch.data<compute_t<F>>(), slots);
  });
}

void attention_backward(const Exec& ex, const AttentionPlan& plan, const Tensor& dy, const Tensor& qkv,
                        const Tensor& att, Heads heads, const Tensor& scratch, const Tensor& dqkv) {
  DTRAIN_CUDA_OP(ex, DTRAIN_CHECK(plan.gpu(), "attention_backward: not planned for {}", ex.device.str());
                 cuda_ops::attention_backward(ex, *plan.gpu(), dy, qkv, att, heads, scratch, dqkv));
  check_on(ex, "attention_backward", {dy, qkv, att, scratch, dqkv});
  check_same(dqkv, "attention_backward", {dy, qkv, att});
  const QkvDims d = qkv_dims(qkv.shape(), heads, "attention_backward");
  DTRAIN_CHECK(att.numel() >= d.B * heads.q * d.T * d.T && dy.numel() == d.B * d.T * d.C && dy.size(-1) == d.C &&
                   dqkv.shape() == qkv.shape(),
               "attention_backward: att {}, dy {}, dqkv {} for qkv {} with {}", att.shape().str(), dy.shape().str(),
               dqkv.shape().str(), qkv.shape().str(), heads.str());
  const int slots = static_cast<int>(scratch.numel() / cpu::attention_scratch_size(d.T, d.hs));
  DTRAIN_CHECK(slots >= 1, "attention_backward: scratch of {} for T = {}", scratch.numel(), d.T);
  dispatch_act(qkv.dtype(), "attention_backward", [&](auto t) {
    using F = decltype(t);
    cpu::attention_backward<F>(dy.data<F>(), qkv.data<F>(), att.data<F>(), d.B, d.T, d.C, heads.q, heads.kv,
                               scratch.data<compute_t<F>>(), slots, dqkv.data<F>());
  });
}

// ---------------------------------------------------------------- embeddings

void embedding_forward(const Exec& ex, const Tensor& tokens, const Tensor& wte, const Tensor& wpe,
                       const Tensor& y) {
  DTRAIN_CUDA_OP(ex, cuda_ops::embedding_forward(ex, tokens, wte, wpe, y));
  check_on(ex, "embedding", {tokens, wte, wpe, y});
  check_same(y, "embedding", {wte, wpe});
  const int64_t B = y.size(0), T = y.size(1), C = y.size(2);
  dispatch_act(y.dtype(), "embedding", [&](auto t) {
    using F = decltype(t);
    cpu::embedding_forward<F>(tokens.data<int32_t>(), wte.data<F>(), wpe.data<F>(), B, T, C, y.data<F>());
  });
}

void token_embedding_shard_forward(const Exec& ex, const Tensor& tokens, const Tensor& wte,
                                   int64_t v0, const Tensor& y) {
  DTRAIN_CUDA_OP(ex, cuda_ops::token_embedding_shard_forward(ex, tokens, wte, v0, y));
  check_on(ex, "embedding", {tokens, wte, y});
  check_same(y, "embedding", {wte});
  const int64_t C = y.size(-1);
  dispatch_act(y.dtype(), "embedding", [&](auto t) {
    using F = decltype(t);
    cpu::token_embedding_shard_forward<F>(tokens.data<int32_t>(), wte.data<F>(), v0, wte.size(0),
                                          tokens.numel(), C, y.data<F>());
  });
}

void position_embedding_add(const Exec& ex, const Tensor& wpe, const Tensor& y) {
  DTRAIN_CUDA_OP(ex, cuda_ops::position_embedding_add(ex, wpe, y));
  check_on(ex, "embedding", {wpe, y});
  check_same(y, "embedding", {wpe});
  dispatch_act(y.dtype(), "embedding", [&](auto t) {
    using F = decltype(t);
    cpu::position_embedding_add<F>(wpe.data<F>(), y.size(0), y.size(1), y.size(2), y.data<F>());
  });
}

void embedding_backward(const Exec& ex, const Tensor& dy, const Tensor& tokens, int64_t v0,
                        const Tensor& dwte, const Tensor& dwpe) {
  DTRAIN_CUDA_OP(ex, cuda_ops::embedding_backward(ex, dy, tokens, v0, dwte, dwpe));
  check_on(ex, "embedding_backward", {dy, tokens, dwte, dwpe});
  const int64_t B = dy.size(0), T = dy.size(1), C = dy.size(2);
  dispatch_act(dy.dtype(), "embedding_backward", [&](auto t) {
    using F = decltype(t);
    using A = compute_t<F>;
    cpu::embedding_shard_backward<F>(dy.data<F>(), tokens.data<int32_t>(), B, T, C, v0,
                                     dwte.size(0), dwte.data<A>(),
                                     dwpe.defined() ? dwpe.data<A>() : nullptr);
  });
}

// ---------------------------------------------------------------- losses

LossAccum make_loss_accum(const Exec& ex) {
  LossAccum a{Tensor::zeros(Shape{5}, DType::f64, ex.device)};
  return a;
}

LossTotals read_and_reset(const Exec& ex, LossAccum& acc) {
#if DTRAIN_HAVE_CUDA
  if (ex.on_cuda()) return cuda_ops::read_and_reset(ex, acc);
#endif
  check_on(ex, "loss statistics", {acc.sums});
  double* s = acc.sums.data<double>();
  LossTotals t{s[0], s[1], static_cast<int64_t>(s[2]), static_cast<int64_t>(s[3]),
               static_cast<int64_t>(s[4])};
  std::fill(s, s + 5, 0.0);
  return t;
}

namespace {
// Adds a micro-batch's mean loss (its rows summed in order) and its correct
// argmaxes into the accumulator.
void accumulate(LossAccum& acc, const double* row_loss, const int32_t* argmax, const int32_t* tgt,
                int64_t rows) {
  double total = 0;
  int64_t correct = 0;
  for (int64_t r = 0; r < rows; ++r) {
    total += row_loss[r];
    correct += argmax[r] == tgt[r];
  }
  const double mean = total / static_cast<double>(rows);
  double* s = acc.sums.data<double>();
  s[0] += mean;
  s[1] += mean * static_cast<double>(rows);
  s[2] += static_cast<double>(rows);
  s[3] += static_cast<double>(correct);
  s[4] += 1;
}
}  // namespace

void softmax_xent_forward(const Exec& ex, const Tensor& logits, const Tensor& targets,
                          const Tensor& row_max, const Tensor& row_sum, const Tensor& row_loss,
                          const Tensor& argmax, LossAccum& acc) {
  DTRAIN_CUDA_OP(ex, cuda_ops::softmax_xent_forward(ex, logits, targets, row_max, row_sum, row_loss, argmax, acc));
  check_on(ex, "cross_entropy", {logits, targets, row_max, row_sum, row_loss, argmax, acc.sums});
  const int64_t v = logits.shape()[-1], rows = logits.numel() / v;
  DTRAIN_CHECK(targets.numel() == rows, "cross entropy: {} targets for logits {}", targets.numel(),
               logits.shape().str());
  const int32_t* tgt = targets.data<int32_t>();
  dispatch_act(logits.dtype(), "cross_entropy", [&](auto t) {
    using T = decltype(t);
    using A = compute_t<T>;
    cpu::softmax_xent_forward<T>(logits.data<T>(), tgt, rows, v, row_max.data<A>(),
                                 row_sum.data<A>(), row_loss.data<double>(), argmax.data<int32_t>());
  });
  accumulate(acc, row_loss.data<double>(), argmax.data<int32_t>(), tgt, rows);
}

void softmax_xent_backward(const Exec& ex, const Tensor& logits, const Tensor& targets,
                           const Tensor& row_max, const Tensor& row_sum, double scale,
                           const Tensor& dx) {
  DTRAIN_CUDA_OP(ex, cuda_ops::softmax_xent_backward(ex, logits, targets, row_max, row_sum, scale, dx));
  check_on(ex, "cross_entropy_backward", {logits, targets, row_max, row_sum, dx});
  const int64_t v = logits.shape()[-1], rows = logits.numel() / v;
  dispatch_act(logits.dtype(), "cross_entropy_backward", [&](auto t) {
    using T = decltype(t);
    using A = compute_t<T>;
    cpu::softmax_xent_backward<T>(logits.data<T>(), targets.data<int32_t>(), row_max.data<A>(),
                                  row_sum.data<A>(), rows, v, static_cast<A>(scale), dx.data<T>());
  });
}

void vp_row_max(const Exec& ex, const Tensor& logits, const Tensor& row_max) {
  DTRAIN_CUDA_OP(ex, cuda_ops::vp_row_max(ex, logits, row_max));
  check_on(ex, "cross_entropy", {logits, row_max});
  const int64_t v = logits.shape()[-1], rows = logits.numel() / v;
  dispatch_act(logits.dtype(), "cross_entropy", [&](auto t) {
    using T = decltype(t);
    cpu::row_max<T>(logits.data<T>(), rows, v, row_max.data<compute_t<T>>());
  });
}

void vp_exp_sums(const Exec& ex, const Tensor& logits, const Tensor& targets, int64_t v0,
                 const Tensor& row_max, const Tensor& probs, const Tensor& sums,
                 const Tensor& argmax) {
  DTRAIN_CUDA_OP(ex, cuda_ops::vp_exp_sums(ex, logits, targets, v0, row_max, probs, sums, argmax));
  check_on(ex, "cross_entropy", {logits, targets, row_max, probs, sums, argmax});
  const int64_t v = logits.shape()[-1], rows = logits.numel() / v;
  dispatch_act(logits.dtype(), "cross_entropy", [&](auto t) {
    using T = decltype(t);
    using A = compute_t<T>;
    cpu::vp_exp_sums<T>(logits.data<T>(), targets.data<int32_t>(), v0, rows, v, row_max.data<A>(),
                        probs.data<T>(), sums.data<A>(), argmax.data<int32_t>());
  });
}

void vp_finish(const Exec& ex, const Tensor& targets, const Tensor& row_max, const Tensor& sums,
               const Tensor& argmax, const Tensor& probs, const Tensor& row_loss, LossAccum& acc) {
  DTRAIN_CUDA_OP(ex, cuda_ops::vp_finish(ex, targets, row_max, sums, argmax, probs, row_loss, acc));
  check_on(ex, "cross_entropy", {targets, row_max, sums, argmax, probs, row_loss, acc.sums});
  const int64_t rows = targets.numel(), v = probs.numel() / rows;
  dispatch_act(probs.dtype(), "cross_entropy", [&](auto t) {
    using T = decltype(t);
    using A = compute_t<T>;
    T* p = probs.data<T>();
    const A* m = row_max.data<A>();
    const A* s = sums.data<A>();
    double* rl = row_loss.data<double>();
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      T* pr = p + r * v;
      const A inv = A(1) / s[r];
#pragma omp simd
      for (int64_t j = 0; j < v; ++j) pr[j] = T(A(pr[j]) * inv);
      rl[r] = static_cast<double>(std::log(s[r]) + m[r] - s[rows + r]);
    }
  });
  accumulate(acc, row_loss.data<double>(), argmax.data<int32_t>(), targets.data<int32_t>(), rows);
}

void vp_backward(const Exec& ex, const Tensor& targets, int64_t v0, double scale, const Tensor& probs) {
  DTRAIN_CUDA_OP(ex, cuda_ops::vp_backward(ex, targets, v0, scale, probs));
  check_on(ex, "cross_entropy_backward", {targets, probs});
  const int64_t rows = targets.numel(), v = probs.numel() / rows;
  const int32_t* tgt = targets.data<int32_t>();
  dispatch_act(probs.dtype(), "cross_entropy_backward", [&](auto t) {
    using T = decltype(t);
    using A = compute_t<T>;
    T* g = probs.data<T>();
    const A s = static_cast<A>(scale);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      T* gr = g + r * v;  // (V/t): softmax -> s * (softmax - onehot)
      const int64_t y = tgt[r] - v0;
      const A py = (y >= 0 && y < v) ? A(gr[y]) : A(0);
#pragma omp simd
      for (int64_t j = 0; j < v; ++j) gr[j] = T(A(gr[j]) * s);
      if (y >= 0 && y < v) gr[y] = T(py * s - s);  // the target's column is on this rank
    }
  });
}

// ---------------------------------------------------------------- reductions

double sum_squares(const Exec& ex, const std::vector<Tensor>& xs) {
  if (xs.empty()) return 0.0;
#if DTRAIN_HAVE_CUDA
  if (ex.on_cuda()) return cuda_ops::sum_squares(ex, xs);
#endif
  check_on(ex, "sum_squares", xs);
  const DType t = xs[0].dtype();
  for (const Tensor& x : xs)
    DTRAIN_CHECK(x.dtype() == t, "sum_squares: {} among {}", dtype_name(x.dtype()), dtype_name(t));
  return dispatch_act(t, "sum_squares", [&](auto tag) {
    using T = decltype(tag);
    std::vector<const T*> ptrs;
    std::vector<int64_t> ns;
    for (const Tensor& x : xs) {
      ptrs.push_back(x.data<T>());
      ns.push_back(x.numel());
    }
    return cpu::sum_squares_many<T>(ptrs.data(), ns.data(), static_cast<int64_t>(xs.size()));
  });
}

}  // namespace dtrain::ops
