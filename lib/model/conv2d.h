// 2-D convolution layer over NCHW images, weight (out, in, k, k) as in PyTorch
// so that fixtures and checkpoints map one to one. The work is im2col + GEMM
// (kernels/cpu/conv.h). Init is torchvision's ResNet init: Kaiming normal,
// fan_out, gain sqrt(2) (ReLU); the optional bias is PyTorch's default
// uniform(+-1/sqrt(fan_in)).
#pragma once

#include "model/layer.h"
#include "ops/cnn.h"

namespace dtrain {

class Conv2d : public Layer {
 public:
  // Declares "<name>.weight" (out, in, k, k) and, with bias, "<name>.bias" (out).
  Conv2d(ParamStore& ps, const std::string& name, int64_t in, int64_t out, int64_t kernel,
         int64_t stride, int64_t pad, bool bias);

  // false: backward computes only the parameter gradients and returns an
  // undefined tensor (the first layer, whose input is the data).
  void set_input_grad(bool on) { input_grad_ = on; }

  Shape output_shape(const Shape& in) const override;  // (B, in, H, W) -> (B, out, Ho, Wo)
  void plan(const Shape& in, DType act, const Exec& ex) override;
  Tensor forward(const Tensor& x, const Ctx& ctx) override;
  Tensor backward(const Tensor& dy, const Ctx& ctx) override;
  // dx = dres + dL/dx in one pass (dres: (B, in, H, W), e.g. a residual branch).
  Tensor backward_add(const Tensor& dy, const Tensor& dres);
  Cost cost(const Shape& in) const override;
  void list_convolutions(const Shape& in, std::vector<std::pair<std::string, ops::ConvGeom>>& out) const override {
    out.emplace_back(name(), geom(in));
  }

 private:
  ops::ConvGeom geom(const Shape& in) const;

  int64_t in_, out_, k_, stride_, pad_;
  bool input_grad_ = true;
  Param* w_;
  Param* b_ = nullptr;
  ops::ConvGeom g_;    // planned geometry
  ops::ConvPlan conv_;  // the kernel's grouping, threads and scratch
  Tensor x_;               // input of the last forward (a view of the previous layer's buffer)
  Tensor y_, dx_;  // owned buffers
};

}  // namespace dtrain
