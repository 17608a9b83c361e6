// The GPT input layer: token ids (B, T) -> wte[tok] + wpe[t], then dropout.
// Its parameters keep GPT-2's checkpoint names, "wte.weight" (V, C) and
// "wpe.weight" (T_ctx, C), whatever the layer is called. The output head
// (TiedLmHead) shares wte.
#pragma once

#include "model/dropout.h"
#include "model/layer.h"

namespace dtrain {

class TokenPositionEmbedding : public Layer {
 public:
  // Declares "wte.weight" (vocab, c) and "wpe.weight" (context, c), both
  // normal(0.02) and weight-decayed; dropout site "<name>.drop".
  TokenPositionEmbedding(ParamStore& ps, const std::string& name, int64_t vocab, int64_t context,
                         int64_t c, double dropout);

  Shape output_shape(const Shape& in) const override;
  void plan(const Shape& in, DType act, Device device) override;
  // tokens: (B, T) int32 in [0, vocab), T <= context (InputError otherwise).
  Tensor forward(const Tensor& tokens, const Ctx& ctx) override;
  // Accumulates the wte and wpe gradients; returns an undefined tensor.
  Tensor backward(const Tensor& dy, const Ctx& ctx) override;
  Cost cost(const Shape& in) const override;

  Param& wte() { return *wte_; }

 private:
  int64_t vocab_, context_, c_;
  Param* wte_;
  Param* wpe_;
  Dropout drop_;
  Tensor tokens_;  // input of the last forward
  Tensor y_;       // (B, T, C)
};

}  // namespace dtrain
