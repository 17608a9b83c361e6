// BatchNorm2d as torch.nn.BatchNorm2d (eps 1e-5, momentum 0.1): batch
// statistics in training (Ctx::training), running statistics in evaluation.
// The running mean and variance are ParamStore buffers ("<name>.running_mean",
// "<name>.running_var"): saved in checkpoints, never optimised. Optionally
// fused with what follows it in a ResNet (kernels/cpu/batchnorm.h): a
// residual add and a ReLU, y = relu(bn(x) + res).
#pragma once

#include "model/layer.h"
#include "ops/cnn.h"

namespace dtrain {

class BatchNorm2d : public Layer {
 public:
  static constexpr double kEps = 1e-5;
  static constexpr double kMomentum = 0.1;

  // Declares "<name>.weight" (c, ones) and "<name>.bias" (c, zeros), both
  // without weight decay, and the two running buffers. relu: a ReLU follows.
  // residual: forward_add may be used, and backward keeps the gradient of the
  // residual input (residual_grad()).
  BatchNorm2d(ParamStore& ps, const std::string& name, int64_t c, bool relu = false,
              bool residual = false);

  Shape output_shape(const Shape& in) const override { return in; }  // (B, C, H, W)
  void plan(const Shape& in, DType act, const Exec& ex) override;
  Tensor forward(const Tensor& x, const Ctx& ctx) override { return forward_add(x, Tensor{}, ctx); }
  // y = relu?(bn(x) + res); res (B, C, H, W) may be undefined.
  Tensor forward_add(const Tensor& x, const Tensor& res, const Ctx& ctx);
  Tensor backward(const Tensor& dy, const Ctx& ctx) override;
  // After backward: dL/d(res) of the last forward_add (dy masked by the ReLU).
  Tensor residual_grad() const;
  Cost cost(const Shape& in) const override;

 private:
  ops::BatchNormArgs args(const Shape& in) const;

  int64_t c_;
  bool relu_, residual_;
  Param *w_, *b_, *running_mean_, *running_var_;
  bool batch_stats_ = true;  // the last forward used batch statistics
  Tensor x_, last_dy_;
  Tensor y_, dx_, dz_, mean_, rstd_;  // owned: output, gradients, (C) statistics
};

}  // namespace dtrain
