// The GPT input layer: token ids (B, T) -> wte[tok] + wpe[t], then dropout.
// Its parameters keep GPT-2's checkpoint names, "wte.weight" (V, C) and
// "wpe.weight" (T_ctx, C), whatever the layer is called. The output head
// (LmHead) shares wte.
//
// With a tp group of t ranks the embedding is vocabulary-parallel
// (Megatron-LM): wte is split by rows, this rank holding tokens
// [rank * V/t, (rank + 1) * V/t); each rank looks up the tokens in its range
// (zeros for the others), the partial embeddings are all-reduced (only one
// rank contributes to each row, so the sum is exact), then wpe, replicated,
// is added once and dropout applied with the same mask on every rank.
// Backward scatters into this rank's rows of wte only; wpe's gradient is the
// same on every rank.
//
// With sequence parallelism (model/seq_parallel.h) the all-reduce becomes a
// reduce-scatter along the sequence: the output is this rank's slice
// (B, T/t, C), wpe's rows for those positions and dropout are applied to the
// slice; backward all-gathers dL/dy, so both gradients see every position.
#pragma once

#include "core/comm.h"
#include "model/dropout.h"
#include "model/layer.h"

namespace dtrain {

class TokenPositionEmbedding : public Layer {
 public:
  // Declares "wte.weight" (vocab, c) and "wpe.weight" (context, c), both
  // normal(0.02) and weight-decayed; dropout site "<name>.drop". tp: the
  // tensor-parallel group (null or one member: not split); vocab must be
  // divisible by its size.
  // learned_positions = false (rotary positions, in the attention): no wpe.
  TokenPositionEmbedding(ParamStore& ps, const std::string& name, int64_t vocab, int64_t context,
                         int64_t c, double dropout, Communicator* tp = nullptr,
                         bool seq_parallel = false, bool learned_positions = true);

  Shape output_shape(const Shape& in) const override;  // (B, T, C); (B, T/t, C) sequence-parallel
  void set_recompute(Recompute, BufferArena* arena) override { arena_ = arena; }
  void plan(const Shape& in, DType act, const Exec& ex) override;
  // tokens: (B, T) int32 in [0, vocab), T <= context (InputError otherwise).
  Tensor forward(const Tensor& tokens, const Ctx& ctx) override;
  // Accumulates the wte and wpe gradients; returns an undefined tensor.
  Tensor backward(const Tensor& dy, const Ctx& ctx) override;
  Cost cost(const Shape& in) const override;

  Param& wte() { return *wte_; }
  // How wte is split over a tp group of more than one rank: by rows
  // (vocabulary), one equal range per rank. The output head's own copy of
  // wte on a later pipeline stage is split the same way.
  static Shard vocab_shard(int64_t vocab, int64_t c, const Communicator& tp);

 private:
  int64_t vocab_, context_, c_;
  Communicator* tp_ = nullptr;  // null unless split over more than one rank
  int64_t vocab_start_ = 0;     // first token id of this rank's wte rows
  Param* wte_;
  Param* wpe_ = nullptr;  // null without learned positions
  Dropout drop_;
  SeqParallel seq_;
  BufferArena* arena_ = nullptr;  // for the sequence-parallel scratch
  Tensor tokens_;  // input of the last forward
  Tensor y_;       // (B, T, C)
  Tensor local_, dfull_, scratch_;  // sequence parallel: (B, T/t, C), (B, T, C), packed
};

}  // namespace dtrain
