// Causal multi-head self-attention of a GPT block: qkv projection, attention
// (kernels/cpu/attention.h), output projection. The projections are Linear
// layers with PyTorch's weight layout, named "<name>.qkv" and "<name>.proj".
//
// Grouped-query attention (GQA) has fewer key/value heads than query heads
// (ops::Heads): the qkv rows are C query features, then C_kv = n_kv_head * hs
// of keys and of values.
//
// With a tp group of t ranks the heads are split (Megatron-LM): qkv is
// column-parallel with its rows in three blocks (Q, K, V), so this rank's
// output is its n_head/t query heads and n_kv_head/t key/value heads, laid
// out as the kernel expects (a rank's query heads share its key/value heads,
// as Megatron's query groups do); attention runs on those heads alone; proj is row-parallel, taking
// the heads' C/t columns, and all-reduces its output. The two conjugate
// operators live in the Linears: "f" (all-reduce of dL/dx) in qkv's
// backward, "g" (all-reduce of the output) in proj's forward.
#pragma once

#include "model/layer.h"
#include "model/linear.h"

namespace dtrain {

class CausalSelfAttention : public Layer {
 public:
  // qkv: (C + 2 C_kv, C) weight, normal(0.02); proj: (C, C) weight, normal(proj_std).
  // heads: n_head, or {n_head, n_kv_head} for GQA.
  // tp: the tensor-parallel group (null or one member: not split); both head
  // counts must be divisible by its size. seq_parallel: the caller all-gathers the
  // input and reduce-scatters the output (see Linear), then add_output_bias.
  // rope.theta > 0: rotary position embeddings of that base (and scaling) turn the
  // queries and keys after the qkv product (ops::rope), positions 0 .. T-1.
  CausalSelfAttention(ParamStore& ps, const std::string& name, int64_t c, ops::Heads heads,
                      bool bias, double proj_std, Communicator* tp = nullptr,
                      bool seq_parallel = false, const math::Rope& rope = math::Rope(0.0));
  void add_output_bias(const Tensor& y) const { proj_.add_bias(y); }

  void set_recompute(Recompute mode, BufferArena* arena) override {
    selective_ = mode == Recompute::selective ? arena : nullptr;
  }
  void share_buffers(BufferArena* arena, const std::string& role, Sharing what = Sharing::all) override {
    Layer::share_buffers(arena, role, what);
    qkv_.share_buffers(arena, role + ".qkv", what);
    proj_.share_buffers(arena, role + ".proj", what);
  }
  Shape output_shape(const Shape& in) const override { return in; }
  void plan(const Shape& in, DType act, const Exec& ex) override;  // in: (B, T, C)
  Tensor forward(const Tensor& x, const Ctx& ctx) override;
  // Once per forward: it consumes the kept probabilities.
  Tensor backward(const Tensor& dy, const Ctx& ctx) override;
  // FLOPs include the attention products: 2 * B*nh*T^2*hs * 2 forward, twice
  // that backward (the MFU convention; the kernel skips the masked half);
  // with tp, this rank's heads only.
  Cost cost(const Shape& in) const override;
  // qkv's Linear::defer_input, for the next backward.
  void defer_input(std::function<void()> ready) { qkv_.defer_input(std::move(ready)); }

 private:
  int64_t c_;
  ops::Heads heads_;
  int64_t local_c_;          // this rank's query width (C/t)
  ops::Heads local_heads_;   // and heads (n_head/t, n_kv_head/t)
  int64_t local_qkv_;        // this rank's qkv width (C + 2 C_kv)/t
  math::Rope rope_;          // theta 0: no rotary embedding
  Linear qkv_, proj_;
  // Shapes for this rank: C, nh and W below are local_c_, local_heads_.q and local_qkv_.
  Tensor qkv_out_;         // (B, T, W): the qkv projection's output of the last forward
  Tensor att_, y_;         // (B, nh, T, T) probabilities, (B, T, C)
  BufferArena* selective_ = nullptr;  // recompute the probabilities in backward
  Tensor dqkv_, scratch_;  // (B, T, W), ops::attention_scratch (compute type)
  ops::AttentionPlan attn_plan_;
};

}  // namespace dtrain
