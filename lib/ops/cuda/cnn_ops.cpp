// The CUDA side of the CNN's ops: checks that every tensor lives on the
// Exec's GPU and has the dtype the kernel takes (activations and parameters'
// compute copies in f32 or bf16; statistics, running estimates and parameter
// gradients in f32), then the cuDNN plans and the launchers. The convolution
// keeps the CPU ConvPlan's contract: y = conv(x, w) + b; dw and db accumulate
// (+=) into the fp32 gradients; dx = dres + conv^T(dy).
#include "ops/cuda/cnn_ops.h"

#include <fmt/format.h>

#include "core/device.h"
#include "core/error.h"
#include "kernels/cuda/cnn_kernels.h"
#include "kernels/cuda/context.h"

namespace dtrain::ops::cuda_ops {
namespace {

using cuda::ConvPass;

void on_device(const Exec& ex, const char* op, std::initializer_list<Tensor> ts) {
  if (!ex.cuda) throw InternalError(fmt::format("{}: a CUDA Exec without its context", op));
  for (const Tensor& t : ts) ex.check(t, op);
}

void want(const Tensor& t, DType d, const char* op, const char* what) {
  if (t.defined() && t.dtype() != d)
    throw InternalError(fmt::format("{}: {} is {}, expected {}", op, what, dtype_name(t.dtype()), dtype_name(d)));
}

void want_numel(const Tensor& t, int64_t n, const char* op, const char* what) {
  if (t.defined() && t.numel() != n)
    throw InternalError(fmt::format("{}: {} has {} elements, expected {}", op, what, t.numel(), n));
}

// Calls f(T{}) with T the storage type of an activation dtype on the GPU.
template <class F>
void dispatch(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: f(float{}); return;
    case DType::bf16: f(bf16{}); return;
    default: throw InternalError(fmt::format("{}: no {} kernel on the GPU (f32 and bf16)", op, dtype_name(t)));
  }
}

template <class T>
T* ptr(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.raw()) : nullptr;
}

}  // namespace

// ---------------------------------------------------------------- convolution

cuda::ConvGraphSpec conv_spec(const std::string& name, const cpu::ConvGeom& g, int64_t n, DType act, ConvPass pass,
                              double beta) {
  cuda::ConvGraphSpec s;
  s.name = name;
  s.g = g;
  s.n = n;
  s.pass = pass;
  s.dtype = act;
  s.beta = beta;
  return s;
}

ConvRunner::ConvRunner(const Exec& ex, const cpu::ConvGeom& g, int64_t max_batch, DType act, std::string name)
    : g_(g), max_batch_(max_batch), act_(act), name_(std::move(name)) {
  if (!ex.cuda) throw InternalError(fmt::format("{}: a CUDA Exec without its context", name_));
  if (act != DType::f32 && act != DType::bf16)
    throw InternalError(fmt::format("{}: no {} convolution on the GPU (f32 and bf16)", name_, dtype_name(act)));
  DTRAIN_CHECK(max_batch > 0, "{}: planned batch {}", name_, max_batch);
  handle_ = ex.cuda->cudnn();
  tf32_ = ex.cuda->tf32();
  int64_t ws = 0, scratch = 0;
  for (ConvPass p : {ConvPass::forward, ConvPass::backward_data, ConvPass::backward_filter}) {
    Pass ps = make_pass(max_batch, p, /*at_plan=*/true);
    ws = std::max(ws, ps.plan->workspace_bytes());
    if (!ps.in_place)
      scratch = std::max(scratch, p == ConvPass::backward_data ? max_batch * g.in_size() : g.o * g.k());
    passes_.emplace(std::make_pair(max_batch, static_cast<int>(p)), std::move(ps));
  }
  if (ws <= static_cast<int64_t>(ex.cuda->workspace_bytes())) {
    workspace_ = ex.cuda->workspace();  // shared with the matrix products: same stream, never concurrent
    workspace_bytes_ = static_cast<int64_t>(ex.cuda->workspace_bytes());
  } else {
    workspace_own_ = Tensor::empty(Shape{ws}, DType::u8, ex.device);
    workspace_ = workspace_own_.raw();
    workspace_bytes_ = ws;
  }
  if (scratch > 0) scratch_ = Tensor::empty(Shape{scratch}, act, ex.device);
}

