// Linear layer y = x W^T + b on the last dimension, W stored (out, in) as in
// PyTorch so fixtures and checkpoints map one to one. Matrix products go to
// cblas; the bias gradient is a column sum.
#pragma once

#include "model/layer.h"

namespace dtrain {

class Linear : public Layer {
 public:
  // Declares "<name>.weight" (out, in) and, with bias, "<name>.bias" (out).
  Linear(ParamStore& ps, const std::string& name, int64_t in, int64_t out, bool bias, Init w_init,
         Init b_init = Init::zeros());

  Shape output_shape(const Shape& in) const override;
  void plan(const Shape& in, DType act, Device device) override;
  Tensor forward(const Tensor& x, const Ctx& ctx) override;
  Tensor backward(const Tensor& dy, const Ctx& ctx) override;
  Cost cost(const Shape& in) const override;

  Param& weight() { return *w_; }

 private:
  int64_t in_, out_;
  Param* w_;
  Param* b_ = nullptr;
  Tensor x_;       // input of the last forward (a view of the previous layer's buffer)
  Tensor y_, dx_;  // owned buffers
};

}  // namespace dtrain
