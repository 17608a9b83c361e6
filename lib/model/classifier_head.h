// The CNN's last top-level layer: global average pooling over each feature
// map, then a linear classifier (PyTorch's default init) to the class logits.
#pragma once

#include "model/linear.h"

namespace dtrain {

class ClassifierHead : public Layer {
 public:
  // Parameters "<name>.fc.weight" (classes, c) and "<name>.fc.bias" (classes).
  ClassifierHead(ParamStore& ps, const std::string& name, int64_t c, int64_t classes);

  Shape output_shape(const Shape& in) const override;  // (B, C, H, W) -> (B, classes)
  void plan(const Shape& in, DType act, const Exec& ex) override;
  Tensor forward(const Tensor& x, const Ctx& ctx) override;
  Tensor backward(const Tensor& dy, const Ctx& ctx) override;
  Cost cost(const Shape& in) const override;

 private:
  int64_t c_;
  Linear fc_;
  Shape in_shape_;         // of the last forward
  Tensor pooled_, dx_;     // owned: (B, C) means, (B, C, H, W) input gradient
};

}  // namespace dtrain