ConvRunner::~ConvRunner() = default;

ConvRunner::Pass ConvRunner::make_pass(int64_t n, ConvPass p, bool at_plan) const {
  const int64_t max_ws = at_plan ? -1 : workspace_bytes_;
  // Backward passes accumulate into their destination (beta = 1) when its
  // dtype is the operands' (not for a bf16 weight gradient into fp32).
  const bool accumulate = p != ConvPass::forward && !(p == ConvPass::backward_filter && act_ != DType::f32);
  if (p == ConvPass::forward || accumulate) {
    try {
      Pass ps;
      ps.graph = std::make_unique<cuda::ConvGraph>(conv_spec(name_, g_, n, act_, p, accumulate ? 1.0 : 0.0), handle_);
      ps.plan = std::make_unique<cuda::ConvExecPlan>(*ps.graph, handle_, tf32_, max_ws);
      ps.in_place = true;
      return ps;
    } catch (const RuntimeError&) {
      if (p == ConvPass::forward) throw;
      // No engine accumulates: fall back to beta = 0 into scratch, then an add.
    }
  }
  Pass ps;
  ps.graph = std::make_unique<cuda::ConvGraph>(conv_spec(name_, g_, n, act_, p, 0.0), handle_);
  ps.plan = std::make_unique<cuda::ConvExecPlan>(*ps.graph, handle_, tf32_, max_ws);
  ps.in_place = false;
  if (!at_plan) {
    const int64_t need = p == ConvPass::backward_data ? n * g_.in_size() : g_.o * g_.k();
    if (need > scratch_.numel())
      throw RuntimeError(fmt::format("{}: the {} pass for a batch of {} needs {} elements of scratch, {} planned "
                                     "for the batch of {}",
                                     name_, cuda::conv_pass_name(p), n, need, scratch_.numel(), max_batch_));
  }
  return ps;
}

const ConvRunner::Pass& ConvRunner::pass(int64_t n, ConvPass p) const {
  DTRAIN_CHECK(n > 0 && n <= max_batch_, "{}: batch {} beyond the planned {}", name_, n, max_batch_);
  const auto key = std::make_pair(n, static_cast<int>(p));
  auto it = passes_.find(key);
  if (it == passes_.end()) it = passes_.emplace(key, make_pass(n, p, /*at_plan=*/false)).first;
  return it->second;
}

void ConvRunner::run(const Pass& ps, void* x, void* w, void* y) const {
  ps.plan->run(handle_, x, w, y, workspace_);
}

std::string ConvRunner::engines() const {
  std::string s;
  for (ConvPass p : {ConvPass::forward, ConvPass::backward_data, ConvPass::backward_filter}) {
    const Pass& ps = passes_.at(std::make_pair(max_batch_, static_cast<int>(p)));
    s += fmt::format("{}{}: {}{}", s.empty() ? "" : "; ", cuda::conv_pass_name(p), ps.plan->engine(),
                     ps.in_place ? "" : " + add");
  }
  return s;
}

void ConvRunner::forward(const Exec& ex, const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y) const {
  const char* op = "conv2d";
  on_device(ex, op, {x, w, b, y});
  for (const Tensor& t : {x, w, b, y}) want(t, act_, op, "an operand");
  DTRAIN_CHECK(x.rank() == 4 && x.size(1) == g_.c && x.size(2) == g_.h && x.size(3) == g_.w,
               "{}: input {} is not (n, {}, {}, {})", name_, x.shape().str(), g_.c, g_.h, g_.w);
  const int64_t n = x.size(0);
  want_numel(w, g_.o * g_.k(), op, "w");
  want_numel(b, g_.o, op, "b");
  want_numel(y, n * g_.out_size(), op, "y");
  run(pass(n, ConvPass::forward), x.raw(), w.raw(), y.raw());
  if (b.defined())
    dispatch(act_, op, [&](auto t) {
      using T = decltype(t);
      cuda::add_channel_bias<T>(n, g_.o, g_.ho() * g_.wo(), ptr<T>(b), ptr<T>(y), ex.stream);
    });
}

