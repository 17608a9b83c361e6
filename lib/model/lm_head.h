// The GPT output head: logits = x @ W^T, with W the token embedding wte as
// in GPT-2 (tied: the head owns no parameter and its weight gradient
// accumulates into wte's, beside the embedding's own), or its own
// "lm_head.weight" (V, C) as in LLaMA (untied, model.tie_embeddings = false).
//
// With a tp group, W is this rank's vocabulary shard (V/t, C): the head
// gives this rank's logits (N, V/t), which the vocabulary-parallel
// cross-entropy consumes without ever gathering them, and backward
// all-reduces dL/dx over the group (Megatron's "f": the head's input is
// replicated, every rank's logits depend on it).
//
// With sequence parallelism the input is this rank's slice (B, T/t, C): it
// is all-gathered into the sequence order (the logits of every position,
// matching the targets) and dL/dx reduce-scattered back to the slice.
#pragma once

#include "core/comm.h"
#include "model/layer.h"
#include "model/seq_parallel.h"
#include "ops/ops.h"

namespace dtrain {

class LmHead : public Layer {
 public:
  // weight: (V, C), or this rank's (V/t, C) rows of it when tp has more than
  // one member: wte, which the embedding layer declares (or this stage's
  // copy of it), or with owned = true the head's own, declared just before it.
  LmHead(const std::string& name, Param& weight, Communicator* tp = nullptr, bool seq_parallel = false,
         bool owned = false);

  // (..., C) -> (..., V or V/t); sequence parallel (B, T/t, C) -> (B, T, V/t)
  Shape output_shape(const Shape& in) const override;
  void set_recompute(Recompute, BufferArena* arena) override { arena_ = arena; }
  void plan(const Shape& in, DType act, const Exec& ex) override;
  Tensor forward(const Tensor& x, const Ctx& ctx) override;
  Tensor backward(const Tensor& dy, const Ctx& ctx) override;
  Cost cost(const Shape& in) const override;
  std::vector<Param*> borrowed_params() const override {
    if (owned_) return {};
    return {&wte_};
  }

 private:
  Param& wte_;                  // W: wte when tied
  bool owned_;
  int64_t vocab_, c_;           // vocab_: the rows held (V/t with tp)
  Communicator* tp_ = nullptr;  // null unless split over more than one rank
  SeqParallel seq_;
  BufferArena* arena_ = nullptr;  // for the sequence-parallel scratch
  Tensor x_;       // input of the last forward (sequence parallel: gathered)
  Tensor y_, dx_;  // (N, V), (N, C)
  Tensor full_, local_, scratch_;  // sequence parallel: (B, T, C), (B, T/t, C), packed
  ops::MatmulPlan fwd_, dgrad_, wgrad_;
};

}  // namespace dtrain
