// Linear layer y = x W^T + b on the last dimension, W stored (out, in) as in
// PyTorch so fixtures and checkpoints map one to one. Matrix products go to
// cblas; the bias gradient is a column sum.
//
// Tensor parallelism (Megatron-LM) splits a Linear one of two ways over the
// ranks of a tp group:
// - column-parallel: this rank holds out/t rows of W (and of b) and computes
//   its out/t output features from the whole (replicated) input. Backward
//   all-reduces dL/dx: Megatron's "f" operator (identity forward, all-reduce
//   backward) placed at the layer's input.
// - row-parallel: this rank holds in/t columns of W and takes the matching
//   in/t input features (a column-parallel layer's output); the partial
//   products are all-reduced forward, Megatron's "g" operator (all-reduce
//   forward, identity backward), and the bias, replicated, is added once
//   after the sum. Its gradient is then the same on every rank.
// Under sequence parallelism (model/seq_parallel.h) the layer holding the
// Linears does the collectives: a column-parallel Linear gets its input
// already all-gathered and leaves dL/dx a partial sum (reduce-scattered by
// the caller); a row-parallel one leaves its output a partial sum without
// the bias (the caller reduce-scatters it, then calls add_bias on its slice)
// and gets dL/dy all-gathered, so the bias gradient is still the same on
// every rank.
#pragma once

#include <functional>
#include <vector>

#include "core/comm.h"
#include "model/layer.h"
#include "ops/ops.h"

namespace dtrain {

enum class TpSplit : uint8_t { none, column, row };

// How a Linear is split; a null or one-member group means not split.
struct LinearParallel {
  TpSplit split = TpSplit::none;
  Communicator* tp = nullptr;
  // Column-parallel only: W's rows are blocks of these sizes (Q|K|V for the
  // fused qkv, gate|up for SwiGLU; empty: one block), each split into t
  // pieces, so that this rank holds its piece of each.
  std::vector<int64_t> blocks;
  // The collectives are the caller's (sequence parallelism, see above).
  bool sequence_parallel = false;
};

class Linear : public Layer {
 public:
  // Declares "<name>.weight" (out, in) and, with bias, "<name>.bias" (out);
  // in and out are the full sizes, the shards hold this rank's part.
  Linear(ParamStore& ps, const std::string& name, int64_t in, int64_t out, bool bias, Init w_init,
         Init b_init = Init::zeros(), LinearParallel par = {});

  // The local input and output widths: in/t for row-parallel, out/t for column-parallel.
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }

  Shape output_shape(const Shape& in) const override;
  void plan(const Shape& in, DType act, const Exec& ex) override;
  Tensor forward(const Tensor& x, const Ctx& ctx) override;
  Tensor backward(const Tensor& dy, const Ctx& ctx) override;
  // This rank's share: its shard's FLOPs, the parameters it holds (a
  // row-parallel bias in full) and the input it keeps.
  Cost cost(const Shape& in) const override;

  Param& weight() { return *w_; }
  // Row-parallel under sequence parallelism: y += bias, on the reduced slice.
  void add_bias(const Tensor& y) const;

  // The MLP's GELU on either side of its Linears (ops::Epilogue), set before
  // plan(). fc: forward_gelu also writes g = gelu(y), fused into the product
  // when `in_product` and the device fuses it (ops::fused_epilogue), else as
  // its own op after it. Not on a row-parallel Linear (its bias comes after the sum).
  void set_gelu_output(bool in_product);
  // proj: backward_gelu returns dL/d(pre) = (dy W) * gelu'(pre) for the
  // pre-GELU input `pre` (DGELU). Not on a column-parallel Linear (its dL/dx is summed after).
  void set_gelu_input();
  // forward() plus g = gelu(y); returns y (GELU's input, kept for backward).
  Tensor forward_gelu(const Tensor& x, const Tensor& g, const Ctx& ctx);
  Tensor backward_gelu(const Tensor& dy, const Tensor& pre, const Ctx& ctx);

  // The next backward calls `ready` between its input gradient (always
  // first) and its weight gradient, which reads the kept input: the caller
  // may refill that input meanwhile (sequence parallelism gathers it again
  // behind that product, as Megatron-LM does).
  void defer_input(std::function<void()> ready) { input_ready_ = std::move(ready); }

 private:
  int64_t in_, out_;   // local widths
  TpSplit split_ = TpSplit::none;
  Communicator* tp_ = nullptr;  // null unless split over more than one rank
  bool seq_ = false;            // sequence parallel: the caller communicates
  Param* w_;
  Param* b_ = nullptr;
  Tensor forward_impl(const Tensor& x, const Tensor& g);
  Tensor backward_impl(const Tensor& dy, const Tensor& pre);
  bool gelu_out_ = false, gelu_in_product_ = false, gelu_in_ = false;
  Tensor x_;       // input of the last forward (a view of the previous layer's buffer)
  Tensor y_, dx_;  // owned buffers
  std::function<void()> input_ready_;  // defer_input's, for one backward
  Tensor bgrad_;   // GPU: the bias gradient of one backward (BGRADB writes it), then added to b_->grad
  ops::MatmulPlan fwd_, dgrad_, wgrad_;
};

}  // namespace dtrain