void ConvRunner::backward(const Exec& ex, const Tensor& x, const Tensor& w, const Tensor& dy, const Tensor& dres,
                          const Tensor& dx, const Tensor& dw, const Tensor& db) const {
  const char* op = "conv2d_backward";
  on_device(ex, op, {x, w, dy, dres, dx, dw, db});
  for (const Tensor& t : {x, w, dy, dres, dx}) want(t, act_, op, "an operand");
  want(dw, DType::f32, op, "dw");
  want(db, DType::f32, op, "db");
  DTRAIN_CHECK(dy.rank() == 4 && dy.size(1) == g_.o && dy.size(2) == g_.ho() && dy.size(3) == g_.wo(),
               "{}: output gradient {} is not (n, {}, {}, {})", name_, dy.shape().str(), g_.o, g_.ho(), g_.wo());
  const int64_t n = dy.size(0);
  want_numel(x, n * g_.in_size(), op, "x");
  want_numel(w, g_.o * g_.k(), op, "w");
  want_numel(dw, g_.o * g_.k(), op, "dw");
  want_numel(db, g_.o, op, "db");
  want_numel(dx, n * g_.in_size(), op, "dx");
  want_numel(dres, n * g_.in_size(), op, "dres");
  DTRAIN_CHECK(dw.defined(), "{}: no weight gradient", name_);
  dispatch(act_, op, [&](auto t) {
    using T = decltype(t);
    // dw (+)= dy (x) x
    const Pass& pw = pass(n, ConvPass::backward_filter);
    if (pw.in_place) {
      run(pw, x.raw(), dw.raw(), dy.raw());
    } else {
      run(pw, x.raw(), scratch_.raw(), dy.raw());
      cuda::add_into<float, T>(g_.o * g_.k(), ptr<T>(scratch_), ptr<float>(dw), ex.stream);
    }
    if (db.defined()) cuda::channel_sum_acc<T>(n, g_.o, g_.ho() * g_.wo(), ptr<T>(dy), ptr<float>(db), ex.stream);
    if (!dx.defined()) return;
    // dx = dres (or 0), then dx += conv^T(dy)
    if (!dres.defined())
      gpu::memset(dx.raw(), 0, dx.bytes(), ex.stream);
    else if (dres.raw() != dx.raw())
      gpu::memcpy(dx.raw(), dres.raw(), dx.bytes(), ex.stream);
    const Pass& pd = pass(n, ConvPass::backward_data);
    if (pd.in_place) {
      run(pd, dx.raw(), w.raw(), dy.raw());
    } else {
      run(pd, scratch_.raw(), w.raw(), dy.raw());
      cuda::add_into<T, T>(n * g_.in_size(), ptr<T>(scratch_), ptr<T>(dx), ex.stream);
    }
  });
}

void conv_forward(const ConvRunner& r, const Exec& ex, const Tensor& x, const Tensor& w, const Tensor& b,
                  const Tensor& y) {
  r.forward(ex, x, w, b, y);
}

void conv_backward(const ConvRunner& r, const Exec& ex, const Tensor& x, const Tensor& w, const Tensor& dy,
                   const Tensor& dres, const Tensor& dx, const Tensor& dw, const Tensor& db) {
  r.backward(ex, x, w, dy, dres, dx, dw, db);
}

// ---------------------------------------------------------------- batch norm

