// LayerNorm layer (GPT-2's ln1, ln2, ln_f) over the last dimension, or with
// rms = true LLaMA's RMSNorm (no mean removed, no bias). Besides the
// Layer interface it offers backward_add, which folds the residual gradient of
// a pre-norm block into the same pass.
//
// Under sequence parallelism each tp rank normalises its slice of the
// sequence, so its weight and bias gradients are sums over that slice only:
// sync_grads all-reduces them over tp once the step's gradients are complete
// (Ctx::grads_final), as Megatron-LM does, which leaves them replicated.
#pragma once

#include "core/comm.h"
#include "model/layer.h"

namespace dtrain {

class LayerNorm : public Layer {
 public:
  // Declares "<name>.weight" (C), init ones, and with bias "<name>.bias" (C),
  // init zeros; neither is weight-decayed. rms: RMSNorm, never a bias.
  LayerNorm(ParamStore& ps, const std::string& name, int64_t c, bool bias, bool rms = false);

  Shape output_shape(const Shape& in) const override { return in; }
  void plan(const Shape& in, DType act, const Exec& ex) override;
  Tensor forward(const Tensor& x, const Ctx& ctx) override;
  Tensor backward(const Tensor& dy, const Ctx& ctx) override;
  Cost cost(const Shape& in) const override;

  // dres + dL/dx for the last forward (dres has the input's shape).
  Tensor backward_add(const Tensor& dy, const Tensor& dres);

  // Sequence parallelism over `tp` (null or one member: off).
  void set_sequence_parallel(Communicator* tp) { seq_tp_ = tp && tp->size() > 1 ? tp : nullptr; }
  // With ctx.grads_final under sequence parallelism: the all-reduce above.
  // backward() calls it; a block calls it for its norms after backward_add.
  void sync_grads(const Ctx& ctx);

  static constexpr double kEps = 1e-5;  // PyTorch's default, GPT-2's

 private:
  int64_t c_;
  bool rms_;
  Param* w_;
  Param* b_ = nullptr;
  Communicator* seq_tp_ = nullptr;
  Tensor x_;                 // input of the last forward (a view of the previous layer's buffer)
  Tensor y_, mean_, rstd_;   // (N, C), (N) (LayerNorm only), (N)
  Tensor dx_, scratch_;      // (N, C), layernorm_scratch_size(C)
};

}  // namespace dtrain
