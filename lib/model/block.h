// One GPT transformer block (pre-norm, nanoGPT semantics):
//   x = x + drop(attn(ln1(x)));  x = x + drop(mlp(ln2(x)))
// with GPT-2's parts (LayerNorm, GELU MLP) or LLaMA's (RMSNorm, SwiGLU MLP,
// rotary embeddings in the attention), as BlockSpec says.
// The residual adds are fused into the dropout pass forward and into the
// LayerNorm backward pass backward. With a tp group, attention and MLP are
// split across its ranks (each all-reduces its output forward and its input
// gradient backward); the norms, dropouts and residuals are replicated: every
// rank computes them in full on identical values, so their parameters get
// identical gradients without communication.
//
// With sequence parallelism (model/seq_parallel.h) the block's input and
// output are this rank's slice of the sequence (B, T/t, C); the norms,
// dropouts and residual adds run on the slice; ln1's output is all-gathered
// into the sequence order for the attention, ln2's into the packed order for
// the MLP, and both outputs are reduce-scattered back to the slice. As in
// Megatron-LM (its LinearWithGradAccumulationAndAsyncCommunication saves the
// un-gathered input), only the slices are kept for backward: the gathered
// inputs are work buffers that every block shares, and backward gathers them
// again for the two products' weight gradients (under full recomputation
// the re-run forward has just gathered them). Kept per block: the norms'
// outputs at 1/t, where keeping the gathered ones cost two (B, T, C) buffers;
// moved: two all-gathers more per block in backward, half an all-reduce each.
#pragma once

#include "model/attention.h"
#include "model/dropout.h"
#include "model/layernorm.h"
#include "model/mlp.h"

namespace dtrain {

// A block's shape and parts.
struct BlockSpec {
  int64_t c = 0, n_head = 0;
  int64_t n_kv_head = 0;   // key/value heads (grouped-query attention); 0: n_head
  int64_t ffn_hidden = 0;  // the MLP's hidden width (0: 4c)
  bool bias = true;
  double dropout = 0;
  double proj_std = 0.02;  // init std of both output projections (GPT-2: 0.02 / sqrt(2 n_layer))
  bool rms_norm = false;   // RMSNorm instead of LayerNorm
  bool swiglu = false;     // SwiGLU MLP instead of GELU
  math::Rope rope = math::Rope(0.0);  // theta > 0: rotary position embeddings of that base (and scaling)
};

class Block : public Layer {
 public:
  // Parameters "<name>.ln1.*", "<name>.attn.{qkv,proj}.*", "<name>.ln2.*",
  // "<name>.mlp.{fc,proj}.*". tp: the tensor-parallel group (null or one
  // member: not split).
  Block(ParamStore& ps, const std::string& name, const BlockSpec& spec, Communicator* tp = nullptr,
        bool seq_parallel = false);

  Shape output_shape(const Shape& in) const override { return in; }
  void plan(const Shape& in, DType act, const Exec& ex) override;  // in: (B, T, C), (B, T/t, C) sequence-parallel
  Tensor forward(const Tensor& x, const Ctx& ctx) override;
  Tensor backward(const Tensor& dy, const Ctx& ctx) override;
  Cost cost(const Shape& in) const override;
  // selective: the attention and the MLP remake their probabilities and GELU
  // outputs; full: the block keeps only its input, every block shares one set
  // of buffers (role "block"), and backward first re-runs the forward (the
  // same dropout masks: they are keyed by step, sample and layer name).
  void set_recompute(Recompute mode, BufferArena* arena) override;

 private:
  Tensor run_forward(const Tensor& x, const Ctx& ctx);
  Tensor seq_forward(const Tensor& x, const Ctx& ctx);
  Tensor seq_backward(const Tensor& dy, const Ctx& ctx);

  Recompute recompute_ = Recompute::none;
  SeqParallel seq_;
  BufferArena* arena_ = nullptr;  // for the sequence-parallel scratch
  // Sequence parallel: ln1's output gathered (B, T, C); ln2's packed (t B, T/t, C)
  // (work buffers: gathered again in backward); a reduced slice (B, T/t, C);
  // the attention's output gradient gathered (B, T, C); a reduced gradient
  // slice; the packed scratch.
  Tensor h1_, h2_, reduced_, dfull_, dreduced_, scratch_;
  Tensor ln1_out_, ln2_out_;  // the norms' outputs of the last forward (views of their own buffers)
  WorkHandle regather_;       // backward: the gather of a product's input, in flight
  Tensor saved_;  // full recomputation: the input of the last forward (B, T, C), owned
  LayerNorm ln1_;
  CausalSelfAttention attn_;
  Dropout drop1_;
  LayerNorm ln2_;
  Mlp mlp_;
  Dropout drop2_;
};

}  // namespace dtrain