namespace {

void bn_checks(const char* op, const cpu::BatchNormArgs& a, const Tensor& x, std::initializer_list<Tensor> acts,
               std::initializer_list<Tensor> params, std::initializer_list<Tensor> stats) {
  for (const Tensor& t : acts) {
    want(t, x.dtype(), op, "an activation");
    want_numel(t, a.n * a.c * a.hw, op, "an activation");
  }
  for (const Tensor& t : params) {
    want(t, x.dtype(), op, "a parameter");
    want_numel(t, a.c, op, "a parameter");
  }
  for (const Tensor& t : stats) {
    want(t, DType::f32, op, "a statistic");
    want_numel(t, a.c, op, "a statistic");
  }
}

}  // namespace

void batchnorm_forward_train(const Exec& ex, const cpu::BatchNormArgs& a, const Tensor& x, const Tensor& w,
                             const Tensor& b, const Tensor& res, const Tensor& y, const Tensor& mean,
                             const Tensor& rstd, const Tensor& running_mean, const Tensor& running_var) {
  const char* op = "batchnorm";
  on_device(ex, op, {x, w, b, res, y, mean, rstd, running_mean, running_var});
  bn_checks(op, a, x, {x, res, y}, {w, b}, {mean, rstd, running_mean, running_var});
  dispatch(x.dtype(), op, [&](auto t) {
    using T = decltype(t);
    cuda::batchnorm_forward_train<T>(a, ptr<T>(x), ptr<T>(w), ptr<T>(b), ptr<T>(res), ptr<T>(y), ptr<float>(mean),
                                     ptr<float>(rstd), ptr<float>(running_mean), ptr<float>(running_var), ex.stream);
  });
}

void batchnorm_forward_eval(const Exec& ex, const cpu::BatchNormArgs& a, const Tensor& x, const Tensor& w,
                            const Tensor& b, const Tensor& res, const Tensor& running_mean,
                            const Tensor& running_var, const Tensor& y, const Tensor& mean, const Tensor& rstd) {
  const char* op = "batchnorm";
  on_device(ex, op, {x, w, b, res, y, mean, rstd, running_mean, running_var});
  bn_checks(op, a, x, {x, res, y}, {w, b}, {mean, rstd, running_mean, running_var});
  dispatch(x.dtype(), op, [&](auto t) {
    using T = decltype(t);
    cuda::batchnorm_forward_eval<T>(a, ptr<T>(x), ptr<T>(w), ptr<T>(b), ptr<T>(res), ptr<float>(running_mean),
                                    ptr<float>(running_var), ptr<T>(y), ptr<float>(mean), ptr<float>(rstd),
                                    ex.stream);
  });
}

void batchnorm_backward(const Exec& ex, const cpu::BatchNormArgs& a, bool batch_stats, const Tensor& dy,
                        const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& mean, const Tensor& rstd,
                        const Tensor& dx, const Tensor& dz, const Tensor& dw, const Tensor& db) {
  const char* op = "batchnorm_backward";
  on_device(ex, op, {dy, y, x, w, mean, rstd, dx, dz, dw, db});
  bn_checks(op, a, dy, {dy, y, x, dx, dz}, {w}, {mean, rstd, dw, db});
  dispatch(dy.dtype(), op, [&](auto t) {
    using T = decltype(t);
    cuda::batchnorm_backward<T>(a, batch_stats, ptr<T>(dy), ptr<T>(y), ptr<T>(x), ptr<T>(w), ptr<float>(mean),
                                ptr<float>(rstd), ptr<T>(dx), ptr<T>(dz), ptr<float>(dw), ptr<float>(db), ex.stream);
  });
}

// ---------------------------------------------------------------- pooling

void maxpool_forward(const Exec& ex, const cpu::PoolGeom& g, const Tensor& x, const Tensor& y, const Tensor& idx) {
  const char* op = "maxpool";
  on_device(ex, op, {x, y, idx});
  want(y, x.dtype(), op, "y");
  want(idx, DType::i32, op, "idx");
  DTRAIN_CHECK(x.rank() == 4 && x.size(2) == g.h && x.size(3) == g.w, "{}: input {} for planes of {}x{}", op,
               x.shape().str(), g.h, g.w);
  const int64_t planes = x.size(0) * x.size(1);
  want_numel(y, planes * g.ho() * g.wo(), op, "y");
  want_numel(idx, planes * g.ho() * g.wo(), op, "idx");
  dispatch(x.dtype(), op, [&](auto t) {
    using T = decltype(t);
    cuda::maxpool_forward<T>(g, planes, ptr<T>(x), ptr<T>(y), ptr<int32_t>(idx), ex.stream);
  });
}

