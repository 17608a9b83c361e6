// Max-pooling over NCHW planes (kernels/cpu/pool.h); the CNN stem's optional
// pool is torchvision's kernel 3, stride 2, padding 1.
#pragma once

#include "model/layer.h"
#include "ops/cnn.h"

namespace dtrain {

class MaxPool2d : public Layer {
 public:
  MaxPool2d(const std::string& name, int64_t kernel, int64_t stride, int64_t pad);

  Shape output_shape(const Shape& in) const override;  // (B, C, H, W) -> (B, C, Ho, Wo)
  void plan(const Shape& in, DType act, const Exec& ex) override;
  Tensor forward(const Tensor& x, const Ctx& ctx) override;
  Tensor backward(const Tensor& dy, const Ctx& ctx) override;
  Cost cost(const Shape& in) const override;

 private:
  ops::PoolGeom geom(const Shape& in) const;

  int64_t k_, stride_, pad_;
  Shape in_shape_;            // of the last forward
  Tensor y_, idx_, dx_;       // owned: output, argmax (int32), input gradient
};

}  // namespace dtrain
