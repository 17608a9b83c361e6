// The GPT output head, tied to the token embedding as in GPT-2: logits =
// x @ wte^T. It owns no parameter; its weight gradient accumulates into
// wte's, beside the embedding's own.
#pragma once

#include "model/layer.h"

namespace dtrain {

class TiedLmHead : public Layer {
 public:
  // wte: (V, C), owned by the embedding layer.
  TiedLmHead(const std::string& name, Param& wte);

  Shape output_shape(const Shape& in) const override;  // (..., C) -> (..., V)
  void plan(const Shape& in, DType act, Device device) override;
  Tensor forward(const Tensor& x, const Ctx& ctx) override;
  Tensor backward(const Tensor& dy, const Ctx& ctx) override;
  Cost cost(const Shape& in) const override;

 private:
  Param& wte_;
  int64_t vocab_, c_;
  Tensor x_;       // input of the last forward
  Tensor y_, dx_;  // (N, V), (N, C)
};

}  // namespace dtrain
