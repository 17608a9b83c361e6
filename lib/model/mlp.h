// The GPT block's feed-forward network of hidden width F (GPT-2: 4C): fc
// (C -> F), GELU (tanh), proj (F -> C); or LLaMA's SwiGLU: fc (C -> 2F, the
// gate's F rows then the up-projection's, as one product), silu(gate) * up,
// proj (F -> C). The projections are Linear layers named "<name>.fc" and
// "<name>.proj". With a tp group of t ranks (Megatron-LM) fc is
// column-parallel (this rank's F/t hidden features, of the gate and of the
// up-projection alike, "f" in its backward), the activation runs on them
// locally and proj is row-parallel ("g": all-reduce of its partial output,
// bias added once after).
#pragma once

#include "model/layer.h"
#include "model/linear.h"

namespace dtrain {

class Mlp : public Layer {
 public:
  // fc: (F, C) weight ((2F, C) with swiglu), normal(0.02); proj: (C, F)
  // weight, normal(proj_std). hidden: F (0: 4C). tp: the tensor-parallel
  // group (null or one member: not split). seq_parallel: as CausalSelfAttention's.
  Mlp(ParamStore& ps, const std::string& name, int64_t c, bool bias, double proj_std,
      Communicator* tp = nullptr, bool seq_parallel = false, int64_t hidden = 0, bool swiglu = false);
  void add_output_bias(const Tensor& y) const { proj_.add_bias(y); }

  void set_recompute(Recompute mode, BufferArena* arena) override {
    selective_ = mode == Recompute::selective ? arena : nullptr;
  }
  void share_buffers(BufferArena* arena, const std::string& role, Sharing what = Sharing::all) override {
    Layer::share_buffers(arena, role, what);
    fc_.share_buffers(arena, role + ".fc", what);
    proj_.share_buffers(arena, role + ".proj", what);
  }
  Shape output_shape(const Shape& in) const override { return in; }
  void plan(const Shape& in, DType act, const Exec& ex) override;
  Tensor forward(const Tensor& x, const Ctx& ctx) override;
  Tensor backward(const Tensor& dy, const Ctx& ctx) override;
  Cost cost(const Shape& in) const override;
  // fc's Linear::defer_input, for the next backward.
  void defer_input(std::function<void()> ready) { fc_.defer_input(std::move(ready)); }

 private:
  bool swiglu_;
  Linear fc_, proj_;
  Tensor f_;   // fc output of the last forward (N, F/t; swiglu 2F/t), a view of fc_'s buffer
  Tensor g_;   // the activation's output (N, F/t)
  Tensor df_;  // swiglu: dL/df (N, 2F/t), a work buffer
  BufferArena* selective_ = nullptr;  // recompute the activation's output in backward
};

}  // namespace dtrain
