// LayerNorm layer (GPT-2's ln1, ln2, ln_f) over the last dimension. Besides the
// Layer interface it offers backward_add, which folds the residual gradient of
// a pre-norm block into the same pass.
#pragma once

#include "model/layer.h"

namespace dtrain {

class LayerNorm : public Layer {
 public:
  // Declares "<name>.weight" (C), init ones, and with bias "<name>.bias" (C),
  // init zeros; neither is weight-decayed.
  LayerNorm(ParamStore& ps, const std::string& name, int64_t c, bool bias);

  Shape output_shape(const Shape& in) const override { return in; }
  void plan(const Shape& in, DType act, const Exec& ex) override;
  Tensor forward(const Tensor& x, const Ctx& ctx) override;
  Tensor backward(const Tensor& dy, const Ctx& ctx) override;
  Cost cost(const Shape& in) const override;

  // dres + dL/dx for the last forward (dres has the input's shape).
  Tensor backward_add(const Tensor& dy, const Tensor& dres);

 private:
  static constexpr double kEps = 1e-5;
  int64_t c_;
  Param* w_;
  Param* b_ = nullptr;
  Tensor x_;                 // input of the last forward (a view of the previous layer's buffer)
  Tensor y_, mean_, rstd_;   // (N, C), (N), (N)
  Tensor dx_, scratch_;      // (N, C), layernorm_scratch_size(C)
};

}  // namespace dtrain
