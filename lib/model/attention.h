// Causal multi-head self-attention of a GPT block: qkv projection, attention
// (kernels/cpu/attention.h), output projection. The projections are Linear
// layers with PyTorch's weight layout, named "<name>.qkv" and "<name>.proj".
#pragma once

#include "model/layer.h"
#include "model/linear.h"

namespace dtrain {

class CausalSelfAttention : public Layer {
 public:
  // qkv: (3C, C) weight, normal(0.02); proj: (C, C) weight, normal(proj_std).
  CausalSelfAttention(ParamStore& ps, const std::string& name, int64_t c, int64_t n_head,
                      bool bias, double proj_std);

  Shape output_shape(const Shape& in) const override { return in; }
  void plan(const Shape& in, DType act, Device device) override;  // in: (B, T, C)
  Tensor forward(const Tensor& x, const Ctx& ctx) override;
  // Once per forward: it consumes the kept probabilities.
  Tensor backward(const Tensor& dy, const Ctx& ctx) override;
  // FLOPs include the attention products: 2 * B*nh*T^2*hs * 2 forward, twice
  // that backward (the MFU convention; the kernel skips the masked half).
  Cost cost(const Shape& in) const override;

 private:
  int64_t c_, n_head_;
  Linear qkv_, proj_;
  int slots_ = 0;          // threads the backward scratch was planned for
  Tensor qkv_out_;         // (B, T, 3C): the qkv projection's output of the last forward
  Tensor att_, y_;         // (B, nh, T, T) probabilities, (B, T, C)
  Tensor dqkv_, scratch_;  // (B, T, 3C), slots_ * attention_scratch_size(T)
};

}  // namespace dtrain
