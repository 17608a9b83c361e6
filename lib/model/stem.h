// The CNN's first top-level layer: 3x3 convolution (stride 1, no bias), batch
// norm with its ReLU fused, and optionally torchvision's 3x3 stride-2 max-pool.
// One layer, so the pipeline cut sees the stem as a unit.
#pragma once

#include <memory>

#include "model/batchnorm.h"
#include "model/conv2d.h"
#include "model/maxpool.h"

namespace dtrain {

class Stem : public Layer {
 public:
  // Parameters "<name>.conv.weight", "<name>.bn.{weight,bias}" and the bn's
  // running buffers. input_grad: backward returns dL/dx (off when the input
  // is the data, which saves a GEMM).
  Stem(ParamStore& ps, const std::string& name, int64_t in, int64_t out, bool max_pool,
       bool input_grad);

  Shape output_shape(const Shape& in) const override;  // (B, in, H, W) -> (B, out, H', W')
  void plan(const Shape& in, DType act, const Exec& ex) override;
  Tensor forward(const Tensor& x, const Ctx& ctx) override;
  Tensor backward(const Tensor& dy, const Ctx& ctx) override;
  Cost cost(const Shape& in) const override;
  void list_convolutions(const Shape& in, std::vector<std::pair<std::string, ops::ConvGeom>>& out) const override {
    conv_.list_convolutions(in, out);
  }

 private:
  Conv2d conv_;
  BatchNorm2d bn_;
  std::unique_ptr<MaxPool2d> pool_;  // null without pooling
};

}  // namespace dtrain
