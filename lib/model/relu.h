// A stand-alone ReLU layer. The CNN's own ReLUs are fused into the batch norm
// before them (model/batchnorm.h), which saves a pass over the activations;
// this one is for models that need a ReLU elsewhere.
#pragma once

#include "model/layer.h"

namespace dtrain {

class ReLU : public Layer {
 public:
  explicit ReLU(const std::string& name) : Layer(name) {}

  Shape output_shape(const Shape& in) const override { return in; }
  void plan(const Shape& in, DType act, const Exec& ex) override;
  Tensor forward(const Tensor& x, const Ctx& ctx) override;
  Tensor backward(const Tensor& dy, const Ctx& ctx) override;
  Cost cost(const Shape& in) const override;

 private:
  Tensor y_, dx_;  // owned; backward reads its mask from y_
};

}  // namespace dtrain