void maxpool_backward(const Exec& ex, const cpu::PoolGeom& g, const Tensor& dy, const Tensor& idx,
                      const Tensor& dx) {
  const char* op = "maxpool_backward";
  on_device(ex, op, {dy, idx, dx});
  want(dx, dy.dtype(), op, "dx");
  want(idx, DType::i32, op, "idx");
  DTRAIN_CHECK(dy.rank() == 4 && dy.size(2) == g.ho() && dy.size(3) == g.wo(), "{}: gradient {} for outputs of {}x{}",
               op, dy.shape().str(), g.ho(), g.wo());
  const int64_t planes = dy.size(0) * dy.size(1);
  want_numel(idx, dy.numel(), op, "idx");
  want_numel(dx, planes * g.h * g.w, op, "dx");
  dispatch(dy.dtype(), op, [&](auto t) {
    using T = decltype(t);
    cuda::maxpool_backward<T>(g, planes, ptr<T>(dy), ptr<int32_t>(idx), ptr<T>(dx), ex.stream);
  });
}

void avgpool_forward(const Exec& ex, const Tensor& x, const Tensor& y) {
  const char* op = "avgpool";
  on_device(ex, op, {x, y});
  want(y, x.dtype(), op, "y");
  DTRAIN_CHECK(x.rank() == 4, "{}: input {} is not (B, C, H, W)", op, x.shape().str());
  const int64_t planes = x.size(0) * x.size(1);
  want_numel(y, planes, op, "y");
  dispatch(x.dtype(), op, [&](auto t) {
    using T = decltype(t);
    cuda::avgpool_forward<T>(planes, x.size(2) * x.size(3), ptr<T>(x), ptr<T>(y), ex.stream);
  });
}

void avgpool_backward(const Exec& ex, const Tensor& dy, const Tensor& dx) {
  const char* op = "avgpool_backward";
  on_device(ex, op, {dy, dx});
  want(dx, dy.dtype(), op, "dx");
  DTRAIN_CHECK(dx.rank() == 4, "{}: gradient {} is not (B, C, H, W)", op, dx.shape().str());
  const int64_t planes = dx.size(0) * dx.size(1);
  want_numel(dy, planes, op, "dy");
  dispatch(dy.dtype(), op, [&](auto t) {
    using T = decltype(t);
    cuda::avgpool_backward<T>(planes, dx.size(2) * dx.size(3), ptr<T>(dy), ptr<T>(dx), ex.stream);
  });
}

// ---------------------------------------------------------------- relu

void relu_forward(const Exec& ex, const Tensor& x, const Tensor& y) {
  const char* op = "relu";
  on_device(ex, op, {x, y});
  want(y, x.dtype(), op, "y");
  want_numel(y, x.numel(), op, "y");
  dispatch(x.dtype(), op, [&](auto t) {
    using T = decltype(t);
    cuda::relu_forward<T>(ptr<T>(x), x.numel(), ptr<T>(y), ex.stream);
  });
}

void relu_backward(const Exec& ex, const Tensor& y, const Tensor& dy, const Tensor& dx) {
  const char* op = "relu_backward";
  on_device(ex, op, {y, dy, dx});
  want(dy, y.dtype(), op, "dy");
  want(dx, y.dtype(), op, "dx");
  want_numel(dy, y.numel(), op, "dy");
  want_numel(dx, y.numel(), op, "dx");
  dispatch(y.dtype(), op, [&](auto t) {
    using T = decltype(t);
    cuda::relu_backward<T>(ptr<T>(y), ptr<T>(dy), y.numel(), ptr<T>(dx), ex.stream);
  });
}

}  // namespace dtrain::ops::cuda_ops
