// The CNN's ops: device and dtype checks, then the CPU kernels (f32, f64 and
// bf16 mixed precision: bf16 activations and compute copies, fp32 statistics
// and gradients) or, on a GPU Exec, their CUDA side (ops/cuda/cnn_ops.h).
#include "ops/cnn.h"

#include "kernels/cpu/gemm.h"
#include "ops/dispatch.h"
#include "ops/ops.h"
#if DTRAIN_HAVE_CUDA
#include "ops/cuda/cnn_ops.h"
#endif

namespace dtrain::ops {

ConvPlan::ConvPlan(const Exec& ex, const ConvGeom& g, int64_t max_batch, DType act, const std::string& name)
    : g_(g), max_batch_(max_batch), group_(cpu::conv_group(g, max_batch)), threads_(cpu::num_threads()) {
  DTRAIN_CUDA_OP(ex, gpu_ = std::make_shared<const cuda_ops::ConvRunner>(ex, g, max_batch, act, name));
  dispatch_act(act, "conv2d", [](auto) {});
  // bf16: the scratch is fp32 (products and input gradients in fp32; the
  // columns are bf16 inside it).
  scratch_ = Tensor::zeros(Shape{cpu::conv_scratch_size(g, max_batch, threads_)}, compute_dtype(act), ex.device);
}

int64_t ConvPlan::scratch_bytes(const ConvGeom& g, int64_t max_batch, DType act) {
  return cpu::conv_scratch_size(g, max_batch, cpu::num_threads()) * static_cast<int64_t>(dtype_size(compute_dtype(act)));
}

std::string ConvPlan::engines() const {
#if DTRAIN_HAVE_CUDA
  if (gpu_) return gpu_->engines();
#endif
  return {};
}

#if DTRAIN_HAVE_CUDA
const cuda_ops::ConvRunner& ConvPlan::runner(const Exec& ex) const {
  if (!gpu_)
    throw InternalError(fmt::format("conv2d: planned for {}, run on {}", max_batch_ ? "the CPU" : "nothing",
                                    ex.device.str()));
  return *gpu_;
}
#endif

void ConvPlan::forward(const Exec& ex, const Tensor& x, const Tensor& w, const Tensor& b,
                       const Tensor& y) const {
  DTRAIN_CUDA_OP(ex, cuda_ops::conv_forward(runner(ex), ex, x, w, b, y));
  check_on(ex, "conv2d", {x, w, b, y});
  check_same(y, "conv2d", {x, w, b});
  const int64_t n = x.size(0);
  DTRAIN_CHECK(n <= max_batch_, "conv2d: batch {} beyond the planned {}", n, max_batch_);
  if (x.dtype() == DType::bf16) {
    cpu::conv2d_forward_bf16(g_, n, group_, x.data<bf16>(), w.data<bf16>(), b.defined() ? b.data<bf16>() : nullptr,
                             y.data<bf16>(), scratch_.data<float>(), threads_);
    return;
  }
  dispatch_full(x.dtype(), "conv2d", [&](auto t) {
    using T = decltype(t);
    cpu::conv2d_forward<T>(g_, n, group_, x.data<T>(), w.data<T>(), b.defined() ? b.data<T>() : nullptr,
                           y.data<T>(), scratch_.data<T>(), threads_);
  });
}

void ConvPlan::backward(const Exec& ex, const Tensor& x, const Tensor& w, const Tensor& dy,
                        const Tensor& dres, const Tensor& dx, const Tensor& dw, const Tensor& db) const {
  DTRAIN_CUDA_OP(ex, cuda_ops::conv_backward(runner(ex), ex, x, w, dy, dres, dx, dw, db));
  check_on(ex, "conv2d_backward", {x, w, dy, dres, dx, dw, db});
  check_same(dy, "conv2d_backward", {x, w, dres, dx});
  for (const Tensor& t : {dw, db})  // parameter gradients: in the compute type (fp32 under bf16)
    if (t.defined() && t.dtype() != compute_dtype(dy.dtype()))
      throw InternalError(fmt::format("conv2d_backward: {} gradient for {} operands", dtype_name(t.dtype()),
                                      dtype_name(dy.dtype())));
  const int64_t n = dy.size(0);
  if (dy.dtype() == DType::bf16) {
    cpu::conv2d_backward_bf16(g_, n, group_, x.data<bf16>(), w.data<bf16>(), dy.data<bf16>(),
                              dres.defined() ? dres.data<bf16>() : nullptr, dx.defined() ? dx.data<bf16>() : nullptr,
                              dw.data<float>(), db.defined() ? db.data<float>() : nullptr, scratch_.data<float>(),
                              threads_);
    return;
  }
  dispatch_full(dy.dtype(), "conv2d_backward", [&](auto t) {
    using T = decltype(t);
    cpu::conv2d_backward<T>(g_, n, group_, x.data<T>(), w.data<T>(), dy.data<T>(),
                            dres.defined() ? dres.data<T>() : nullptr,
                            dx.defined() ? dx.data<T>() : nullptr, dw.data<T>(),
                            db.defined() ? db.data<T>() : nullptr, scratch_.data<T>(), threads_);
  });
}

void batchnorm_forward_train(const Exec& ex, const BatchNormArgs& a, const Tensor& x,
                             const Tensor& w, const Tensor& b, const Tensor& res, const Tensor& y,
                             const Tensor& mean, const Tensor& rstd, const Tensor& running_mean,
                             const Tensor& running_var) {
  DTRAIN_CUDA_OP(ex, cuda_ops::batchnorm_forward_train(ex, a, x, w, b, res, y, mean, rstd, running_mean, running_var));
  check_on(ex, "batchnorm", {x, w, b, res, y, mean, rstd, running_mean, running_var});
  dispatch_act(x.dtype(), "batchnorm", [&](auto t) {
    using T = decltype(t);
    using A = compute_t<T>;
    cpu::batchnorm_forward_train<T>(a, x.data<T>(), w.data<T>(), b.data<T>(),
                                    res.defined() ? res.data<T>() : nullptr, y.data<T>(), mean.data<A>(),
                                    rstd.data<A>(), running_mean.data<A>(), running_var.data<A>());
  });
}

void batchnorm_forward_eval(const Exec& ex, const BatchNormArgs& a, const Tensor& x,
                            const Tensor& w, const Tensor& b, const Tensor& res,
                            const Tensor& running_mean, const Tensor& running_var, const Tensor& y,
                            const Tensor& mean, const Tensor& rstd) {
  DTRAIN_CUDA_OP(ex, cuda_ops::batchnorm_forward_eval(ex, a, x, w, b, res, running_mean, running_var, y, mean, rstd));
  check_on(ex, "batchnorm", {x, w, b, res, y, mean, rstd, running_mean, running_var});
  dispatch_act(x.dtype(), "batchnorm", [&](auto t) {
    using T = decltype(t);
    using A = compute_t<T>;
    cpu::batchnorm_forward_eval<T>(a, x.data<T>(), w.data<T>(), b.data<T>(),
                                   res.defined() ? res.data<T>() : nullptr, running_mean.data<A>(),
                                   running_var.data<A>(), y.data<T>(), mean.data<A>(), rstd.data<A>());
  });
}

void batchnorm_backward(const Exec& ex, const BatchNormArgs& a, bool batch_stats, const Tensor& dy,
                        const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& mean,
                        const Tensor& rstd, const Tensor& dx, const Tensor& dz, const Tensor& dw,
                        const Tensor& db) {
  DTRAIN_CUDA_OP(ex, cuda_ops::batchnorm_backward(ex, a, batch_stats, dy, y, x, w, mean, rstd, dx, dz, dw, db));
  check_on(ex, "batchnorm_backward", {dy, y, x, w, mean, rstd, dx, dz, dw, db});
  dispatch_act(dy.dtype(), "batchnorm_backward", [&](auto t) {
    using T = decltype(t);
    using A = compute_t<T>;
    cpu::batchnorm_backward<T>(a, batch_stats, dy.data<T>(), y.data<T>(), x.data<T>(), w.data<T>(),
                               mean.data<A>(), rstd.data<A>(), dx.data<T>(),
                               dz.defined() ? dz.data<T>() : nullptr, dw.data<A>(), db.data<A>());
  });
}

void maxpool_forward(const Exec& ex, const PoolGeom& g, const Tensor& x, const Tensor& y, const Tensor& idx) {
  DTRAIN_CUDA_OP(ex, cuda_ops::maxpool_forward(ex, g, x, y, idx));
  check_on(ex, "maxpool", {x, y, idx});
  dispatch_act(x.dtype(), "maxpool", [&](auto t) {
    using T = decltype(t);
    cpu::maxpool_forward<T>(g, x.size(0) * x.size(1), x.data<T>(), y.data<T>(), idx.data<int32_t>());
  });
}

void maxpool_backward(const Exec& ex, const PoolGeom& g, const Tensor& dy, const Tensor& idx, const Tensor& dx) {
  DTRAIN_CUDA_OP(ex, cuda_ops::maxpool_backward(ex, g, dy, idx, dx));
  check_on(ex, "maxpool_backward", {dy, idx, dx});
  dispatch_act(dy.dtype(), "maxpool_backward", [&](auto t) {
    using T = decltype(t);
    cpu::maxpool_backward<T>(g, dy.size(0) * dy.size(1), dy.data<T>(), idx.data<int32_t>(), dx.data<T>());
  });
}

void avgpool_forward(const Exec& ex, const Tensor& x, const Tensor& y) {
  DTRAIN_CUDA_OP(ex, cuda_ops::avgpool_forward(ex, x, y));
  check_on(ex, "avgpool", {x, y});
  dispatch_act(x.dtype(), "avgpool", [&](auto t) {
    using T = decltype(t);
    cpu::avgpool_forward<T>(x.size(0) * x.size(1), x.size(2) * x.size(3), x.data<T>(), y.data<T>());
  });
}

void avgpool_backward(const Exec& ex, const Tensor& dy, const Tensor& dx) {
  DTRAIN_CUDA_OP(ex, cuda_ops::avgpool_backward(ex, dy, dx));
  check_on(ex, "avgpool_backward", {dy, dx});
  dispatch_act(dy.dtype(), "avgpool_backward", [&](auto t) {
    using T = decltype(t);
    cpu::avgpool_backward<T>(dx.size(0) * dx.size(1), dx.size(2) * dx.size(3), dy.data<T>(), dx.data<T>());
  });
}

}  // namespace dtrain::ops
