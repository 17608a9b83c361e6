// The GPT block's feed-forward network: fc (C -> 4C), GELU (tanh), proj
// (4C -> C). The projections are Linear layers named "<name>.fc" and
// "<name>.proj".
#pragma once

#include "model/layer.h"
#include "model/linear.h"

namespace dtrain {

class Mlp : public Layer {
 public:
  // fc: (4C, C) weight, normal(0.02); proj: (C, 4C) weight, normal(proj_std).
  Mlp(ParamStore& ps, const std::string& name, int64_t c, bool bias, double proj_std);

  Shape output_shape(const Shape& in) const override { return in; }
  void plan(const Shape& in, DType act, Device device) override;
  Tensor forward(const Tensor& x, const Ctx& ctx) override;
  Tensor backward(const Tensor& dy, const Ctx& ctx) override;
  Cost cost(const Shape& in) const override;

 private:
  int64_t c_;
  Linear fc_, proj_;
  Tensor f_;  // fc output of the last forward (N, 4C), a view of fc_'s buffer
  Tensor g_;  // GELU output (N, 4C)
};

}  // namespace dtrain
